"""Settings from the environment and the pool configuration from TOML.

Both are frozen and built once per process. Errors name the file and the
field, e.g. ``deploy/burst.toml: entry[2].cpus: expected a positive integer``.

Environment (DESIGN.md): AMQP_URL, BURST_NAMESPACE, BURST_CONFIG,
BURST_STATE_DIR. The TOML layout is documented in deploy/burst.toml.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


@dataclass(frozen=True)
class EntryLimits:
    max_pilots: int = 10
    max_launch_per_cycle: int = 5
    pending_timeout_s: float = 300.0  # a pilot that has not registered by then is lost


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
    cpus: int = 1
    memory_mb: int = 1024
    disk_mb: int = 4096
    idle_timeout_s: float = 1200.0  # GlideinWMS default: 20 minutes without a job
    max_lifetime_s: float = 86400.0
    limits: EntryLimits = field(default_factory=EntryLimits)
    attributes: dict[str, Any] = field(default_factory=dict)  # extra slot ad attributes
    faults: dict[str, Any] = field(default_factory=dict)  # embedded cloud: services/cloud/faults.py


@dataclass(frozen=True)
class GroupLimits:
    max_idle_per_entry: int = 100
    curb_idle_per_entry: int = 50
    max_running_per_entry: int = 10000
    max_held_per_entry: int = 50
    total_max_idle: int = 1000
    total_max_running: int = 10000
    ramp_step: int = 20  # an idle target may always grow by this many per cycle ...
    ramp_growth: float = 1.0  # ... or by this fraction of itself, if that is more
    settle_cycles: int = 2  # cycles of surplus in a row before pilots are removed


@dataclass(frozen=True)
class GroupConfig:
    name: str
    match: str = "true"
    credentials: dict[str, str] = field(default_factory=dict)  # trust domain -> secret ref
    idle_lifetime_s: float = 0.0
    limits: GroupLimits = field(default_factory=GroupLimits)


@dataclass(frozen=True)
class ServiceTimers:
    schedd_name: str = "schedd"
    negotiator_interval_s: float = 20.0
    negotiator_half_life_s: float = 86400.0
    frontend_name: str = "frontend"
    frontend_interval_s: float = 15.0
    factory_name: str = "factory"
    factory_interval_s: float = 5.0
    slot_lease_s: float = 60.0
    cloud_port: int = 5000  # the embedded cloud's EC2/S3 endpoint; 0 = any free port
    cloud_boot_delay_s: float = 2.0  # pending -> running in the embedded cloud
    cloud_interval_s: float = 0.5  # the embedded cloud's VM host watch cycle


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


def load_pool_config(path: Path | str) -> PoolConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file (set BURST_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = str(path)
    unknown = set(raw) - {"entry", "group", "services"}
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {sorted(unknown)}")
    entries = tuple(
        _entry(item, f"{where}: entry[{i}]") for i, item in enumerate(_tables(raw, "entry", where))
    )
    groups = tuple(
        _build(GroupConfig, item, f"{where}: group[{i}]", nested={"limits": GroupLimits})
        for i, item in enumerate(_tables(raw, "group", where))
    )
    _unique([e.name for e in entries], f"{where}: entry names")
    _unique([g.name for g in groups], f"{where}: group names")
    if not entries:
        raise ConfigError(f"{where}: no [[entry]] configured; the pool could never grow")
    if not groups:
        groups = (GroupConfig(name="main"),)
    services = _build(ServiceTimers, raw.get("services", {}), f"{where}: services")
    return PoolConfig(path=path, entries=entries, groups=groups, services=services)


def _tables(raw: dict, key: str, where: str) -> list[dict]:
    items = raw.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{where}: {key} must be written as [[{key}]] tables")
    return items


def _entry(item: dict, where: str) -> EntryConfig:
    entry = _build(EntryConfig, item, where, nested={"limits": EntryLimits})
    if entry.driver not in DRIVERS:
        raise ConfigError(f"{where}.driver: {entry.driver!r} is not one of {', '.join(DRIVERS)}")
    if entry.provider not in PROVIDERS:
        raise ConfigError(
            f"{where}.provider: {entry.provider!r} is not one of {', '.join(PROVIDERS)}"
        )
    for name in ("cpus", "memory_mb", "disk_mb"):
        if getattr(entry, name) < 1:
            raise ConfigError(f"{where}.{name}: must be at least 1")
    return entry


def _build(cls: type, item: Any, where: str, nested: dict[str, type] | None = None) -> Any:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(item) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in item.items():
        sub = (nested or {}).get(name)
        if sub is not None:
            kwargs[name] = _build(sub, value, f"{where}.{name}")
        else:
            kwargs[name] = _check(known[name].type, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [n for n, f in known.items() if n not in item and _required(f)]
        raise ConfigError(f"{where}: missing field(s) {missing}") from exc


def _required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _check(type_name: Any, value: Any, where: str) -> Any:
    expected = _TYPES.get(str(type_name))
    if expected is None:  # dicts and such: accept TOML's own typing
        return value
    if isinstance(value, bool) and type_name != "bool":
        raise ConfigError(f"{where}: expected {type_name}, got a boolean")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {type_name}, got {value!r}")
    if type_name in ("int", "float") and value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return float(value) if type_name == "float" else value


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: {name!r} appears twice")
        seen.add(name)
