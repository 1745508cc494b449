"""The schedd's decisions, pure: what a command, an offer or a report does to a job.

                     match.offer              report running            report exited
    submit ──▶ idle ────────────▶ idle+claim ───────────────▶ running ───────────────▶ completed
                ▲ ▲  (ClaimActivate            │ rejected, claim expired │
                │ │   to the pilot)            │ (job.kill), pilot gone  │ pilot gone
                │ └────────────────────────────┴─────────────────────────┘
                └── release ── held ◀── hold; a held report; a file that cannot be moved
    idle+claim or running, and the pilot's slot ad no longer lists the job ──▶ idle
    remove: any state but completed/removed ──▶ removed   (job.kill if it holds a claim)
    a run ends: the job's policy (policy.py) says completed, idle again, held or removed
    the periodic timer: PeriodicHold / PeriodicRelease / PeriodicRemove (policy.py)

Each transition takes one Job (the columns of its row) and plain values: the
message, `now`, the schedd's name and what a file transfer gave. It returns a
Plan: the columns to change, the commands to send, the events to emit and the
user-log lines to write. handlers.py applies a plan inside the transaction of
the message being handled; nothing here touches SQLite, files, the bus or the
clock. Every transition also updates the job's stored ad (JobStatus,
EnteredCurrentStatus, NumJobStarts, ExitCode, HoldReasonCode, ...), which is what
policy expressions read. How the queue groups and shows jobs is queue.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

import classad2

from schemas import job as J
from schemas.files import FileFetch
from schemas.slot import Claim, ClaimActivate, JobKill, SlotAdvertised
from services.condor import jobad
from services.condor.claims import claim_digest
from services.runtime.security import Principal

from . import policy, userlog
from .queue import custom_requests, job_id

TERMINAL = ("completed", "removed")
HELD_STATUS = 5  # HTCondor's JobStatus of a held job
ACTIONS = ("remove", "hold", "release")
FINISHED = ("exited", "held")  # reports that bring the job's output back
NO_CLAIM = {"claim_id": None, "matched_at": None}
NOT_PLACED = {"pilot_id": None, "entry": None, "site": None, "provider": None}


class InvalidMessage(ValueError):
    """A message no job can act on (an unknown report state): never worth a retry."""


@dataclass(frozen=True)
class Job:
    """The columns of one queued job that decisions read (store.py has them all)."""

    cluster: int
    proc: int
    owner: str
    state: str  # idle | running | completed | held | removed
    ad: str = "[]"
    claim_id: str | None = None  # set from the match until the job leaves its pilot
    pilot_id: str | None = None
    entry: str | None = None
    site: str | None = None
    provider: str | None = None
    matched_at: float | None = None
    started_at: float | None = None
    runs: int = 0
    spool: str | None = None  # its input files' directory in the spool, if it has any

    @classmethod
    def from_row(cls, row: Any) -> Job:
        """From a jobs row (sqlite3.Row or a mapping with the column names)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def id(self) -> str:
        return job_id(self.cluster, self.proc)

    @cached_property
    def classad(self) -> classad2.ClassAd:
        return classad2.ClassAd(self.ad)


@dataclass(frozen=True)
class UserLogLine:
    path: str  # the job's `log = FILE`, absolute
    text: str  # one event in HTCondor's user-log format
    iwd: str = ""  # where the log may be written: inside this directory only (jobad.file_root)


@dataclass(frozen=True)
class TransferFailed:
    """A file transfer that could not be done; the job is held with this reason."""

    reason: str


@dataclass(frozen=True)
class Transfers:
    """Files beside a claim activation (transfer.claim_transfers): what the pilot fetches
    first, and the presigned URLs it may put outputs bigger than inline_max_bytes through."""

    fetch: tuple[FileFetch, ...] = ()
    uploads: Mapping[str, str] = field(default_factory=dict)
    inline_max_bytes: int = 0
    fetch_max_bytes: int = 0
    fetch_timeout_s: float = 60.0


@dataclass(frozen=True)
class Plan:
    """What one decision does to one job. Empty, with `refused` saying why, if nothing."""

    job: Job | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)  # column -> new value
    commands: tuple[tuple[Any, str], ...] = ()  # (message, pilot): sent before the events
    events: tuple[Any, ...] = ()
    user_log: tuple[UserLogLine, ...] = ()
    refused: str = ""


def refused(job: Job | None, reason: str) -> Plan:
    return Plan(job, refused=reason)


# --- user actions ----------------------------------------------------------------------------


