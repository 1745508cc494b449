"""The glidein agent's handlers and timers: one pilot, one partitionable slot, its jobs.

    schedd ─claim.activate─▶ [glidein.<pilot_id>] ─▶ Glidein ─job.report (running, exited,
    schedd ─job.kill───────▶        (expires       │   │       held, rejected) via the outbox
    factory ─pilot.retire──▶         600 s)        │   └─▶ <work>/records: reports until
                                                   │       confirmed, job pids ─▶ schedd
                                                   ├─pilot.registered / retiring / exited─▶ events
                                                   └─slot.advertised (on change + heartbeat)▶ events

Everything runs on the bus's one I/O thread: handlers, the job reaper (every
reap_interval_s while jobs run), the retire check (every poll_interval_s),
the outbox's resend and the heartbeat (every lease_s / 3). Jobs are child
processes (executor.py) polled without blocking, so no locks and no extra
threads. Whether to take a claim and when to retire is logic.py.

A job's report is on disk (outbox.py) before the pilot forgets the job, and
stays there until the broker confirms it; a pilot started again in the same
work directory first kills what its previous life left running, then resends,
then registers. Its slot ad lists the jobs it holds (running, or with a result
not yet confirmed) so that schedds can requeue a claim the pilot no longer has.

Lifecycle: registered → idle ⇄ busy → retiring (no new claims; running jobs
finish) → exited once its reports are delivered, the process then stops itself
through `request_stop` (set by services.runtime.service.run). SIGTERM instead
terminates: running jobs get SIGTERM, then SIGKILL after kill_grace_s, and
pilot.exited says "terminated" so their schedds requeue them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotRegistered, PilotRetire, PilotRetiring
from schemas.slot import ClaimActivate, JobKill, SlotAdvertised
from services.condor import pilotdir
from services.condor.claims import claim_digest
from services.condor.macros import substitute_slot_macros
from services.condor.pilot import PilotContext
from services.condor.slot import Resources, slot_ad
from services.runtime import tracing
from services.runtime.bus import BrokerUnavailable, Bus, Context, Subscription

from . import logic
from .executor import ExecutorConfig, JobResult, JobRun, Substitute
from .isolation import SlotUsers, unreachable_from
from .logic import PartitionableSlot
from .outbox import Outbox

log = logging.getLogger("burst.glidein")


@dataclass(frozen=True)
class AgentConfig:
    poll_interval_s: float = 0.5  # the retire check
    reap_interval_s: float = 0.02  # a job's exit is seen within this while jobs run
    lease_s: float = 60.0  # a slot ad not renewed within this is stale
    kill_grace_s: float = 5.0  # SIGTERM → SIGKILL for jobs when the pilot is terminated
    queue_expires_s: float = 600.0  # a dead pilot's queue disappears after this
    outbox_retry_s: float = 2.0  # unconfirmed reports are published again this often
    outbox_drain_s: float = 10.0  # a leaving pilot waits this long for its reports' confirms
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


class Glidein:
    def __init__(self, ctx: PilotContext, bus: Bus, *, config: AgentConfig = AgentConfig(),
                 substitute: Substitute = substitute_slot_macros,
                 clock: Callable[[], float] = time.monotonic,
                 slot_users: SlotUsers | None = None):
        self.ctx = ctx
        self.bus = bus
        self.config = config
        self.substitute = substitute
        self.clock = clock
        self.host = socket.gethostname()
        self.slot = PartitionableSlot.for_context(ctx)
        self.slot_users = slot_users or SlotUsers(ctx.slot_users)
        self.records = self._take_over(ctx)
        self.outbox = Outbox(bus, self.records, retry_s=config.outbox_retry_s)
        self.jobs: dict[str, JobRun] = {}
        self.spans: dict[str, Any] = {}  # claim id -> its job's execution span (ended at exit)
        self.reaping: list[JobRun] = []  # killed on order: polled until gone, never reported
        self.seq = 0
        self.jobs_run = 0
        self.started_at = self.idle_since = clock()
        self.started_wall = time.time()
        self.retire_reason = ""
        self.leaving = ""  # why it is going, once it only waits for its reports' confirms
        self.terminating = False
        self.exited = threading.Event()
        self._reap_scheduled = False
        # Set by services.runtime.service.run: lets the pilot end its own process.
        self.request_stop: Callable[[], None] | None = None

    @staticmethod
    def _take_over(ctx: PilotContext) -> pilotdir.PilotRecords:
        """The work directory's records, after killing what an earlier life left running."""
        records = pilotdir.PilotRecords(ctx.work_dir)
        killed = pilotdir.kill_leftovers(ctx.work_dir)
        if records.jobs() or killed:
            log.warning("event=previous_jobs_killed pilot=%s jobs=%d pids=%s", ctx.pilot_id,
                        len(records.jobs()), killed)
        records.forget_all_jobs()  # their results are lost: schedds requeue them (slot ad)
        for scratch in (ctx.work_dir / pilotdir.EXECUTE).iterdir():
            shutil.rmtree(scratch, ignore_errors=True)
        records.set_owner(pilotdir.this_process())
        return records

    @property
    def retiring(self) -> bool:
        return bool(self.retire_reason)

    # --- wiring -------------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        commands = {
            "claim.activate": self.on_claim_activate,
            "job.kill": self.on_job_kill,
            "pilot.retire": self.on_pilot_retire,
        }
        return [Subscription(f"glidein.{self.ctx.pilot_id}", commands=commands,
                             target=self.ctx.pilot_id, expires_s=self.config.queue_expires_s)]

    def started(self) -> None:
        self.started_at = self.idle_since = self.clock()
        self.started_wall = time.time()
        ctx = self.ctx
        log.info("%s pilot=%s", self.slot_users.describe(), ctx.pilot_id)
        blocked = unreachable_from(ctx.work_dir / pilotdir.EXECUTE)
        if self.slot_users.mode == "uid" and blocked is not None:
            log.warning("event=execute_dir_unreachable pilot=%s dir=%s blocked_by=%s "
                        "hint=\"slot users cannot reach their scratch directories; make %s "
                        "traversable (o+x) or move BURST_PILOT_WORK_DIR\"", ctx.pilot_id,
                        ctx.work_dir / pilotdir.EXECUTE, blocked, blocked)
        self.outbox.start()  # what an earlier life could not deliver goes first
        # In the trace of the launch (or the VM's boot) that made this pilot: its first slot
        # ad too, so the trace shows the pool seeing it.
        with tracing.span("register", parent=ctx.traceparent or None,
                          attributes={"burst.pilot": ctx.pilot_id, "burst.entry": ctx.entry}):
            self._publish_event(PilotRegistered(
                pilot_id=ctx.pilot_id, entry=ctx.entry, site=ctx.site, provider=ctx.provider,
                cpus=ctx.cpus, memory_mb=ctx.memory_mb, disk_mb=ctx.disk_mb,
                instance_id=ctx.instance_id, instance_type=ctx.instance_type, host=self.host,
                pid=os.getpid(), context_source=ctx.source, time=time.time()))
            log.info("event=pilot_registered pilot=%s entry=%s site=%s cpus=%d memory_mb=%d "
                     "source=%s", ctx.pilot_id, ctx.entry, ctx.site, ctx.cpus, ctx.memory_mb,
                     ctx.source)
            self.advertise()
        interval = self.config.poll_interval_s
        self.bus.call_every(interval, self.tick, first_delay_s=interval)
        heartbeat = self.config.lease_s / 3
        self.bus.call_every(heartbeat, self.advertise, first_delay_s=heartbeat)

    def stopping(self) -> None:
        """SIGTERM (called on the main thread): terminate on the I/O thread, wait for it."""
        if not self.exited.is_set():
            self.bus.call_soon_threadsafe(self.terminate)
            wait = self.config.kill_grace_s + self.config.outbox_drain_s + 5.0
            if not self.exited.wait(wait):
                log.warning("event=terminate_timeout pilot=%s jobs=%d", self.ctx.pilot_id,
                            len(self.jobs))
                for run in [*self.jobs.values(), *self.reaping]:
                    run.kill()  # last resort from this thread: no job may outlive its pilot
        try:
            self.bus.flush(timeout=5.0)  # pilot.exited must reach the broker before we go
        except Exception as exc:  # a broker that is gone cannot be waited for
            log.warning("event=flush_failed pilot=%s reason=%r", self.ctx.pilot_id, str(exc))

    def _publish_event(self, event: Any) -> None:
        """Events say what is now; one lost while the broker is away is said again later."""
        try:
            self.bus.emit(event)
        except BrokerUnavailable as exc:
            log.info("event=event_not_published pilot=%s schema=%s reason=%r",
                     self.ctx.pilot_id, event.NAME, str(exc))

    # --- the slot ad ------------------------------------------------------------------------

    def state(self) -> str:
        if self.retiring or self.terminating or self.leaving:
            return "retiring"
        return "busy" if self.slot.busy else "idle"

    def held_jobs(self) -> list[str]:
        """Jobs this pilot holds: running, or finished with a result not yet confirmed."""
        running = (run.msg.job_id for run in self.jobs.values())
        return sorted({*running, *self.records.unconfirmed_results()})

    def advertise(self) -> None:
        if self.exited.is_set():
            return
        self.seq += 1
        free = self.slot.free
        jobs = self.held_jobs()
        ad = slot_ad(self.ctx, free, host=self.host, started_at=self.started_wall,
                     isolation=self.slot_users.mode, jobs=jobs)
        self._publish_event(SlotAdvertised(
            pilot_id=self.ctx.pilot_id, ad=str(ad), state=self.state(), free_cpus=free.cpus,
            free_memory_mb=free.memory_mb, free_disk_mb=free.disk_mb,
            # Digests only: a claim id is a capability, and slot ads are public events.
            claims=sorted(claim_digest(c) for c in self.slot.claims), entry=self.ctx.entry,
            site=self.ctx.site,
            provider=self.ctx.provider, seq=self.seq, lease_s=self.config.lease_s,
            time=time.time(), jobs=jobs, free_resources=dict(free.custom)))

    # --- claims -------------------------------------------------------------------------------

    def on_claim_activate(self, msg: ClaimActivate, ctx: Context) -> None:
        if msg.claim_id in self.jobs or self.records.handled(msg.claim_id):
            log.info("event=duplicate_claim pilot=%s claim=%s job=%s", self.ctx.pilot_id,
                     msg.claim_id, msg.job_id)
            return
        refusal = logic.why_refuse_claim(
            msg, pilot_id=self.ctx.pilot_id, slot=self.slot, retire_reason=self.retire_reason,
            shutting_down=self.terminating or bool(self.leaving) or self.exited.is_set())
        if refusal:
            log.info("event=claim_rejected pilot=%s claim=%s job=%s reason=%r",
                     self.ctx.pilot_id, msg.claim_id, msg.job_id, refusal)
            self.outbox.put(self._report(msg, "rejected", reason=refusal), msg.schedd,
                            final=True)
            return
        claimed = self.slot.claim(msg.claim_id, msg.cpus, msg.memory_mb, msg.disk_mb,
                                  msg.resources)
        run = JobRun(msg, self._machine_ad(claimed), self.ctx.work_dir,
                     config=self.config.executor, substitute=self.substitute,
                     user=self.slot_users.acquire())
        self.jobs_run += 1
        held = run.start()
        if held is not None:
            self._job_ended(run, held)
            return
        self.jobs[msg.claim_id] = run
        self.spans[msg.claim_id] = tracing.start_span(
            "execute job", attributes={"burst.job": msg.job_id, "burst.pilot": self.ctx.pilot_id})
        self._report_running(run)  # once its process runs (not while its inputs arrive)
        self._reap_soon()
        self.advertise()

    def _report_running(self, run: JobRun) -> None:
        if run.proc is None or run.announced:
            return
        run.announced = True
        msg = run.msg
        process = pilotdir.JobRecord(msg.claim_id, msg.job_id, run.proc.pid, run.create_time,
                                     run.user.uid if run.user else None)
        self.outbox.put(self._report(msg, "running"), msg.schedd, final=False, running=process)

    def _machine_ad(self, claimed: Resources):
        # What the job sees ($$() macros, .machine.ad) is its dynamic slot: what it claimed.
        return slot_ad(self.ctx, claimed, host=self.host, started_at=self.started_wall,
                       isolation=self.slot_users.mode)

    def _report(self, msg: ClaimActivate, state: str, result: JobResult | None = None,
                reason: str = "") -> JobReport:
        fields = {}
        if result is not None:  # shallow: StoredOutput values stay what the schema holds
            fields = {f.name: getattr(result, f.name) for f in dataclass_fields(result)
                      if f.name not in ("state", "reason")}
            reason = reason or result.reason
        return JobReport(job_id=msg.job_id, claim_id=msg.claim_id, pilot_id=self.ctx.pilot_id,
                         state=state, reason=reason, entry=self.ctx.entry, site=self.ctx.site,
                         provider=self.ctx.provider, **fields)

    def _job_ended(self, run: JobRun, result: JobResult) -> None:
        msg = run.msg
        log.info("event=job_ended pilot=%s job=%s claim=%s state=%s exit_code=%s reason=%r "
                 "wall_s=%.3f", self.ctx.pilot_id, msg.job_id, msg.claim_id, result.state,
                 result.exit_code, result.reason, result.wall_seconds)
        span = self.spans.pop(msg.claim_id, None) or tracing.start_span(
            "execute job", attributes={"burst.job": msg.job_id, "burst.pilot": self.ctx.pilot_id})
        span.set_attributes({"burst.state": result.state, "burst.exit_code": (
            -1 if result.exit_code is None else result.exit_code)})
        with tracing.within(span, end=True), tracing.span(
                "return output", attributes={"burst.job": msg.job_id,
                                             "burst.bytes": _output_bytes(result)}):
            # On disk first: from here on a crash of the pilot loses nothing.
            self.outbox.put(self._report(msg, result.state, result), msg.schedd, final=True)
        self.jobs.pop(msg.claim_id, None)
        self.slot.release(msg.claim_id)
        self._done_with(run)
        if not self.slot.busy:
            self.idle_since = self.clock()
        self.advertise()
        self._exit_if_drained()

    def _end_span(self, claim_id: str, reason: str) -> None:
        span = self.spans.pop(claim_id, None)
        if span is not None:
            tracing.failed(span, reason)
            span.end()

    def _done_with(self, run: JobRun) -> None:
        run.cleanup()
        self.slot_users.release(run.user)

    def on_job_kill(self, msg: JobKill, ctx: Context) -> None:
        run = self.jobs.pop(msg.claim_id, None)
        if run is None:
            log.info("event=kill_unknown_claim pilot=%s claim=%s job=%s", self.ctx.pilot_id,
                     msg.claim_id, msg.job_id)
            return
        log.info("event=job_killed pilot=%s job=%s claim=%s reason=%r", self.ctx.pilot_id,
                 msg.job_id, msg.claim_id, msg.reason)
        run.kill()  # the schedd has already moved the job on: no report
        self._end_span(msg.claim_id, "killed")
        self.records.forget_job(msg.claim_id)
        self.reaping.append(run)
        self._reap_soon()
        self.slot.release(msg.claim_id)
        if not self.slot.busy:
            self.idle_since = self.clock()
        self.advertise()
        self._exit_if_drained()

    # --- watching jobs ------------------------------------------------------------------------

    def _reap_soon(self) -> None:
        if not self._reap_scheduled:
            self._reap_scheduled = True
            self.bus.call_later(self.config.reap_interval_s, self._reap)

    def _reap(self) -> None:
        """Poll the jobs while there are any: a job's end is seen within reap_interval_s."""
        self._reap_scheduled = False
        for run in list(self.jobs.values()):
            result = run.poll()
            self._report_running(run)  # started on this poll, its inputs having arrived
            if result is not None:
                self._job_ended(run, result)
        self._poll_reaping()
        if self.jobs or self.reaping:
            self._reap_soon()

    def _poll_reaping(self) -> None:
        still = []
        for run in self.reaping:
            if run.poll() is None:
                still.append(run)
            else:
                self._done_with(run)
        self.reaping = still

    # --- lifecycle ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Decide whether to retire (every poll_interval_s)."""
        if self.retiring or self.terminating or self.leaving or self.exited.is_set():
            return
        reason = logic.why_retire(
            now=self.clock(), started_at=self.started_at, idle_since=self.idle_since,
            busy=self.slot.busy, idle_timeout_s=self.ctx.idle_timeout_s,
            max_lifetime_s=self.ctx.max_lifetime_s)
        if reason:
            self.retire(reason)

    def on_pilot_retire(self, msg: PilotRetire, ctx: Context) -> None:
        if msg.pilot_id != self.ctx.pilot_id:
            log.warning("event=retire_for_other_pilot pilot=%s target=%s", self.ctx.pilot_id,
                        msg.pilot_id)
            return
        if not logic.may_retire_on_request(only_if_idle=msg.only_if_idle, busy=self.slot.busy):
            log.info("event=retire_refused pilot=%s reason=busy jobs=%d request=%r",
                     self.ctx.pilot_id, len(self.jobs), msg.reason)
            return
        self.retire(msg.reason or "retire requested")

    def retire(self, reason: str) -> None:
        """Take no new claims, let running jobs finish, then exit."""
        if self.retiring or self.terminating or self.leaving or self.exited.is_set():
            return
        self.retire_reason = reason
        log.info("event=pilot_retiring pilot=%s reason=%r running_jobs=%d", self.ctx.pilot_id,
                 reason, len(self.jobs))
        self._publish_event(PilotRetiring(pilot_id=self.ctx.pilot_id, entry=self.ctx.entry,
                                          reason=reason, running_jobs=len(self.jobs),
                                          time=time.time()))
        self.advertise()
        self._exit_if_drained()

    def _exit_if_drained(self) -> None:
        if self.retiring and not self.jobs and not self.terminating:
            self._exit(self.retire_reason)

    def terminate(self) -> None:
        """SIGTERM: jobs get SIGTERM now and SIGKILL after kill_grace_s; nothing is reported."""
        if self.terminating or self.leaving or self.exited.is_set():
            return
        self.terminating = True
        log.info("event=pilot_terminating pilot=%s running_jobs=%d", self.ctx.pilot_id,
                 len(self.jobs))
        for claim_id, run in self.jobs.items():
            run.terminate()
            self._end_span(claim_id, "pilot terminated")
            self.records.forget_job(claim_id)
            self.slot.release(claim_id)
        self.reaping.extend(self.jobs.values())
        self.jobs.clear()
        self._await_jobs_gone(self.clock() + self.config.kill_grace_s)

    def _await_jobs_gone(self, deadline: float) -> None:
        self._poll_reaping()
        if not self.reaping:
            self._exit("terminated")
            return
        if self.clock() < deadline:
            self.bus.call_later(min(0.1, self.config.poll_interval_s),
                                lambda: self._await_jobs_gone(deadline))
            return
        for run in self.reaping:
            log.warning("event=job_sigkill pilot=%s job=%s", self.ctx.pilot_id, run.msg.job_id)
            run.kill()
        # A moment for SIGKILL to land, so _exit reaps them rather than leaving zombies.
        self.bus.call_later(0.2, lambda: self._exit("terminated"))

    def _exit(self, reason: str) -> None:
        """Leave once every report is confirmed (or outbox_drain_s has passed)."""
        if self.leaving or self.exited.is_set():
            return
        self.leaving = reason
        self._poll_reaping()
        for run in self.reaping:
            self._done_with(run)  # SIGKILLed but still dying: init reaps it once we are gone
        self.reaping = []
        self._leave_when_delivered(self.clock() + self.config.outbox_drain_s)

    def _leave_when_delivered(self, deadline: float) -> None:
        delivered = self.outbox.empty
        if not delivered and self.clock() < deadline:
            self.bus.call_later(0.05, lambda: self._leave_when_delivered(deadline))
            return
        uptime = self.clock() - self.started_at
        reason = self.leaving
        if delivered:
            log.info("event=pilot_exited pilot=%s reason=%r jobs_run=%d uptime_s=%.1f",
                     self.ctx.pilot_id, reason, self.jobs_run, uptime)
            self._publish_event(PilotExited(pilot_id=self.ctx.pilot_id, entry=self.ctx.entry,
                                            reason=reason, jobs_run=self.jobs_run,
                                            uptime_s=round(uptime, 3), time=time.time()))
        else:
            # No pilot.exited: schedds would requeue jobs whose results are still here. The
            # factory restarts a pilot that leaves reports behind, and that one resends them.
            log.warning("event=pilot_exited_with_undelivered_reports pilot=%s reason=%r "
                        "reports=%d", self.ctx.pilot_id, reason, len(self.records.reports()))
        self.exited.set()
        if self.request_stop is not None:
            self.request_stop()


def _output_bytes(result: JobResult) -> int:
    return len(result.stdout) + len(result.stderr) + sum(
        len(data) for data in result.output_files.values())
