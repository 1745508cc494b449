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
    # Custom resources each pilot hands out per claim like cpus (request_gpus, request_<name>)
    gpus: Count = 0
    resources: dict[str, Count] = field(default_factory=dict)  # e.g. { Boats = 2 }
    idle_timeout_s: Seconds = 1200.0  # GlideinWMS default: 20 minutes without a job
    max_lifetime_s: Seconds = 86400.0
    limits: EntryLimits = field(default_factory=EntryLimits)
    attributes: dict[str, Any] = field(default_factory=dict)  # extra slot ad attributes
    faults: dict[str, Any] = field(default_factory=dict)  # embedded cloud: services/cloud/faults.py
    slot_users: str = "60001-60064"  # who jobs run as under a root pilot (BURST_SLOT_USERS)

    def custom_resources(self) -> dict[str, int]:
        """What a pilot carries besides cpus, memory and disk, by slot ad name (GPUs, ...)."""
        return {**({"GPUs": self.gpus} if self.gpus else {}), **self.resources}


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
    # schedd: how often PeriodicHold/Release/Remove are evaluated (HTCondor's
    # PERIODIC_EXPR_INTERVAL, 60 s)
    periodic_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
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


STORAGE_ENDPOINTS = ("", "embedded", "aws")  # or an http(s):// URL
MiB = 1024 * 1024


@dataclass(frozen=True)
class StorageConfig:
    """Object storage for job files (the [storage] table); endpoint "" = none: files travel
    inside messages, capped at 64 MiB per job."""

    endpoint: str = ""  # "embedded" (the embedded cloud's S3), "aws" (boto3's own), or a URL
    bucket: str = "burst-transfer"
    region: str = ""  # "" = us-east-1 (embedded) or boto3's own (aws, URL)
    # A reference, never the secret: env:NAME / file:PATH holding ACCESS_KEY_ID:SECRET (or
    # the JSON form of credentials.ec2_keys), or none (the embedded cloud, boto3's chain).
    credentials: str = "none"
    inline_max_bytes: Size = 4 * MiB  # a file bigger than this never rides in a message
    url_expiry_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] = 3600.0  # presigned
    output_slots: Count = 8  # upload URLs for a job that lists no transfer_output_files
    # http(s):// inputs, fetched by the pilot (these two apply with or without storage)
    url_max_bytes: Size = 1024 * MiB
    url_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # without a byte: failed

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)


@dataclass(frozen=True)
class AccountingGroupConfig:
    """An accounting group's share of the pool (HTCondor's GROUP_QUOTA_<name> in cpus, or
    GROUP_QUOTA_DYNAMIC_<name> as a fraction); jobs join it with accounting_group."""

    name: str
    quota: Annotated[float, msgspec.Meta(ge=0)] | None = None  # cpus
    quota_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None  # of the pool
    accept_surplus: bool | None = None  # GROUP_ACCEPT_SURPLUS_<name>; [negotiator]'s default


@dataclass(frozen=True)
class NegotiatorConfig:
    accept_surplus: bool = False  # GROUP_ACCEPT_SURPLUS: may groups use what others leave?
    concurrency_limit_default: Annotated[float, msgspec.Meta(ge=0)] = 2308032.0  # HTCondor's


@dataclass(frozen=True)
class PoolConfig:
    path: Path
    entries: tuple[EntryConfig, ...]
    groups: tuple[GroupConfig, ...]
    services: ServiceTimers = field(default_factory=ServiceTimers)
    negotiator: NegotiatorConfig = field(default_factory=NegotiatorConfig)
    accounting_groups: tuple[AccountingGroupConfig, ...] = ()
    # HTCondor's <NAME>_LIMIT: how many jobs naming NAME in concurrency_limits may run.
    concurrency_limits: dict[str, float] = field(default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def entry(self, name: str) -> EntryConfig:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)


@dataclass(frozen=True)
class _PoolFile:
    """The TOML file as written: [[entry]], [[group]], [services], [negotiator],
    [[accounting_group]], [concurrency_limits] and [storage] tables."""

    entry: tuple[EntryConfig, ...] = ()
    group: tuple[GroupConfig, ...] = ()
    services: ServiceTimers = field(default_factory=ServiceTimers)
    negotiator: NegotiatorConfig = field(default_factory=NegotiatorConfig)
    accounting_group: tuple[AccountingGroupConfig, ...] = ()
    concurrency_limits: dict[str, Annotated[float, msgspec.Meta(ge=0)]] = field(
        default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)


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
    _check_amounts(raw, where)
    _check_limit_values(raw.get("concurrency_limits"), where)
    try:
        pool = msgspec.convert(raw, _PoolFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, raw, where)) from None
    for i, entry in enumerate(pool.entry):
        _check_entry(entry, f"{where}: entry[{i}]")
    for i, group in enumerate(pool.group):
        _check_group(group, f"{where}: group[{i}]")
    _check_storage(pool.storage, f"{where}: storage")
    _unique([e.name for e in pool.entry], f"{where}: entry names")
    _unique([g.name for g in pool.group], f"{where}: group names")
    for i, group in enumerate(pool.accounting_group):
        _check_accounting_group(group, f"{where}: accounting_group[{i}]")
    _unique([g.name for g in pool.accounting_group], f"{where}: accounting_group names")
    for name in pool.concurrency_limits:
        if not _LIMIT_NAME.fullmatch(name):
            raise ConfigError(f"{where}: concurrency_limits.{name}: not a limit name (letters, "
                              "digits, '_' and '.'; quote names with a dot: \"a.b\" = 2)")
    _unique([n.lower() for n in pool.concurrency_limits], f"{where}: concurrency_limits names")
    if not pool.entry:
        raise ConfigError(f"{where}: no [[entry]] configured; the pool could never grow")
    return PoolConfig(path=path, entries=pool.entry,
                      groups=pool.group or (GroupConfig(name="main"),), services=pool.services,
                      negotiator=pool.negotiator, accounting_groups=pool.accounting_group,
                      concurrency_limits=dict(pool.concurrency_limits), storage=pool.storage)


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


