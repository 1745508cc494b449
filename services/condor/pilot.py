"""The pilot context: who a pilot is, where it runs, what it offers, which broker it joins.

    glidein: environment, --context FILE, (later) IMDS user data ──resolve()──▶ PilotContext
    factory: an entry's configuration ──────────────────────────────────────▶ PilotContext
                                   slot.slot_ad(context, free) ─▶ the slot ad both agree on

The shape lives here because the factory builds one for an entry's prototype
slot ad before any pilot exists; reading and validating the sources is the
glidein's (services/glidein/context.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime.config import DEFAULT_AMQP_URL, Settings

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
    # The pilot's own key (services/runtime/security.py): a file (local pilots), or, until the
    # metadata broker hands it over in a token exchange, the hex key from the VM's user data.
    key_file: Path | None = None
    key_hex: str = field(default="", repr=False)

    def settings(self) -> Settings:
        """Bus settings for this pilot (validates the namespace like every service does)."""
        return Settings.from_env({"AMQP_URL": self.amqp_url, "BURST_NAMESPACE": self.namespace,
                                  "BURST_STATE_DIR": str(self.state_dir)})
