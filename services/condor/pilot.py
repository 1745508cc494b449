"""The pilot context: who a pilot is, where it runs, what it offers, which broker it joins.

    glidein: environment, --context FILE, cloud user data ──resolve()──▶ PilotContext
    factory: an entry's configuration ──────────────────────────────▶ PilotContext
                                   slot.slot_ad(context, free) ─▶ the slot ad both agree on

    factory (local pilots, in their environment) ─┐
    metadata service (cloud pilots, in a token   ─┴─ pilot_environment() ─▶ BURST_* variables
    exchange)

The shape lives here because the factory builds one for an entry's prototype
slot ad before any pilot exists; reading and validating the sources is the
glidein's (services/glidein/context.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime.config import DEFAULT_AMQP_URL, EntryConfig, Settings

DEFAULT_SLOT_USERS = "60001-60064"  # numeric uids: no /etc/passwd entries needed


@dataclass(frozen=True)
class PilotContext:
    pilot_id: str
    entry: str = ""
    site: str = ""
    factory: str = ""
    provider: str = "local"
    cpus: int = 1
    memory_mb: int = 1024
    disk_mb: int = 4096
    # Custom resources it hands out per claim like cpus, by slot ad name: {"GPUs": 1, ...}
    resources: dict[str, int] = field(default_factory=dict)
    idle_timeout_s: float = 1200.0  # GlideinWMS: a glidein with no job for 20 minutes leaves
    max_lifetime_s: float = 86400.0
    instance_id: str = ""
    instance_type: str = ""
    spot: bool = False
    group: str = ""
    amqp_url: str = DEFAULT_AMQP_URL
    namespace: str = "burst"
    state_dir: Path = Path(".burst").absolute()
    work_dir: Path = Path(".burst").absolute()
    attributes: dict[str, Any] = field(default_factory=dict)  # extra slot ad attributes
    # Who jobs run as when the pilot is root: uids "a-b", numbers or user names, comma
    # separated; "" runs every job as nobody (services/glidein/isolation.py).
    slot_users: str = DEFAULT_SLOT_USERS
    source: str = "env"  # env | file | imds-v2 | imds-v1 | config-drive | context-disk
    # The pilot's own key (services/runtime/security.py): a file (local pilots), or the hex key
    # a cloud pilot gets from the metadata service in exchange for its boot token.
    key_file: Path | None = None
    key_hex: str = field(default="", repr=False)
    # W3C traceparent of what started the pilot (the factory's launch span, or a VM's boot
    # exchange): its registration is a child, so a job's trace shows its pilot coming up.
    traceparent: str = ""

    def settings(self) -> Settings:
        """Bus settings for this pilot (validates the namespace like every service does)."""
        return Settings.from_env({"AMQP_URL": self.amqp_url, "BURST_NAMESPACE": self.namespace,
                                  "BURST_STATE_DIR": str(self.state_dir)})


def pilot_environment(entry: EntryConfig, pilot_id: str, *, factory: str, group: str,
                      idle_lifetime_s: float, settings: Settings, amqp_url: str = ""
                      ) -> dict[str, str]:
    """The BURST_* variables a pilot of `entry` starts with (its key comes separately).

    `idle_lifetime_s` is what the group asked for (0: the entry's own idle timeout);
    `amqp_url` the broker URL pilots are given ([services] pilot_amqp_url; "" = the
    services' own).
    """
    return {
        "BURST_PILOT_ID": pilot_id, "BURST_ENTRY": entry.name, "BURST_SITE": entry.site,
        "BURST_FACTORY": factory, "BURST_PROVIDER": entry.provider,
        "BURST_CPUS": str(entry.cpus), "BURST_MEMORY_MB": str(entry.memory_mb),
        "BURST_DISK_MB": str(entry.disk_mb),
        "BURST_RESOURCES": json.dumps(entry.custom_resources()),
        "BURST_IDLE_TIMEOUT_S": str(idle_lifetime_s or entry.idle_timeout_s),
        "BURST_MAX_LIFETIME_S": str(entry.max_lifetime_s), "BURST_GROUP": group,
        "BURST_INSTANCE_TYPE": entry.instance_type,
        "AMQP_URL": amqp_url or settings.amqp_url,
        "BURST_NAMESPACE": settings.namespace,
        "BURST_STATE_DIR": str(settings.state_dir),
        "BURST_PILOT_ATTRS": json.dumps(entry.attributes),
        "BURST_SLOT_USERS": entry.slot_users,
    }
