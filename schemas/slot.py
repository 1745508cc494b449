"""Slots and claims: pilots advertise, the negotiator matches, the schedd claims.

    glidein ──slot.advertised──▶ burst.events ──▶ negotiator, web, status
    negotiator ──match.offer──▶ schedd                  (command, per schedd)
    schedd ──claim.activate / job.kill──▶ glidein       (command, per pilot)
    negotiator ──negotiation.completed──▶ burst.events
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._base import ClassVar, message
from .files import FileFetch


@message
class SlotAdvertised:
    """A pilot's partitionable slot: totals, what is free now, and its ClassAd."""

    NAME: ClassVar[str] = "slot.advertised"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("pilot",)
    pilot_id: str
    ad: str  # ClassAd text of the partitionable slot (totals, GLIDEIN_*, Cloud*)
    state: str  # idle | busy | retiring
    free_cpus: int
    free_memory_mb: int
    free_disk_mb: int
    claims: list[str] = field(default_factory=list)
    entry: str = ""
    site: str = ""
    provider: str = ""
    seq: int = 0
    lease_s: float = 60.0  # the ad is stale after this long without a new one
    time: float = 0.0
    # Job ids the pilot holds: running, or finished with a result not yet confirmed. A job
    # claimed to this pilot and not listed is no longer there (claim reconciliation).
    jobs: list[str] = field(default_factory=list)
    # Custom resources free now, by slot ad name ({"GPUs": 1, "Boats": 2}); the ad has them
    # too, with their totals (TotalGPUs, ...) and MachineResources naming them all.
    free_resources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    claim_id: str
    pilot_id: str
    cpus: int
    memory_mb: int
    disk_mb: int
    entry: str = ""
    site: str = ""
    provider: str = ""
    resources: dict[str, int] = field(default_factory=dict)  # custom ones carved: {"GPUs": 1}


@message
class MatchOffer:
    NAME: ClassVar[str] = "match.offer"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    autocluster: str
    owner: str
    claims: list[Claim]
    cycle: int = 0


@message
class ClaimActivate:
    NAME: ClassVar[str] = "claim.activate"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    SEALED: ClassVar[bool] = True  # to the pilot it is sent to (security.py)
    claim_id: str
    pilot_id: str
    schedd: str
    job_id: str
    job_ad: str
    executable: str  # file name inside `files`, or an absolute path on the pilot host
    arguments: list[str]
    environment: dict[str, str]
    files: dict[str, bytes]
    cpus: int
    memory_mb: int
    disk_mb: int
    output_files: list[str] = field(default_factory=list)  # transfer_output_files; [] = all new
    stream_names: dict[str, str] = field(default_factory=dict)  # stdin/stdout/stderr names
    # Custom resources claimed besides cpus, memory and disk ({"GPUs": 1, "Boats": 2}); the
    # pilot carves them out of its slot as it does cpus
    resources: dict[str, int] = field(default_factory=dict)
    # Object storage and URLs (schemas/files.py): inputs fetched before the job starts, and
    # presigned PUT URLs by slot ("stdout", "stderr", "0", "1", ...) for outputs bigger than
    # inline_max_bytes (0: no uploads; everything returns inside job.report).
    fetch: list[FileFetch] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)
    inline_max_bytes: int = 0
    fetch_max_bytes: int = 0  # cap on a fetched file of unknown size
    fetch_timeout_s: float = 60.0  # a fetch or upload that moves no byte this long fails


@message
class JobKill:
    NAME: ClassVar[str] = "job.kill"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    SEALED: ClassVar[bool] = True  # to the pilot it is sent to (security.py)
    pilot_id: str
    job_id: str
    claim_id: str
    reason: str


@message
class NegotiationCompleted:
    NAME: ClassVar[str] = "negotiation.completed"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    cycle: int
    duration_ms: float
    autoclusters: int
    slots: int
    matches: int
    priorities: dict[str, float] = field(default_factory=dict)