def job_action(job: Job, action: str, reason: str, *, actor: Principal, schedd: str,
               now: float) -> Plan:
    """rm, hold or release of one job by `actor` (`reason` as the user gave it, maybe "")."""
    if not actor.may_act_for(job.owner):
        return refused(job, f"is owned by {job.owner}; only its owner or an administrator "
                            f"may {action} it")
    if action == "release":
        if job.state != "held":
            return refused(job, f"is {job.state}, not held")
        return release(job, reason, schedd=schedd, now=now)
    if job.state in TERMINAL or (action == "hold" and job.state == "held"):
        return refused(job, f"is already {job.state}")
    if action == "remove":
        return remove(job, reason, schedd=schedd, now=now)
    return hold(job, reason or "held by user", schedd=schedd, now=now,
                code=policy.USER_REQUEST)


def missing_ids(requested: Iterable[str], found: Iterable[str]) -> dict[str, str]:
    """Requested ids ("12" or "12.3") that name no job found, with the reason."""
    found = list(found)
    return {text: "no such job" for text in requested
            if not any(j == text or j.startswith(f"{text}.") for j in found)}


# --- submissions -----------------------------------------------------------------------------


def spool_dirs(submit: J.JobSubmit, *, max_bytes: int) -> dict[int, str]:
    """Where each input set a submission's procs use is spooled, relative to the spool:
    CLUSTER/shared when all share one set, else CLUSTER/<first proc that uses it>.
    InvalidMessage for procs numbered twice or below 0, a proc naming a set that is not
    there, a file name with a directory in it, or a set over `max_bytes` (what one job may
    carry)."""
    procs = [proc.proc for proc in submit.procs]
    if len(set(procs)) != len(procs) or min(procs, default=0) < 0:
        raise InvalidMessage(f"cluster {submit.cluster}: proc numbers must be distinct and not "
                             "negative")
    users: dict[int, list[int]] = {}
    for proc in submit.procs:
        if proc.inputs == -1:
            continue
        if not 0 <= proc.inputs < len(submit.input_sets):
            raise InvalidMessage(f"job {submit.cluster}.{proc.proc}: no input set "
                                 f"{proc.inputs}")
        users.setdefault(proc.inputs, []).append(proc.proc)
    if len(submit.stored_inputs) > len(submit.input_sets):
        raise InvalidMessage(f"cluster {submit.cluster}: more sets of stored inputs than input "
                             "sets")
    for index in users:
        files = submit.input_sets[index]
        stored = submit.stored_inputs[index] if index < len(submit.stored_inputs) else {}
        if both := sorted(set(files) & set(stored)):
            raise InvalidMessage(f"cluster {submit.cluster}: input file {both[0]!r} is both "
                                 "inline and in object storage")
        if bad := [name for name in (*files, *stored) if not plain_file_name(name)]:
            raise InvalidMessage(f"cluster {submit.cluster}: input file name {bad[0]!r} is "
                                 "not a plain file name")
        if (size := sum(len(data) for data in files.values())) > max_bytes:
            raise InvalidMessage(f"cluster {submit.cluster}: input files of {size} bytes, "
                                 f"over the {max_bytes} a job may carry")
    if len(users) == 1:
        return dict.fromkeys(users, f"{submit.cluster}/shared")
    return {index: f"{submit.cluster}/{min(procs)}" for index, procs in users.items()}


