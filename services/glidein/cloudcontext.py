"""Where a glidein in a VM finds its context: what its cloud offers, tried in a fixed order.

    1. environment, --context FILE        context.py (a local pilot stops here)
    2. IMDSv2        BURST_IMDS_ENDPOINT  PUT /latest/api/token, GETs with the token (AWS)
    3. IMDSv1        BURST_IMDS_ENDPOINT  plain GETs (Eucalyptus, OpenStack's metadata service)
    4. config drive  BURST_CONFIG_DRIVE   openstack/latest/user_data (OpenStack)
    5. context disk  BURST_CONTEXT_DISK   context.sh: USER_DATA, VMID (OpenNebula)

The variables only say where to look, as a VM image would (the address
169.254.169.254, the config drive's or context CD's mount point). The user
data of the first source in 2-5 that has it holds a boot token and the
metadata service's URL (services/factory/drivers/userdata.py), which the
pilot exchanges for its context and key:

    POST <BURST_METADATA_URL>/v1/boot {token, instance id (from the cloud),
                                      a fresh X25519 public key}
    ◀── 200 {"sealed"}: the BURST_* context and BURST_PILOT_KEY, sealed to that key
    ◀── 403 "refused: token already used" (or expired, forged, another instance)

Layers, later ones winning: environment < file < the exchanged context <
what the cloud says about the instance (provider, instance id and type,
spot), so the slot ad tells what the cloud told the pilot, not what the
factory hoped.

The cloud's word on the provider: a context disk is OpenNebula's, a config
drive OpenStack's; a metadata service whose meta-data/services/partition is
"aws" is AWS, one that also serves /openstack/ is OpenStack, another one
Eucalyptus (IMDSv1) or AWS (IMDSv2, which only AWS speaks).
"""

from __future__ import annotations

import base64
import json
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from opentelemetry.trace import SpanKind

from services.runtime import bootstrap, sealing, tracing
from services.runtime.security import AuthError

from .context import KEYS, ContextError, Raw

IMDS_VAR, CONFIG_DRIVE_VAR, CONTEXT_DISK_VAR = (
    "BURST_IMDS_ENDPOINT", "BURST_CONFIG_DRIVE", "BURST_CONTEXT_DISK")
LOCATION_VARS = (IMDS_VAR, CONFIG_DRIVE_VAR, CONTEXT_DISK_VAR)
TOKEN_TTL_S = 21600  # the longest IMDSv2 allows; the pilot asks once, at boot
HTTP_TIMEOUT_S = 2.0
VAR_TO_KEY = {var: key for key, (var, _parse) in KEYS.items()}
BOOT_TOKEN_VAR, METADATA_URL_VAR = "BURST_BOOT_TOKEN", "BURST_METADATA_URL"
EXCHANGE_PATIENCE_S = 30.0  # a metadata service restarting while the VM boots: keep asking


class Unavailable(Exception):
    """This source has nothing for us; the message says why, for the one-line error."""


class CloudAnswer(NamedTuple):
    source: str  # imds-v2 | imds-v1 | config-drive | context-disk
    user_data: bytes
    facts: dict[str, str]  # context keys the cloud vouches for: provider, instance_id, ...


# --- the sources -----------------------------------------------------------------------------