def _check_amounts(raw: dict, where: str) -> None:
    """Amounts of custom resources, checked before msgspec, which would name a bad one
    `resources[...]` and not say which."""
    entries = raw.get("entry")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        resources = entry.get("resources") if isinstance(entry, dict) else None
        for name, amount in (resources.items() if isinstance(resources, dict) else ()):
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                got = type(amount).__name__ if not isinstance(amount, int) else repr(amount)
                raise ConfigError(f"{where}: entry[{i}].resources.{name}: expected int >= 0, "
                                  f"got {got}")


_AT = re.compile(r"^(?P<what>.*) - at `\$\.?(?P<key>.*)`$")
_WORDS = {"`object`": "table", "`array`": "array of tables"}  # msgspec's names, TOML's words


def _explain(exc: msgspec.ValidationError, raw: dict, where: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.entry[2].cpus`" in the file's terms."""
    match = _AT.match(str(exc))
    what, key = (match["what"], match["key"]) if match else (str(exc), "")
    if " >= " in what or " <= " in what:  # a bound: msgspec does not say what was written
        what += f", got {_value_at(raw, key)!r}"
    what = what.replace(" | null", "")  # an optional key: TOML has no null to write
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


# A custom resource is advertised as <Name>, Total<Name>, ... and asked for as
# Request<Name>: a ClassAd name of 2 or more characters (HTCondor's rule), not one of these.
RESOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
BUILTIN_RESOURCES = ("cpus", "memory", "disk", "swap")


def resource_problem(name: str) -> str:
    """Why `name` cannot name a custom resource ("" if it can)."""
    if not RESOURCE_NAME.fullmatch(name):
        return "a resource name is a letter then letters, digits or '_' (2 or more)"
    if name.lower() in BUILTIN_RESOURCES:
        return f"{name} is a built-in resource (cpus, memory_mb, disk_mb)"
    return ""


def _check_entry(entry: EntryConfig, where: str) -> None:
    for name in entry.resources:
        if problem := resource_problem(name) or (
                "declare GPUs with gpus = N" if name.lower() == "gpus" else ""):
            raise ConfigError(f"{where}.resources.{name}: {problem}")
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


_LIMIT_NAME = re.compile(r"[A-Za-z0-9_.]+")


def _check_limit_values(limits: Any, where: str) -> None:
    """msgspec names no key of a table read as a dict; say which limit is wrong."""
    if not isinstance(limits, dict):
        return
    for name, value in limits.items():
        if isinstance(value, dict):
            raise ConfigError(f"{where}: concurrency_limits.{name}: expected a number, got a "
                              f"table (quote a name with a dot: \"{name}.x\" = 2)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}: concurrency_limits.{name}: expected a number >= 0, "
                              f"got {value!r}")


def _check_accounting_group(group: AccountingGroupConfig, where: str) -> None:
    if (group.quota is None) == (group.quota_fraction is None):
        raise ConfigError(f"{where}: set one of quota (cpus) and quota_fraction (of the pool)")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", group.name):
        raise ConfigError(f"{where}.name: {group.name!r}: letters, digits, '_' and '-' only "
                          "(groups are one level: no '.')")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's rule for bucket names


def _check_storage(storage: StorageConfig, where: str) -> None:
    endpoint = storage.endpoint
    if endpoint not in STORAGE_ENDPOINTS and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.endpoint: {endpoint!r} is not \"embedded\", \"aws\", an "
                          "http(s):// URL or \"\" (no object storage)")
    if not _BUCKET.match(storage.bucket):
        raise ConfigError(f"{where}.bucket: {storage.bucket!r} is not an S3 bucket name (3-63 "
                          "lower-case letters, digits, dots and hyphens)")
    if not is_reference(storage.credentials):
        raise ConfigError(f"{where}.credentials: not a credential reference; write "
                          "env:VARIABLE, file:/path/to/keys or none, never the secret itself")


def _unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: {name!r} appears twice")
        seen.add(name)