def plain_file_name(name: str) -> bool:
    """A file name with no directory in it: what input and output files travel as."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


# --- matches ---------------------------------------------------------------------------------


def activate(job: Job, claim: Claim, inputs: tuple[str, dict[str, bytes]] | TransferFailed,
             *, schedd: str, now: float, transfers: Transfers = Transfers()) -> Plan:
    """Give an idle job a claim the negotiator made: send it, with its files, to the pilot.

    `inputs` is (executable, files by name) as read from the job's spool, or why not;
    `transfers` the files the pilot fetches itself and where it puts big outputs.
    """
    if job.state != "idle" or job.claim_id:
        return refused(job, f"is {job.state} with claim {job.claim_id}, not idle")
    if isinstance(inputs, TransferFailed):
        return hold(job, inputs.reason, schedd=schedd, now=now, code=policy.UPLOAD_FILE_ERROR)
    executable, files = inputs
    ad = job.classad
    activation = ClaimActivate(
        claim_id=claim.claim_id, pilot_id=claim.pilot_id, schedd=schedd, job_id=job.id,
        job_ad=job.ad, executable=executable, arguments=jobad.arguments(ad),
        environment=jobad.environment(ad), files=files, cpus=claim.cpus,
        memory_mb=claim.memory_mb, disk_mb=claim.disk_mb,
        output_files=jobad.string_list(ad, "TransferOutput"),
        stream_names=jobad.stream_names(ad), fetch=list(transfers.fetch),
        uploads=dict(transfers.uploads), inline_max_bytes=transfers.inline_max_bytes,
        fetch_max_bytes=transfers.fetch_max_bytes, fetch_timeout_s=transfers.fetch_timeout_s,
        # What the negotiator carved; until it says, what the job asks for (the pilot
        # refuses a claim its slot cannot give).
        resources=dict(claim.resources) or custom_requests(ad))
    # The claim id is a capability: never on the public event stream (the field stays, empty).
    matched = J.JobMatched(schedd=schedd, job_id=job.id, owner=job.owner, claim_id="",
                           pilot_id=claim.pilot_id, entry=claim.entry, site=claim.site)
    return Plan(job, {"claim_id": claim.claim_id, "pilot_id": claim.pilot_id,
                      "entry": claim.entry, "site": claim.site, "provider": claim.provider,
                      "matched_at": now},
                commands=((activation, claim.pilot_id),), events=(matched,))


# --- reports from pilots ---------------------------------------------------------------------


def is_current(job: Job | None, report: J.JobReport, sender: Principal) -> bool:
    """A report counts only for the claim the job holds now, signed by the pilot that holds
    it; any other is stale or forged."""
    return (job is not None and job.claim_id == report.claim_id
            and report.pilot_id == job.pilot_id and sender.is_pilot(job.pilot_id))


def returns_outputs(job: Job | None, report: J.JobReport, sender: Principal) -> bool:
    """Whether the report's outputs are to be written (before job_report decides)."""
    return is_current(job, report, sender) and report.state in FINISHED


def job_report(job: Job | None, report: J.JobReport, *, sender: Principal, schedd: str,
               now: float, outputs: list[str] | TransferFailed | None = None) -> Plan:
    """A pilot's report on a job, signed by `sender`. For exited and held reports,
    `outputs` is what writing the returned files gave: the paths written, or why not."""
    if job is None or job.claim_id != report.claim_id:
        return refused(job, "stale: the job does not hold this claim")
    if not is_current(job, report, sender):
        return refused(job, f"forged: signed by {sender}, but the claim is pilot "
                            f"{job.pilot_id}'s")
    where = {"pilot_id": report.pilot_id, "entry": report.entry or job.entry,
             "site": report.site or job.site, "provider": report.provider or job.provider}
    if report.state == "running":
        attrs = policy.start_attrs(job.classad, now)
        return Plan(job, {"state": "running", "started_at": now, "runs": job.runs + 1, **where,
                          **_ad(job, "running", now, attrs)},
                    events=(J.JobRunning(schedd=schedd, job_id=job.id, owner=job.owner,
                                         **where),),
                    user_log=_log(job, userlog.EXECUTING, f"Job executing on host: "
                                  f"<{report.pilot_id}> at site {where['site']}", "", now))
    if report.state == "rejected":
        return requeue(job, f"pilot {report.pilot_id} rejected the claim: {report.reason}",
                       schedd=schedd, now=now)
    if report.state not in FINISHED:
        raise InvalidMessage(f"unknown job report state {report.state!r}")
    if outputs is None:
        raise ValueError(f"job {job.id}: outputs of a {report.state} report not written")
    done = replace(job, claim_id=None)  # its run is over: nothing left to kill on the pilot
    if isinstance(outputs, TransferFailed):
        return hold(done, outputs.reason, schedd=schedd, now=now,
                    code=policy.DOWNLOAD_FILE_ERROR)
    if report.state == "held":
        return hold(done, report.reason, schedd=schedd, now=now)
    return _exited(done, report, outputs, where, schedd=schedd, now=now)