def imds(base: str, version: int) -> CloudAnswer:
    """The metadata service at `base` (standing in for http://169.254.169.254)."""
    headers = {}
    if version == 2:
        token = _http(f"{base}/latest/api/token", method="PUT",
                      headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
        headers = {"X-aws-ec2-metadata-token": token.decode().strip()}

    def get(path: str) -> str:
        return _http(f"{base}/latest/{path}", headers=headers).decode().strip()

    user_data = _http(f"{base}/latest/user-data", headers=headers)
    facts = {"instance_id": get("meta-data/instance-id")}
    for key, path in (("instance_type", "meta-data/instance-type"),
                      ("spot", "meta-data/instance-life-cycle")):
        try:
            facts[key] = get(path)
        except Unavailable:
            pass
    facts["spot"] = str(facts.get("spot") == "spot")
    facts["provider"] = _imds_provider(get, base, version)
    return CloudAnswer(f"imds-v{version}", user_data, facts)


def _imds_provider(get: Callable[[str], str], base: str, version: int) -> str:
    try:
        if get("meta-data/services/partition").startswith("aws"):
            return "aws"
    except Unavailable:
        pass
    try:
        _http(f"{base}/openstack/latest/meta_data.json")
        return "openstack"
    except Unavailable:
        return "aws" if version == 2 else "eucalyptus"


def config_drive(root: Path) -> CloudAnswer:
    """An OpenStack config drive mounted at `root`."""
    user_data = _read(root / "openstack" / "latest" / "user_data")
    meta = _json(root / "openstack" / "latest" / "meta_data.json")
    ec2 = _json(root / "ec2" / "latest" / "meta-data.json")
    facts = {"provider": "openstack", "spot": "false",
             "instance_id": str(ec2.get("instance-id") or meta.get("uuid") or "")}
    if ec2.get("instance-type"):
        facts["instance_type"] = str(ec2["instance-type"])
    return CloudAnswer("config-drive", user_data, facts)


def context_disk(root: Path) -> CloudAnswer:
    """An OpenNebula context CD mounted at `root`: context.sh holds shell assignments."""
    variables = parse_context_sh(_read(root / "context.sh").decode())
    if "USER_DATA" not in variables:
        raise Unavailable(f"{root / 'context.sh'}: no USER_DATA")
    user_data = variables["USER_DATA"].encode()
    if variables.get("USERDATA_ENCODING", "").lower() == "base64":
        try:
            user_data = base64.b64decode(user_data, validate=True)
        except ValueError:
            raise Unavailable(f"{root / 'context.sh'}: USER_DATA is not base64") from None
    facts = {"provider": "opennebula", "spot": "false", "instance_id": variables.get("VMID", "")}
    if variables.get("INSTANCE_TYPE"):
        facts["instance_type"] = variables["INSTANCE_TYPE"]
    return CloudAnswer("context-disk", user_data, facts)


def parse_context_sh(text: str) -> dict[str, str]:
    """KEY='value' lines as OpenNebula writes them (quotes as the shell reads them)."""
    variables = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # an assignment spread over lines: not one of the variables we read
        for word in words:
            name, sep, value = word.partition("=")
            if sep and name.isidentifier():
                variables[name] = value
    return variables


# --- the order -------------------------------------------------------------------------------


def sources(env: Mapping[str, str]) -> list[tuple[str, Callable[[], CloudAnswer]]]:
    """The cloud sources this VM has, in the documented order."""
    found = []
    if env.get(IMDS_VAR):
        base = env[IMDS_VAR].rstrip("/")
        found += [(f"IMDSv2 at {base}", lambda: imds(base, 2)),
                  (f"IMDSv1 at {base}", lambda: imds(base, 1))]
    if env.get(CONFIG_DRIVE_VAR):
        root = Path(env[CONFIG_DRIVE_VAR])
        found.append((f"config drive {root}", lambda: config_drive(root)))
    if env.get(CONTEXT_DISK_VAR):
        root = Path(env[CONTEXT_DISK_VAR])
        found.append((f"context disk {root}", lambda: context_disk(root)))
    return found


def cloud_layers(env: Mapping[str, str]) -> list[tuple[str, dict[str, Raw]]]:
    """Context layers from the first cloud source that answers; [] off the cloud.

    Raises ContextError naming every source tried when the VM has some and
    none answers: a VM without its context cannot join anything.
    """
    tried = []
    for name, fetch in sources(env):
        try:
            answer = fetch()
        except Unavailable as exc:
            tried.append(f"{name}: {exc}")
            continue
        where = f"{answer.source} user data"
        facts = {key: Raw(value, f"{answer.source} meta-data: {key}")
                 for key, value in answer.facts.items() if value}
        given = context_from_user_data(answer.user_data, where)
        return [(answer.source, exchanged(given, answer.facts.get("instance_id", ""), where)),
                (answer.source, facts)]
    if tried:
        raise ContextError("no usable context: " + "; ".join(tried))
    return []


def context_from_user_data(data: bytes, where: str) -> dict[str, Raw]:
    """The variables in user data (services/factory/drivers/userdata.py): a boot token and
    the metadata service's URL, or (a VM made by hand) BURST_* context variables."""
    try:
        values = json.loads(data)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise ContextError(f"{where}: expected a JSON object of BURST_* variables")
    found = {}
    for name, value in values.items():
        key = name if name in (BOOT_TOKEN_VAR, METADATA_URL_VAR) else VAR_TO_KEY.get(name)
        if key is None:
            raise ContextError(f"{where}: {name}: unknown variable")
        found[key] = Raw(value, f"{where}: {name}")
    return found


def exchanged(given: dict[str, Raw], instance_id: str, where: str) -> dict[str, Raw]:
    """The context the metadata service gives for the boot token in `given` (which is
    returned as it is when it holds no token)."""
    if BOOT_TOKEN_VAR not in given and METADATA_URL_VAR not in given:
        return given
    token, url = given.get(BOOT_TOKEN_VAR), given.get(METADATA_URL_VAR)
    if token is None or url is None or not isinstance(token.value, str) or \
            not isinstance(url.value, str):
        raise ContextError(f"{where}: {BOOT_TOKEN_VAR} and {METADATA_URL_VAR} go together")
    # The VM's boot, in the trace of the launch that made it (the token carries it).
    with tracing.span("boot: exchange token", kind=SpanKind.CLIENT,
                      parent=str(bootstrap.peek(token.value).get("traceparent") or ""),
                      attributes={"url.full": f"{url.value.rstrip('/')}/v1/boot"}) as span:
        values = exchange(url.value.rstrip("/"), token.value, instance_id)
        span.set_attribute("burst.pilot", str(values.get("BURST_PILOT_ID", "")))
    source = f"metadata service {url.value}"
    found = {}
    for name, value in values.items():
        key = VAR_TO_KEY.get(name)
        if key is None:
            raise ContextError(f"{source}: {name}: unknown variable")
        found[key] = Raw(value, f"{source}: {name}")
    found["traceparent"] = Raw(tracing.traceparent_of(span) or "", "the boot exchange")
    return found


def exchange(url: str, token: str, instance_id: str, patience_s: float = EXCHANGE_PATIENCE_S
             ) -> dict:
    """Trade the boot token for the context: once. A refusal is final (the token is spent,
    expired or not ours); no answer is asked again for `patience_s`."""
    private = sealing.generate()
    body = json.dumps({"token": token, "instance_id": instance_id,
                       "public_key": sealing.public_hex(private)}).encode()
    request = urllib.request.Request(f"{url}/v1/boot", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **tracing.current_headers()})
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S * 5) as answer:
                sealed = base64.b64decode(json.loads(answer.read())["sealed"])
            break
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode(errors="replace").strip().splitlines()[:1]
            if exc.code < 500 or time.monotonic() > deadline:
                raise ContextError(f"metadata service {url}: HTTP {exc.code}: "
                                   f"{reason[0] if reason else exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                raise ContextError(f"metadata service {url}: no answer "
                                   f"({getattr(exc, 'reason', exc)})") from None
        except (ValueError, KeyError, TypeError):
            raise ContextError(f"metadata service {url}: not a boot answer") from None
        time.sleep(1.0)
    try:
        values = json.loads(sealing.open_box(private, sealed, bootstrap.digest(token)))
    except (AuthError, ValueError) as exc:
        raise ContextError(f"metadata service {url}: the answer does not open ({exc})"
                           ) from None
    if not isinstance(values, dict):
        raise ContextError(f"metadata service {url}: not a boot answer")
    return values


# --- reading ---------------------------------------------------------------------------------


def _http(url: str, method: str = "GET", headers: Mapping[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
            return answer.read()
    except urllib.error.HTTPError as exc:
        raise Unavailable(f"{method} {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"no answer ({getattr(exc, 'reason', exc)})") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Unavailable(f"cannot read {path} ({exc.strerror})") from None


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        value = json.loads(_read(path))
    except ValueError:
        raise Unavailable(f"{path}: not valid JSON") from None
    return value if isinstance(value, dict) else {}
