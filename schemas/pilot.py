"""Pilot (glidein) lifecycle.

    factory ──pilot.launched / pilot.lost──▶ burst.events
    glidein ──pilot.registered / pilot.retiring / pilot.exited──▶ burst.events
    factory ──pilot.retire──▶ glidein                   (command, per pilot)

States a pilot goes through, as `burst status` counts them:
    pending (launched, not registered) → idle ⇄ busy → retiring → exited
    and `lost` when it vanished without saying so.
"""

from __future__ import annotations

from ._base import ClassVar, message


@message
class PilotLaunched:
    NAME: ClassVar[str] = "pilot.launched"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    pilot_id: str
    entry: str
    site: str
    factory: str
    driver: str
    provider: str
    instance_id: str = ""
    group: str = ""
    time: float = 0.0
    requested_at: float = 0.0  # when the frontend's request it serves was made (0: unknown)


@message
class PilotRegistered:
    NAME: ClassVar[str] = "pilot.registered"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("pilot",)
    pilot_id: str
    entry: str
    site: str
    provider: str
    cpus: int
    memory_mb: int
    disk_mb: int
    instance_id: str = ""
    instance_type: str = ""
    host: str = ""
    pid: int = 0
    context_source: str = ""  # env | file | imds-v2 | imds-v1 | config-drive | context-disk
    time: float = 0.0


@message
class PilotRetiring:
    NAME: ClassVar[str] = "pilot.retiring"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("pilot",)
    pilot_id: str
    entry: str
    reason: str
    running_jobs: int = 0
    time: float = 0.0


@message
class PilotExited:
    NAME: ClassVar[str] = "pilot.exited"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("pilot", "service")
    pilot_id: str
    entry: str
    reason: str
    jobs_run: int = 0
    uptime_s: float = 0.0
    time: float = 0.0


@message
class PilotLost:
    NAME: ClassVar[str] = "pilot.lost"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    pilot_id: str
    entry: str
    reason: str
    time: float = 0.0


@message
class PilotRetire:
    NAME: ClassVar[str] = "pilot.retire"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    SEALED: ClassVar[bool] = True  # to the pilot it is sent to (security.py)
    pilot_id: str
    reason: str
    only_if_idle: bool = True