def _exited(job: Job, report: J.JobReport, outputs: list[str], where: dict[str, Any], *,
            schedd: str, now: float) -> Plan:
    """A run ended: its exit goes into the ad, and the job's policy says what follows."""
    exited = replace(job, ad=policy.with_attrs(job.ad, policy.exit_attrs(
        job.classad, report.exit_code, report.exit_signal, report.wall_seconds)))
    verdict = policy.on_exit(exited.classad, now)
    ran = {"exit_code": report.exit_code, "exit_signal": report.exit_signal, **where}
    if verdict.action == policy.COMPLETE:
        return _completed(exited, report, outputs, where, schedd=schedd, now=now)
    if verdict.action == policy.REQUEUE:
        how = (f"exited with code {report.exit_code}" if report.exit_signal is None
               else f"killed by signal {report.exit_signal}")
        plan = requeue(exited, f"{how}; {verdict.reason}", schedd=schedd, now=now)
        detail = f"(0) Job terminated and was requeued\n\t{_termination(report)}\n\t" \
                 f"{verdict.reason}"
        return replace(plan, changes={**ran, **plan.changes}, user_log=_log(
            exited, userlog.EVICTED, "Job was evicted.", detail, now))
    if verdict.action == policy.HOLD:
        plan = hold(exited, verdict.reason, schedd=schedd, now=now, code=verdict.code,
                    subcode=verdict.subcode)
    else:
        plan = remove(exited, verdict.reason, schedd=schedd, now=now)
    return replace(plan, changes={**ran, **plan.changes})


def _termination(report: J.JobReport) -> str:
    """How a run ended, in HTCondor's user-log words."""
    if report.exit_signal is None:
        return f"(1) Normal termination (return value {report.exit_code})"
    return f"(0) Abnormal termination (signal {report.exit_signal})"


def _completed(job: Job, report: J.JobReport, outputs: list[str], where: dict[str, Any], *,
               schedd: str, now: float) -> Plan:
    return Plan(
        job, {"state": "completed", "exit_code": report.exit_code,
              "exit_signal": report.exit_signal, "finished_at": now,
              "started_at": job.started_at or now - report.wall_seconds, **where, **NO_CLAIM,
              **_ad(job, "completed", now, {"CompletionDate": int(now)})},
        events=(J.JobCompleted(schedd=schedd, job_id=job.id, owner=job.owner,
                               exit_code=report.exit_code, exit_signal=report.exit_signal,
                               wall_seconds=report.wall_seconds, outputs=outputs, **where),),
        user_log=_log(job, userlog.TERMINATED, "Job terminated.", _termination(report), now))


# --- the periodic timer ----------------------------------------------------------------------


def periodic(job: Job, *, schedd: str, now: float) -> Plan:
    """What the job's periodic expressions say now (PeriodicHold, PeriodicRelease,
    PeriodicRemove): held, released or removed, with a claim it holds killed."""
    verdict = policy.periodic(job.ad, job.state, now)
    if verdict is None:
        return refused(job, "no periodic expression fires")
    if verdict.action == policy.RELEASE:
        return release(job, verdict.reason, schedd=schedd, now=now)
    if verdict.action == policy.REMOVE:
        return remove(job, verdict.reason, schedd=schedd, now=now)
    return hold(job, verdict.reason, schedd=schedd, now=now, code=verdict.code,
                subcode=verdict.subcode)


# --- pilots that go away, claims that are never started --------------------------------------


def pilot_gone(job: Job, pilot_id: str, reason: str, *, schedd: str, now: float) -> Plan:
    """The pilot exited or was lost: a job it held (matched or running) waits again."""
    if job.pilot_id != pilot_id or not job.claim_id or job.state not in ("idle", "running"):
        return refused(job, f"holds no claim on pilot {pilot_id}")
    return requeue(job, f"pilot {pilot_id} went away: {reason}", schedd=schedd, now=now)


def reconcile(job: Job, ad: SlotAdvertised, *, received_at: float, grace_s: float,
              schedd: str) -> Plan:
    """A pilot's slot ad lists the jobs it holds (and digests of its claims). A job claimed
    to that pilot, sent to it more than grace_s before the ad was made, that the ad knows
    neither by id nor by claim, is not there (the activation was lost, the pilot restarted):
    it waits again at once, and the pilot is told to drop it in case it turns up."""
    if job.pilot_id != ad.pilot_id or not job.claim_id or job.state not in ("idle", "running"):
        return refused(job, f"holds no claim on pilot {ad.pilot_id}")
    if job.matched_at is None or job.matched_at > ad_made_at(ad, received_at) - grace_s:
        return refused(job, "sent to the pilot too recently for this ad to know it")
    if job.id in ad.jobs or claim_digest(job.claim_id) in ad.claims:
        return refused(job, "the pilot holds it")
    plan = requeue(job, f"pilot {ad.pilot_id} no longer runs it", schedd=schedd,
                   now=received_at)
    return replace(plan, commands=_kill(job, "the pilot no longer holds this claim"))


def ad_made_at(ad: SlotAdvertised, received_at: float) -> float:
    """When the ad was made, by our clock: a pilot's clock running ahead of ours must not make
    an old ad look newer than a claim (an ad without a time is as old as its arrival)."""
    return min(ad.time, received_at) if ad.time > 0 else received_at


