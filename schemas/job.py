"""Job messages: commands to a schedd, reports from pilots, and job events.

    CLI ──cluster.new / job.submit / job.query / job.action──▶ schedd   (RPC on burst.cmd)
    glidein ──job.report──▶ schedd                                      (command)
    schedd ──job.<state>──▶ burst.events                                (one event per transition)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._base import ClassVar, message
from .files import StoredFile, StoredOutput

# --- commands to a schedd (RPC: the reply is the next schema) -------------------------------


@message
class ClusterNew:
    NAME: ClassVar[str] = "cluster.new"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("user",)
    owner: str


@message
class ClusterAllocated:
    NAME: ClassVar[str] = "cluster.allocated"
    VERSION: ClassVar[int] = 1
    schedd: str
    cluster: int
    # Files bigger than this go through object storage (input.stage); 0: the schedd has no
    # object storage, and every file travels inside job.submit.
    inline_max_bytes: int = 0


@message
class InputStage:
    """Before job.submit: where `burst submit` may put the cluster's big input files."""

    NAME: ClassVar[str] = "input.stage"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("user",)
    cluster: int
    owner: str
    files: list[StoredFile]


@message
class InputUploads:
    """Reply to input.stage: a presigned PUT URL per sha256 (send Content-Type
    application/octet-stream), valid for expires_s."""

    NAME: ClassVar[str] = "input.uploads"
    VERSION: ClassVar[int] = 1
    urls: dict[str, str]
    expires_s: float


@dataclass(frozen=True)
class ProcAd:
    proc: int
    ad: str  # the job ClassAd in new ClassAd syntax: "[ A = 1; ... ]"
    inputs: int = -1  # index of its files in JobSubmit.input_sets; -1: it takes none


@message
class JobSubmit:
    """A cluster's jobs, with the files they take along, read by `burst submit` with the
    user's own rights: the schedd never reads a user's path itself."""

    NAME: ClassVar[str] = "job.submit"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("user",)
    cluster: int
    owner: str
    submit_file: str
    procs: list[ProcAd]
    # Sets of input files (name in the job's directory -> content); procs with the same
    # files share one set, so a file all jobs take travels once.
    input_sets: list[dict[str, bytes]] = field(default_factory=list)
    # Files of those sets put in object storage (input.stage), by set: stored_inputs[i]
    # holds the files of input_sets[i] that are not inline.
    stored_inputs: list[dict[str, StoredFile]] = field(default_factory=list)


@message
class JobSubmitted:
    """Reply to job.submit, and the event published once per submitted cluster."""

    NAME: ClassVar[str] = "job.submitted"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    cluster: int
    jobs: list[str]
    owner: str = ""


@message
class JobQuery:
    NAME: ClassVar[str] = "job.query"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("user",)
    ids: list[str] = field(default_factory=list)  # "12" or "12.3"; empty means all
    include_history: bool = True


@dataclass(frozen=True)
class JobInfo:
    id: str
    owner: str
    state: str  # idle | running | completed | held | removed
    exit_code: int | None = None
    entry: str | None = None
    site: str | None = None
    provider: str | None = None
    pilot_id: str | None = None
    cmd: str = ""
    args: str = ""
    hold_reason: str = ""
    idle_reason: str = ""
    request_cpus: int = 1
    request_memory_mb: int = 0
    request_disk_mb: int = 0
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    runs: int = 0


@message
class JobList:
    NAME: ClassVar[str] = "job.list"
    VERSION: ClassVar[int] = 1
    schedd: str
    jobs: list[JobInfo]


@message
class JobAction:
    NAME: ClassVar[str] = "job.action"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("user",)
    action: str  # remove | hold | release
    ids: list[str]
    reason: str = ""


@message
class JobActionResult:
    NAME: ClassVar[str] = "job.action.result"
    VERSION: ClassVar[int] = 1
    changed: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # job id -> why not


@message
class RpcError:
    """Reply to any RPC that could not be carried out: the message says why."""

    NAME: ClassVar[str] = "rpc.error"
    VERSION: ClassVar[int] = 1
    message: str


# --- pilot -> schedd -----------------------------------------------------------------------


@message
class JobReport:
    NAME: ClassVar[str] = "job.report"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("pilot",)
    job_id: str
    claim_id: str
    pilot_id: str
    state: str  # running | exited | held | rejected
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str = ""
    stdout: bytes = b""
    stderr: bytes = b""
    output_files: dict[str, bytes] = field(default_factory=dict)
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_mb: int = 0
    entry: str = ""
    site: str = ""
    provider: str = ""
    # What went through the claim's upload URLs instead: "stdout"/"stderr", output files by
    # name; the schedd fetches each and checks its sha256 and size.
    stored_streams: dict[str, StoredOutput] = field(default_factory=dict)
    stored_files: dict[str, StoredOutput] = field(default_factory=dict)


# --- job events (schedd -> burst.events) -----------------------------------------------------


@message
class JobMatched:
    NAME: ClassVar[str] = "job.matched"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    claim_id: str
    pilot_id: str
    entry: str = ""
    site: str = ""


@message
class JobRunning:
    NAME: ClassVar[str] = "job.running"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    pilot_id: str
    entry: str = ""
    site: str = ""
    provider: str = ""


@message
class JobCompleted:
    NAME: ClassVar[str] = "job.completed"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    exit_code: int | None
    exit_signal: int | None = None
    wall_seconds: float = 0.0
    pilot_id: str = ""
    entry: str = ""
    site: str = ""
    provider: str = ""
    outputs: list[str] = field(default_factory=list)  # paths written on the submit side


@message
class JobHeld:
    NAME: ClassVar[str] = "job.held"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    reason: str
    code: int = 0  # HTCondor's HoldReasonCode: 1 user, 3 job policy, 5 policy undefined, ...
    subcode: int = 0  # HoldReasonSubCode


@message
class JobReleased:
    NAME: ClassVar[str] = "job.released"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    reason: str = ""  # the user's, or the PeriodicRelease expression that fired


@message
class JobRemoved:
    NAME: ClassVar[str] = "job.removed"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    reason: str = ""


@message
class JobRequeued:
    """A job went back to idle: its claim was rejected or its pilot went away."""

    NAME: ClassVar[str] = "job.requeued"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    job_id: str
    owner: str
    reason: str
