"""Reading the pilot's context (the PilotContext shape is services/condor/pilot.py).

    environment (BURST_*, AMQP_URL) ──▶ from_env()  ─┐
    --context FILE (JSON)           ──▶ from_file() ─┼─▶ resolve() ─▶ PilotContext (frozen)
    IMDS, config drive, context disk ─▶ cloudcontext ─┘   later layers win, one validation

Every source is a function returning {key: Raw(value, where)}, keys being the
variable names in lower case without the BURST_ prefix (BURST_CPUS → cpus).
`where` is what an error names: the variable (`BURST_CPUS`) or the file and
key (`ctx.json: cpus`), so an operator reading a failed pilot's log knows
which setting to fix. A bad context is exit code 2 (see __main__.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from services.condor.pilot import DEFAULT_SLOT_USERS, PilotContext
from services.runtime.config import DEFAULT_AMQP_URL, PROVIDERS, ConfigError, resource_problem

from .isolation import parse_slot_users

# A pilot id becomes a queue name, a routing-key target and a directory name.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ContextError(ValueError):
    """A missing or bad context value; the message names the variable or key."""


class Raw(NamedTuple):
    value: Any
    where: str  # BURST_CPUS, or "ctx.json: cpus"


# key -> (environment variable, parser); parsers take (value, where) and raise ContextError.
def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ContextError(f"{where}: expected a string, got {value!r}")
    return value.strip()


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ContextError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ContextError(f"{where}: expected a positive number of seconds, got {value!r}")
    return seconds


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ContextError(f"{where}: expected true or false, got {value!r}")


def _json_object(value: Any, where: str, of: str) -> dict[str, Any]:
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ContextError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ContextError(f"{where}: expected a JSON object of {of}")
    return dict(value)


def _attributes(value: Any, where: str) -> dict[str, Any]:
    value = _json_object(value, where, "slot ad attributes")
    for name in value:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ContextError(f"{where}: {name!r} is not a ClassAd attribute name")
    return dict(value)


def _resources(value: Any, where: str) -> dict[str, int]:
    """Custom resources: a JSON object of names and whole amounts, {"GPUs": 1, "Boats": 2}."""
    resources = _json_object(value, where, "custom resources")
    for name, amount in resources.items():
        if problem := resource_problem(name):
            raise ContextError(f"{where}: {name!r}: {problem}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ContextError(f"{where}: {name}: expected a whole amount >= 0, got {amount!r}")
    return resources


def _path(value: Any, where: str) -> Path:
    return Path(_text(value, where)).absolute()


def _slot_users(value: Any, where: str) -> str:
    spec = _text(value, where)
    try:
        parse_slot_users(spec)
    except ValueError as exc:
        raise ContextError(f"{where}: {exc}") from None
    return spec


KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "pilot_id": ("BURST_PILOT_ID", _text),
    "entry": ("BURST_ENTRY", _text),
    "site": ("BURST_SITE", _text),
    "factory": ("BURST_FACTORY", _text),
    "provider": ("BURST_PROVIDER", _text),
    "cpus": ("BURST_CPUS", _positive_int),
    "memory_mb": ("BURST_MEMORY_MB", _positive_int),
    "disk_mb": ("BURST_DISK_MB", _positive_int),
    "resources": ("BURST_RESOURCES", _resources),
    "idle_timeout_s": ("BURST_IDLE_TIMEOUT_S", _seconds),
    "max_lifetime_s": ("BURST_MAX_LIFETIME_S", _seconds),
    "instance_id": ("BURST_INSTANCE_ID", _text),
    "instance_type": ("BURST_INSTANCE_TYPE", _text),
    "spot": ("BURST_SPOT", _flag),
    "group": ("BURST_GROUP", _text),
    "pilot_attrs": ("BURST_PILOT_ATTRS", _attributes),
    "amqp_url": ("AMQP_URL", _text),
    "namespace": ("BURST_NAMESPACE", _text),
    "state_dir": ("BURST_STATE_DIR", _path),
    "pilot_work_dir": ("BURST_PILOT_WORK_DIR", _path),
    "pilot_key_file": ("BURST_PILOT_KEY_FILE", _path),
    "pilot_key": ("BURST_PILOT_KEY", _text),
    "slot_users": ("BURST_SLOT_USERS", _slot_users),
    "traceparent": ("BURST_TRACEPARENT", _text),
}
# Friendlier spellings accepted in context files.
ALIASES = {"attributes": "pilot_attrs", "work_dir": "pilot_work_dir"}


# --- sources ---------------------------------------------------------------------------------


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Raw]:
    env = os.environ if env is None else env
    return {key: Raw(env[var], var) for key, (var, _parse) in KEYS.items() if var in env}


def from_file(path: Path | str) -> dict[str, Raw]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ContextError(f"{path}: cannot read the context file: {exc.strerror}") from None
    except ValueError as exc:
        raise ContextError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContextError(f"{path}: expected a JSON object of context keys")
    found = {}
    for name, value in data.items():
        key = ALIASES.get(name, name)
        if key not in KEYS:
            raise ContextError(f"{path}: {name}: unknown key; known: {', '.join(sorted(KEYS))}")
        found[key] = Raw(value, f"{path}: {name}")
    return found


# --- merge and validation --------------------------------------------------------------------


def resolve(layers: Sequence[tuple[str, Mapping[str, Raw]]], *, pid: int | None = None
            ) -> PilotContext:
    """One context from (source name, values) layers; later layers override earlier ones.

    The context's `source` is the last layer that contributed anything, so a
    pilot booted from a file with AMQP_URL from its environment says "file".
    """
    merged: dict[str, Raw] = {}
    source = "env"
    for name, values in layers:
        if values:
            merged.update(values)
            source = name
    value = {key: KEYS[key][1](raw.value, raw.where) for key, raw in merged.items()}
    pilot_id = value.get("pilot_id", "")
    if not pilot_id:
        raise ContextError("BURST_PILOT_ID (context key pilot_id): required, the pilot's name "
                           "(in a VM: set BURST_IMDS_ENDPOINT, BURST_CONFIG_DRIVE or "
                           "BURST_CONTEXT_DISK to where the cloud puts the user data)")
    if not SAFE_ID.match(pilot_id):
        raise ContextError(f"{merged['pilot_id'].where}: {pilot_id!r} may hold letters, digits, "
                           "'.', '-' and '_' (it names a queue and a directory)")
    provider = value.get("provider") or "local"
    if provider not in PROVIDERS:
        raise ContextError(f"{merged['provider'].where}: {provider!r} is not one of "
                           f"{', '.join(PROVIDERS)}")
    state_dir = value.get("state_dir") or Path(".burst").absolute()
    instance_id = value.get("instance_id") or ""
    if not instance_id and provider == "local":
        # The local driver knows a pilot as local-<pid>; say the same in the slot ad.
        instance_id = f"local-{pid if pid is not None else os.getpid()}"
    ctx = PilotContext(
        pilot_id=pilot_id, entry=value.get("entry", ""), site=value.get("site", ""),
        factory=value.get("factory", ""), provider=provider, cpus=value.get("cpus", 1),
        memory_mb=value.get("memory_mb", 1024), disk_mb=value.get("disk_mb", 4096),
        resources=value.get("resources", {}),
        idle_timeout_s=value.get("idle_timeout_s", 1200.0),
        max_lifetime_s=value.get("max_lifetime_s", 86400.0), instance_id=instance_id,
        instance_type=value.get("instance_type", ""), spot=value.get("spot", False),
        group=value.get("group", ""), amqp_url=value.get("amqp_url") or DEFAULT_AMQP_URL,
        namespace=value.get("namespace") or "burst", state_dir=state_dir,
        work_dir=value.get("pilot_work_dir") or state_dir / "glidein" / pilot_id,
        attributes=value.get("pilot_attrs", {}), source=source,
        key_file=value.get("pilot_key_file"), key_hex=value.get("pilot_key", ""),
        slot_users=value.get("slot_users", DEFAULT_SLOT_USERS),
        traceparent=value.get("traceparent", ""),
    )
    try:
        ctx.settings()
    except ConfigError as exc:
        where = merged["namespace"].where if "namespace" in merged else "BURST_NAMESPACE"
        raise ContextError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    return ctx


def load(context_file: Path | str | None = None, env: Mapping[str, str] | None = None
         ) -> PilotContext:
    """The context the pilot process runs with: the environment, then the file if given,
    then what the VM's cloud offers (cloudcontext.py: IMDS, config drive, context disk)."""
    from .cloudcontext import cloud_layers

    env = os.environ if env is None else env
    layers: list[tuple[str, Mapping[str, Raw]]] = [("env", from_env(env))]
    if context_file is not None:
        layers.append(("file", from_file(context_file)))
    layers += cloud_layers(env)
    return resolve(layers)