def expire_claim(job: Job, *, now: float, timeout_s: float, schedd: str) -> Plan:
    """A matched job whose pilot has not said it started it within timeout_s waits again;
    the pilot is told to drop the claim in case the activation reaches it late."""
    if (job.state != "idle" or not job.claim_id or job.matched_at is None
            or job.matched_at >= now - timeout_s):
        return refused(job, "no claim waiting past its timeout")
    plan = requeue(job, f"pilot {job.pilot_id} did not start it within {timeout_s:g}s",
                   schedd=schedd, now=now)
    return replace(plan, commands=_kill(job, "claim not activated in time"))


# --- the transitions several decisions share -------------------------------------------------


def hold(job: Job, reason: str, *, schedd: str, now: float,
         code: int = policy.UNSPECIFIED, subcode: int = 0) -> Plan:
    """Held with HTCondor's HoldReasonCode `code`; a claim it holds is killed on its pilot."""
    attrs = policy.hold_attrs(job.classad, reason, code, subcode)
    return Plan(job, {"state": "held", "hold_reason": reason, **NO_CLAIM,
                      **_ad(job, "held", now, attrs)},
                commands=_kill(job, reason),
                events=(J.JobHeld(schedd=schedd, job_id=job.id, owner=job.owner,
                                  reason=reason, code=code, subcode=subcode),),
                user_log=_log(job, userlog.HELD, "Job was held.",
                              f"{reason}\n\tCode {code} Subcode {subcode}", now))


def release(job: Job, reason: str, *, schedd: str, now: float) -> Plan:
    return Plan(job, {"state": "idle", "hold_reason": "", **NO_CLAIM,
                      **_ad(job, "idle", now, policy.release_attrs(job.classad))},
                events=(J.JobReleased(schedd=schedd, job_id=job.id, owner=job.owner,
                                      reason=reason),),
                user_log=_log(job, userlog.RELEASED, "Job was released.", reason, now))


def remove(job: Job, reason: str, *, schedd: str, now: float) -> Plan:
    """Removed (`reason` may be ""); a claim it holds is killed on its pilot."""
    attrs = {"RemoveReason": reason or "removed by its owner"}
    return Plan(job, {"state": "removed", "finished_at": now, **NO_CLAIM,
                      **_ad(job, "removed", now, attrs)},
                commands=_kill(job, reason or "remove by user"),
                events=(J.JobRemoved(schedd=schedd, job_id=job.id, owner=job.owner,
                                     reason=reason),),
                user_log=_log(job, userlog.ABORTED, "Job was aborted.", reason, now))


def requeue(job: Job, reason: str, *, schedd: str, now: float) -> Plan:
    return Plan(job, {"state": "idle", **NOT_PLACED, **NO_CLAIM, **_ad(job, "idle", now)},
                events=(J.JobRequeued(schedd=schedd, job_id=job.id, owner=job.owner,
                                      reason=reason),))


def _ad(job: Job, state: str, now: float, attrs: Mapping[str, Any] | None = None
        ) -> dict[str, str]:
    """The `ad` column after a move to `state` with `attrs` (none if nothing changes)."""
    changed = {**policy.status_change(job.state, state, now), **(attrs or {})}
    return {"ad": policy.with_attrs(job.ad, changed)} if changed else {}


def _kill(job: Job, reason: str) -> tuple[tuple[Any, str], ...]:
    """The order to the pilot to kill the job's process, if it holds a claim there."""
    if not (job.claim_id and job.pilot_id):
        return ()
    return ((JobKill(pilot_id=job.pilot_id, job_id=job.id, claim_id=job.claim_id,
                     reason=reason), job.pilot_id),)


def _log(job: Job, code: int, message: str, detail: str, now: float
         ) -> tuple[UserLogLine, ...]:
    return user_log(job.classad, job.cluster, job.proc, code, message, detail, now)


def user_log(ad: classad2.ClassAd, cluster: int, proc: int, code: int, message: str,
             detail: str, now: float) -> tuple[UserLogLine, ...]:
    """The event for the job's user log (`log = FILE`), if it asked for one."""
    path = ad.get("UserLog")
    if not isinstance(path, str) or not path:
        return ()
    try:
        root = jobad.file_root(ad, path)[0]
    except ValueError:
        root = jobad.iwd(ad)  # the append refuses it, loudly
    return (UserLogLine(path, userlog.event_text(code, cluster, proc, message, detail,
                                                 when=now), str(root)),)
