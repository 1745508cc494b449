"""Settings from the environment and the pool configuration from TOML.

Both are frozen and built once per process. The TOML is converted and
type-checked by msgspec (strict: a boolean is no number, a string no
integer); errors name the file, the table and the key, e.g.
``deploy/burst.toml: entry[2].cpus: expected int, got str``.

Environment (DESIGN.md): AMQP_URL, BURST_NAMESPACE, BURST_CONFIG,
BURST_STATE_DIR. The TOML layout is documented in deploy/burst.toml.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_type_hints
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .credentials import KINDS as CREDENTIAL_KINDS
from .credentials import is_reference

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "deploy" / "burst.toml"
DRIVERS = ("local", "ec2", "sim")
PROVIDERS = ("local", "aws", "openstack", "opennebula", "eucalyptus", "sim")


class ConfigError(ValueError):
    """Bad configuration; the message names the file and the field."""


@dataclass(frozen=True)
class Settings:
    amqp_url: str
    namespace: str
    config_path: Path
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespace = env.get("BURST_NAMESPACE", "burst") or "burst"
        if not namespace.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"BURST_NAMESPACE: {namespace!r} may hold letters, digits, - and _")
        return cls(
            amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
            namespace=namespace,
            config_path=Path(env.get("BURST_CONFIG") or DEFAULT_CONFIG),
            state_dir=Path(env.get("BURST_STATE_DIR") or ".burst").absolute(),
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.amqp_url)

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)


def redact_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# Every number in the file is a count, a size or a duration: none may be negative.
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Size = Annotated[int, msgspec.Meta(ge=1)]  # a slot of 0 cpus or 0 MB could never match


@dataclass(frozen=True)
class EntryLimits:
    max_pilots: Count = 10
    max_launch_per_cycle: Count = 5
    pending_timeout_s: Seconds = 300.0  # a pilot that has not registered by then is lost


@dataclass(frozen=True)
class EntryConfig:
    name: str
    site: str
    driver: str = "local"
    provider: str = "local"
    endpoint: str = ""
    region: str = ""
    image: str = ""
    instance_type: str = ""
    key_name: str = ""  # ec2: the key pair, security groups and subnet of RunInstances
    security_groups: list[str] = field(default_factory=list)
    subnet_id: str = ""
    trust_domain: str = "local"
    credential: str = "none"  # the kind a group must hold for trust_domain (credentials.py)
    cpus: Size = 1
    memory_mb: Size = 1024
    disk_mb: Size = 4096
    idle_timeout_s: Seconds = 1200.0  # GlideinWMS default: 20 minutes without a job
    max_lifetime_s: Seconds = 86400.0
    limits: EntryLimits = field(default_factory=EntryLimits)
    attributes: dict[str, Any] = field(default_factory=dict)  # extra slot ad attributes
    faults: dict[str, Any] = field(default_factory=dict)  # embedded cloud: services/cloud/faults.py
    slot_users: str = "60001-60064"  # who jobs run as under a root pilot (BURST_SLOT_USERS)


@dataclass(frozen=True)
class GroupLimits:
    max_idle_per_entry: Count = 100
    curb_idle_per_entry: Count = 50
    max_running_per_entry: Count = 10000
    max_held_per_entry: Count = 50
    total_max_idle: Count = 1000
    total_max_running: Count = 10000
    ramp_step: Count = 20  # an idle target may always grow by this many per cycle ...
    ramp_growth: Seconds = 1.0  # ... or by this fraction of itself, if that is more
    settle_cycles: Count = 2  # cycles of surplus in a row before pilots are removed


@dataclass(frozen=True)
class GroupConfig:
    name: str
    match: str = "true"
    # trust domain -> a reference to the secret (env:NAME, file:PATH, none), never the secret
    credentials: dict[str, str] = field(default_factory=dict)
    idle_lifetime_s: Seconds = 0.0
    limits: GroupLimits = field(default_factory=GroupLimits)


@dataclass(frozen=True)
class ServiceTimers:
    schedd_name: str = "schedd"
    negotiator_interval_s: Seconds = 20.0
    negotiator_half_life_s: Seconds = 86400.0
    frontend_name: str = "frontend"
    frontend_interval_s: Seconds = 15.0
    factory_name: str = "factory"
    factory_interval_s: Seconds = 5.0
    slot_lease_s: Seconds = 60.0
    claim_grace_s: Seconds = 10.0  # schedd: a slot ad this much newer than a claim lists it
    cloud_port: Count = 5000  # the embedded cloud's EC2/S3 endpoint; 0 = any free port
    cloud_boot_delay_s: Seconds = 2.0  # pending -> running in the embedded cloud
    cloud_interval_s: Seconds = 0.5  # the embedded cloud's VM host watch cycle
    web_host: str = "127.0.0.1"  # the dashboard's address; 0.0.0.0 to serve other hosts
    web_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8470  # 0: any free port
    metadata_host: str = "127.0.0.1"  # the metadata service (boot token exchange) listens here
    metadata_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8471  # 0: any free port
    metadata_url: str = ""  # what VMs are told to reach it at; "" = where it listens
    boot_token_lifetime_s: Seconds = 600.0  # a boot token not exchanged by then is refused
    # The broker URL pilots are given ("" = the services' AMQP_URL); as it may hold a
    # password, it may be a reference: env:NAME or file:PATH (credentials.setting).
    pilot_amqp_url: str = ""
    # Prometheus /metrics of each service: base + the service's offset (runtime/metrics.py:
    # schedd 9470, negotiator 9471, frontend 9472, metadata 9473, factory 9474, web 9475,
    # cloud 9476); 0: any free port. metrics_ports = { factory-2 = 9480 } names ports one by
    # one. Each service writes its URL to <state>/run/<service>.metrics.json.
    metrics_host: str = "127.0.0.1"
    metrics_port_base: Annotated[int, msgspec.Meta(ge=0, le=65535 - 16)] = 9470
    metrics_ports: dict[str, Annotated[int, msgspec.Meta(ge=0, le=65535)]] = field(
        default_factory=dict)


@dataclass(frozen=True)
class PoolConfig:
    path: Path
    entries: tuple[EntryConfig, ...]
    groups: tuple[GroupConfig, ...]
    services: ServiceTimers = field(default_factory=ServiceTimers)

    def entry(self, name: str) -> EntryConfig:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)


@dataclass(frozen=True)
class _PoolFile:
    """The TOML file as written: [[entry]], [[group]] and [services] tables."""

    entry: tuple[EntryConfig, ...] = ()
    group: tuple[GroupConfig, ...] = ()
    services: ServiceTimers = field(default_factory=ServiceTimers)


def load_pool_config(path: Path | str) -> PoolConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file (set BURST_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = str(path)
    _refuse_unknown(_PoolFile, raw, where, "")
    try:
        pool = msgspec.convert(raw, _PoolFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, raw, where)) from None
    for i, entry in enumerate(pool.entry):
        _check_entry(entry, f"{where}: entry[{i}]")
    for i, group in enumerate(pool.group):
        _check_group(group, f"{where}: group[{i}]")
    _unique([e.name for e in pool.entry], f"{where}: entry names")
    _unique([g.name for g in pool.group], f"{where}: group names")
    if not pool.entry:
        raise ConfigError(f"{where}: no [[entry]] configured; the pool could never grow")
    return PoolConfig(path=path, entries=pool.entry,
                      groups=pool.group or (GroupConfig(name="main"),), services=pool.services)


def _refuse_unknown(cls: type, raw: Any, where: str, key: str) -> None:
    """A misspelt key would otherwise be dropped in silence (msgspec ignores extra keys of
    dataclasses); name it and the keys that are known. Wrong shapes are left to msgspec."""
    if not isinstance(raw, dict):
        return
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(raw) - set(known))
    if unknown:
        place = f"{where}: {key}" if key else where
        raise ConfigError(f"{place}: unknown field(s) {unknown}; known: {known}")
    hints = get_type_hints(cls)
    for name, value in raw.items():
        inner = hints[name]
        if is_dataclass(inner):
            _refuse_unknown(inner, value, where, f"{key}.{name}".lstrip("."))
        elif get_args(inner)[:1] and is_dataclass(get_args(inner)[0]) and isinstance(value, list):
            for i, item in enumerate(value):  # tuple[EntryConfig, ...]: [[entry]] tables
                _refuse_unknown(get_args(inner)[0], item, where, f"{name}[{i}]")


_AT = re.compile(r"^(?P<what>.*) - at `\$\.?(?P<key>.*)`$")
_WORDS = {"`object`": "table", "`array`": "array of tables"}  # msgspec's names, TOML's words


def _explain(exc: msgspec.ValidationError, raw: dict, where: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.entry[2].cpus`" in the file's terms."""
    match = _AT.match(str(exc))
    what, key = (match["what"], match["key"]) if match else (str(exc), "")
    if " >= " in what:  # a bound: msgspec does not say what was written
        what += f", got {_value_at(raw, key)!r}"
    for word, toml in _WORDS.items():
        what = what.replace(word, toml)
    what = re.sub(r"Object missing required field `(.*)`", r"missing required field '\1'", what)
    what = what.replace("`", "")
    what = what[:1].lower() + what[1:]
    return f"{where}: {key}: {what}" if key else f"{where}: {what}"


def _value_at(raw: Any, key: str) -> Any:
    for step in re.findall(r"\w+", key):  # entry[2].cpus -> entry, 2, cpus
        raw = raw[int(step)] if isinstance(raw, list) else raw[step]
    return raw


def _check_entry(entry: EntryConfig, where: str) -> None:
    if entry.driver not in DRIVERS:
        raise ConfigError(f"{where}.driver: {entry.driver!r} is not one of {', '.join(DRIVERS)}")
    if entry.provider not in PROVIDERS:
        raise ConfigError(
            f"{where}.provider: {entry.provider!r} is not one of {', '.join(PROVIDERS)}"
        )
    if entry.credential not in CREDENTIAL_KINDS:
        raise ConfigError(f"{where}.credential: {entry.credential!r} is not one of "
                          f"{', '.join(CREDENTIAL_KINDS)}")


def _check_group(group: GroupConfig, where: str) -> None:
    for domain, reference in group.credentials.items():
        if not is_reference(reference):
            # Never echo the value: it may be the very secret that does not belong here.
            raise ConfigError(f"{where}.credentials.{domain}: not a credential reference; "
                              "write env:VARIABLE, file:/path/to/secret or none, never the "
                              "secret itself")


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: {name!r} appears twice")
        seen.add(name)
