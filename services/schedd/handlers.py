"""The schedd: owns the job queue; turns commands and reports into job events.

    CLI ─cluster.new/input.stage/job.submit/─────────▶ ┌────────┐ ─job.*──────────▶ events
        job.query/job.action
    negotiator ─match.offer──────────────────────────▶ │ schedd │ ─claim.activate─▶ pilot
    pilot ─job.report────────────────────────────────▶ │ SQLite │ ─job.kill───────▶ pilot
    events: match.analysis, pilot.exited, pilot.lost─▶ └────────┘ ─demand.autoclusters▶ events

Each handler is one transaction (store.py): it reads the job rows, moves the
files a step needs (transfer.py, and object storage: storage.py), asks logic.py
what follows (a Plan: columns, commands, events, user-log lines) and applies it.
What it publishes is recorded in that transaction and republished unchanged if
the message comes again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import classad2
from opentelemetry import trace

from schemas import job as J
from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.pilot import PilotExited, PilotLost
from schemas.slot import Claim, MatchOffer, SlotAdvertised
from services.condor import jobad
from services.condor.jobids import job_id, parse_job_id
from services.runtime import security, tracing
from services.runtime.ackpolicy import PermanentError
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import StorageConfig

from . import logic, policy, queue, transfer, userlog
from .gauges import JobGauges
from .logic import Job
from .storage import ObjectStore, StorageError, StorageUnavailable
from .store import Store, Tx

log = logging.getLogger("burst.schedd")

DEMAND_DEBOUNCE_S = 0.3
DEMAND_REFRESH_S = 15.0
CLAIM_TIMEOUT_S = 120.0
CLAIM_GRACE_S = 10.0
PERIODIC_INTERVAL_S = 60.0  # HTCondor's PERIODIC_EXPR_INTERVAL
SPOOL_CLEANUP_S = 60.0
MAX_IDS = 10_000  # job ids one query or action may name (SQLite binds two per id)


class Schedd:
    def __init__(self, name: str, store: Store, bus: Bus, *,
                 claim_timeout_s: float = CLAIM_TIMEOUT_S, claim_grace_s: float = CLAIM_GRACE_S,
                 periodic_interval_s: float = PERIODIC_INTERVAL_S,
                 spool_dir: Path | None = None, private_dir: Path | None = None,
                 storage: ObjectStore | None = None, files: StorageConfig | None = None):
        self.name = name
        self.store = store
        self.bus = bus
        self.storage = storage  # object storage for big files; None: all travel in messages
        self.files = files or StorageConfig()  # [storage]: thresholds, expiry, URL caps
        self.claim_timeout_s = claim_timeout_s
        self.claim_grace_s = claim_grace_s
        self.periodic_interval_s = periodic_interval_s
        # Input files of queued jobs, as submissions brought them: the schedd's own files.
        self.spool_dir = spool_dir or store.path.parent / "spool"
        # No job's file is ever written in here (the queue, the pool key, the spool).
        self.private_dir = private_dir
        self.reasons: dict[str, dict[str, str]] = {}  # source -> autocluster -> reason
        # job -> (pilot, until when): the pilot's last ad listing it, while its lease runs
        self._listed: dict[str, tuple[str, float]] = {}
        self._demand_dirty = True
        self._demand_seq = 0
        self._last_demand = 0.0
        self._next_deferral: float | None = None  # the first deferred job's time: demand then

    # --- wiring -------------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        commands = {
            "cluster.new": self.on_cluster_new,
            "input.stage": self.on_input_stage,
            "job.submit": self.on_job_submit,
            "job.query": self.on_job_query,
            "job.action": self.on_job_action,
            "match.offer": self.on_match_offer,
            "job.report": self.on_job_report,
        }
        events = {
            "match.analysis": self.on_match_analysis,
            "pilot.exited": self.on_pilot_gone,
            "pilot.lost": self.on_pilot_gone,
            "slot.advertised": self.on_slot,
        }
        return [Subscription(f"schedd.{self.name}", commands=commands, events=events,
                             target=self.name, prefetch=500, exclusive=True)]

    def started(self) -> None:
        self.bus.call_every(DEMAND_DEBOUNCE_S, self.publish_demand)
        self.bus.call_every(10.0, self.expire_claims, first_delay_s=10.0)
        self.bus.call_every(self.periodic_interval_s, self.evaluate_periodic,
                            first_delay_s=self.periodic_interval_s)
        self.bus.call_every(3600.0, lambda: self.store.prune_processed(86400.0))
        self.bus.call_every(SPOOL_CLEANUP_S, self.clean_spool, first_delay_s=SPOOL_CLEANUP_S)

    def stopping(self) -> None:
        pass

    def collector(self) -> JobGauges:
        return JobGauges(self.name, self.store)

    def _transact(self, ctx: Context | None, work: Callable[[Tx], Any]) -> Any:
        with self.store.transaction(ctx.message_id if ctx else None) as tx:
            reply = None if tx.replayed else work(tx)
        for out in tx.outputs:
            publish = ctx if ctx is not None else self.bus
            with tracing.attached(out.traceparent):
                if out.kind == "emit":
                    publish.emit(out.message)
                else:
                    publish.send(out.message, out.to)
        self._demand_dirty = True
        return reply

    # --- submission ---------------------------------------------------------------------------

    def on_cluster_new(self, msg: J.ClusterNew, ctx: Context) -> J.ClusterAllocated:
        _require_owner(ctx, msg.owner, "submit jobs")

        def allocate(tx: Tx) -> J.ClusterAllocated:
            cluster = tx.next_cluster()
            tx.execute("INSERT INTO clusters (cluster, owner, allocated_at) VALUES (?, ?, ?)",
                       (cluster, msg.owner, time.time()))
            return J.ClusterAllocated(schedd=self.name, cluster=cluster,
                                      inline_max_bytes=self._inline_max_bytes)

        return self._transact(ctx, allocate)

    @property
    def _inline_max_bytes(self) -> int:
        return self.files.inline_max_bytes if self.storage is not None else 0

    def on_input_stage(self, msg: J.InputStage, ctx: Context) -> J.InputUploads:
        """Where burst submit may put a cluster's big input files: a presigned PUT each."""
        _require_owner(ctx, msg.owner, "submit jobs")
        if self.storage is None:
            raise PermanentError(f"schedd {self.name} has no object storage ([storage] in the "
                                 "configuration): files travel inside the submission")
        row = self.store.read("SELECT owner, submitted_at FROM clusters WHERE cluster = ?",
                              (msg.cluster,))
        if not row or row[0]["owner"] != msg.owner or row[0]["submitted_at"] is not None:
            raise PermanentError(f"cluster {msg.cluster} is not one of {msg.owner}'s waiting "
                                 "for its jobs")
        if bad := [f for f in msg.files if not transfer.SHA256.match(f.sha256) or f.size < 0]:
            raise PermanentError(f"input.stage: {bad[0].sha256!r} is not a sha256 (64 "
                                 "lower-case hex digits)")
        try:
            urls = {f.sha256: self.storage.presign_put(self.storage.input_key(msg.cluster,
                                                                               f.sha256))
                    for f in msg.files}
        except StorageUnavailable as exc:
            raise PermanentError(str(exc)) from None
        return J.InputUploads(urls=urls, expires_s=self.files.url_expiry_s)

    def on_job_submit(self, msg: J.JobSubmit, ctx: Context) -> J.JobSubmitted:
        _require_owner(ctx, msg.owner, "submit jobs")
        now = time.time()
        ads = []
        for proc in msg.procs:
            try:
                ad = classad2.ClassAd(proc.ad)
            except Exception as exc:  # classad2 raises its own parse errors
                raise PermanentError(f"job {msg.cluster}.{proc.proc}: bad ClassAd: {exc}") from None
            try:
                ads.append((proc.proc, ad, policy.on_queue(ad, now)))
            except ValueError as exc:
                raise PermanentError(f"job {msg.cluster}.{proc.proc}: {exc}") from None
        if not ads:
            raise PermanentError(f"cluster {msg.cluster}: no jobs to queue")
        try:
            spools = logic.spool_dirs(msg, max_bytes=transfer.MAX_INLINE_BYTES)
            self._check_files(msg, ads, spools)
        except (logic.InvalidMessage, transfer.TransferError) as exc:
            raise PermanentError(f"cluster {msg.cluster}: {exc}") from None
        return self._transact(ctx, lambda tx: self._queue_cluster(tx, msg, ads, spools, now))

    def _check_files(self, msg: J.JobSubmit, ads: list, spools: dict[int, str]) -> None:
        """What burst submit put in object storage is there; s3:// inputs need storage."""
        try:
            for index in spools:
                if index < len(msg.stored_inputs):
                    transfer.check_stored(msg.stored_inputs[index], self.storage, msg.cluster)
        except (StorageError, StorageUnavailable) as exc:
            raise transfer.TransferError(f"object storage: {exc}") from None
        for proc, ad, _queued in ads:
            try:
                urls = jobad.input_urls(ad)
            except ValueError as exc:
                raise transfer.TransferError(f"job {msg.cluster}.{proc}: {exc}") from None
            s3 = [url.shown for url in urls.values() if url.scheme == "s3"]
            if s3 and self.storage is None:
                raise transfer.TransferError(
                    f"job {msg.cluster}.{proc}: input {s3[0]}: s3:// inputs come from the "
                    f"pool's object storage, and schedd {self.name} has none ([storage] in "
                    "the configuration)")

    def _queue_cluster(self, tx: Tx, msg: J.JobSubmit, ads: list,
                       spools: dict[int, str], now: float) -> J.JobSubmitted:
        row = tx.one("SELECT owner, submitted_at FROM clusters WHERE cluster = ?", (msg.cluster,))
        if row is None:
            raise PermanentError(f"cluster {msg.cluster} was not allocated by schedd {self.name}")
        if row["submitted_at"] is not None:
            raise PermanentError(f"cluster {msg.cluster} was already submitted")
        if row["owner"] != msg.owner:
            raise PermanentError(f"cluster {msg.cluster} belongs to {row['owner']}")
        for index, directory in spools.items():
            stored = msg.stored_inputs[index] if index < len(msg.stored_inputs) else {}
            transfer.spool(self.spool_dir / directory, msg.input_sets[index], stored)
        spool_of = {proc.proc: spools.get(proc.inputs) for proc in msg.procs}
        ids, held = [], []
        for proc, ad, queued in ads:
            key = queue.autocluster_of(ad, msg.owner)
            tx.execute("INSERT OR IGNORE INTO autoclusters (id, owner, ad, desired_sites) "
                       "VALUES (?, ?, ?, ?)", (key.id, msg.owner, key.ad, key.desired_sites))
            cpus, memory, disk = queue.resource_requests(ad)
            # `hold = true` in the submit file: the ad says JobStatus 5, as condor_submit's.
            hold_reason = _submitted_on_hold(ad)
            tx.execute(
                "INSERT INTO jobs (cluster, proc, owner, state, hold_reason, ad, autocluster, "
                "request_cpus, request_memory_mb, request_disk_mb, submitted_at, spool, "
                "not_before, periodic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.cluster, proc, msg.owner, "held" if hold_reason else "idle",
                 hold_reason or "", queued.ad, key.id, cpus, memory, disk, now, spool_of[proc],
                 queued.not_before, int(queued.periodic)))
            ids.append(job_id(msg.cluster, proc))
            lines = logic.user_log(ad, msg.cluster, proc, userlog.SUBMITTED,
                                   f"Job submitted from host: <{self.name}>", "", now)
            if hold_reason:
                held.append((ids[-1], hold_reason))
                lines += logic.user_log(ad, msg.cluster, proc, userlog.HELD, "Job was held.",
                                        f"{hold_reason}\n\tCode {policy.SUBMITTED_ON_HOLD} "
                                        "Subcode 0", now)
            for line in lines:
                userlog.append(line.path, line.text, iwd=line.iwd, owner=msg.owner,
                               private_dir=self.private_dir)
        # The submission is the root of its jobs' trace (tracing.py): kept with the cluster.
        trace.get_current_span().set_attributes({"burst.cluster": msg.cluster,
                                                 "burst.schedd": self.name,
                                                 "burst.jobs": len(ids), "burst.owner": msg.owner})
        tx.execute("UPDATE clusters SET submitted_at = ?, submit_file = ?, traceparent = ? "
                   "WHERE cluster = ?",
                   (now, msg.submit_file, tracing.current_traceparent(), msg.cluster))
        submitted = J.JobSubmitted(schedd=self.name, cluster=msg.cluster, jobs=ids,
                                   owner=msg.owner)
        tx.emit(submitted)
        for held_id, reason in held:  # after job.submitted, so every view folds them as held
            tx.emit(J.JobHeld(schedd=self.name, job_id=held_id, owner=msg.owner, reason=reason,
                              code=policy.SUBMITTED_ON_HOLD))
        log.info("event=cluster_submitted cluster=%d jobs=%d held=%d owner=%s", msg.cluster,
                 len(ids), len(held), msg.owner)
        return submitted

    # --- queries and user actions -------------------------------------------------------------

    def on_job_query(self, msg: J.JobQuery, ctx: Context) -> J.JobList:
        where, args = self._selector(msg.ids)
        if not msg.include_history:
            where += " AND state NOT IN ('completed', 'removed')"
        rows = self.store.read(f"SELECT * FROM jobs WHERE {where} ORDER BY cluster, proc",
                               tuple(args))
        viewer = ctx.principal or security.UNCHECKED
        return J.JobList(schedd=self.name,
                         jobs=[queue.job_view(dict(r), self.reasons, now=time.time(),
                                              details=viewer.may_act_for(r["owner"]))
                               for r in rows])

    @staticmethod
    def _selector(ids: list[str]) -> tuple[str, list]:
        if not ids:
            return "1=1", []
        if len(ids) > MAX_IDS:
            raise PermanentError(f"query too large: {len(ids)} job ids, at most {MAX_IDS} "
                                 "(name clusters instead of their jobs)")
        clauses, args = [], []
        for text in ids:
            try:
                cluster, proc = parse_job_id(text)
            except ValueError as exc:
                raise PermanentError(str(exc)) from None
            if proc is None:
                clauses.append("cluster = ?")
                args.append(cluster)
            else:
                clauses.append("(cluster = ? AND proc = ?)")
                args += [cluster, proc]
        return "(" + " OR ".join(clauses) + ")", args

    def on_job_action(self, msg: J.JobAction, ctx: Context) -> J.JobActionResult:
        if msg.action not in logic.ACTIONS:
            raise PermanentError(f"unknown action {msg.action!r}")
        where, args = self._selector(msg.ids)
        actor = ctx.principal or security.UNCHECKED
        return self._transact(ctx, lambda tx: self._act(tx, msg, where, args, actor))

    def _act(self, tx: Tx, msg: J.JobAction, where: str, args: list,
             actor: security.Principal) -> J.JobActionResult:
        jobs = [Job.from_row(row) for row in tx.all(f"SELECT * FROM jobs WHERE {where}",
                                                    tuple(args))]
        skipped = logic.missing_ids(msg.ids, [job.id for job in jobs])
        changed = []
        now = time.time()
        for job in jobs:
            plan = logic.job_action(job, msg.action, msg.reason, actor=actor, schedd=self.name,
                                    now=now)
            self._apply(tx, plan)
            if plan.refused:
                skipped[job.id] = plan.refused
            else:
                changed.append(job.id)
        return J.JobActionResult(changed=changed, skipped=skipped)

    # --- matches and claims -------------------------------------------------------------------

    def on_match_offer(self, msg: MatchOffer, ctx: Context) -> None:
        self._transact(ctx, lambda tx: self._activate_claims(tx, msg))

    def _activate_claims(self, tx: Tx, msg: MatchOffer) -> None:
        now = time.time()
        for claim in msg.claims:
            row = tx.one("SELECT * FROM jobs WHERE autocluster = ? AND state = 'idle' AND "
                         "claim_id IS NULL AND (not_before IS NULL OR not_before <= ?) "
                         "ORDER BY cluster, proc "
                         "LIMIT 1", (msg.autocluster, now))
            if row is None:
                log.info("event=claim_unused autocluster=%s claim=%s", msg.autocluster,
                         claim.claim_id)
                continue
            job = Job.from_row(row)
            inputs, transfers = self._job_files(job, claim)
            with self._job_span(tx, job, "activate claim", {"burst.pilot": claim.pilot_id}):
                self._apply(tx, logic.activate(job, claim, inputs, schedd=self.name, now=now,
                                               transfers=transfers))

    def _job_span(self, tx: Tx, job: Job, name: str, attributes: dict):
        """A span of one job's phase, in that job's trace: under the current span when the
        handler runs in it, else under the job's submission, linked to the current one."""
        row = tx.one("SELECT traceparent FROM clusters WHERE cluster = ?", (job.cluster,))
        job_trace = row["traceparent"] if row is not None else None
        current = tracing.current_traceparent()
        same = job_trace and current and job_trace.split("-")[1] == current.split("-")[1]
        return tracing.span(name, parent=None if same else job_trace,
                            links=() if same else (current,),
                            attributes={"burst.job": job.id, **attributes})

    def _job_files(self, job: Job, claim: Claim
                   ) -> tuple[tuple[str, dict[str, bytes]] | logic.TransferFailed,
                              logic.Transfers]:
        """(executable, small files) of a job from its spool, or why not; and what its pilot
        fetches itself and may upload (presigned for this claim)."""
        try:
            spooled = transfer.spooled(self.spool_dir / job.spool if job.spool else None,
                                       job.classad)
            transfers = transfer.claim_transfers(self.storage, self.files, job.classad,
                                                 (job.cluster, job.proc), claim.claim_id,
                                                 spooled.stored)
        except transfer.TransferError as exc:
            return logic.TransferFailed(str(exc)), logic.Transfers()
        return (spooled.executable, spooled.files), transfers

    def clean_spool(self) -> None:
        """Input files of clusters whose jobs have all completed or been removed go away."""

        def clean(tx: Tx) -> list[int]:
            clusters = [row["cluster"] for row in tx.all(
                "SELECT cluster FROM jobs WHERE spool IS NOT NULL GROUP BY cluster "
                "HAVING SUM(state NOT IN ('completed', 'removed')) = 0")]
            for cluster in clusters:
                tx.execute("UPDATE jobs SET spool = NULL WHERE cluster = ?", (cluster,))
            return clusters

        for cluster in self._transact(None, clean):
            transfer.unspool(self.spool_dir / str(cluster))
            if self.storage is not None:  # its inputs, and what runs left behind
                self._delete_objects(self.storage.cluster_prefix(cluster))

    # --- reports ------------------------------------------------------------------------------

    def on_job_report(self, msg: J.JobReport, ctx: Context) -> None:
        sender = ctx.principal or security.UNCHECKED
        stored = self._transact(ctx, lambda tx: self._apply_report(tx, msg, sender))
        if stored:  # on record now: what the run put in object storage is no longer needed
            self._delete_objects(stored)

    def _apply_report(self, tx: Tx, msg: J.JobReport, sender: security.Principal) -> str:
        """Apply a report; the object storage prefix of the run's outputs, once written."""
        try:
            cluster, proc = parse_job_id(msg.job_id)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        row = tx.one("SELECT * FROM jobs WHERE cluster = ? AND proc = ?", (cluster, proc))
        job = Job.from_row(row) if row is not None else None
        outputs, stored = None, ""
        if job is not None and logic.returns_outputs(job, msg, sender):
            submit = tx.one("SELECT submit_file FROM clusters WHERE cluster = ?", (cluster,))
            with tracing.span("write outputs", attributes={"burst.job": msg.job_id}):
                outputs = self._write_outputs(job, msg, submit["submit_file"] if submit else "")
            if self.storage is not None and (msg.stored_files or msg.stored_streams):
                stored = self.storage.run_prefix(cluster, proc, msg.claim_id)
        try:
            plan = logic.job_report(job, msg, sender=sender, schedd=self.name, now=time.time(),
                                    outputs=outputs)
        except logic.InvalidMessage as exc:
            raise PermanentError(str(exc)) from None
        if plan.refused.startswith("forged"):
            log.warning("event=refused_report job=%s state=%s reason=%r", msg.job_id,
                        msg.state, plan.refused)
        elif plan.refused:
            log.info("event=stale_report job=%s state=%s", msg.job_id, msg.state)
        self._apply(tx, plan)
        return stored

    def _write_outputs(self, job: Job, msg: J.JobReport,
                       submit_file: str) -> list[str] | logic.TransferFailed:
        """Outputs into Iwd (big ones fetched from object storage first), or why not. Object
        storage that does not answer raises: the report is tried again later."""
        ad = job.classad
        try:
            with transfer.returned(msg, self.storage, self.files, ad, (job.cluster, job.proc),
                                   self.spool_dir / ".incoming") as (stdout, stderr, files):
                return transfer.write_outputs(
                    ad, stdout, stderr, files, owner=job.owner, private_dir=self.private_dir,
                    protected=transfer.protected_files(ad, submit_file))
        except transfer.TransferError as exc:
            return logic.TransferFailed(str(exc))

    def _delete_objects(self, prefix: str) -> None:
        assert self.storage is not None
        try:
            self.storage.delete_prefix(prefix)
        except (StorageError, StorageUnavailable) as exc:  # a bucket lifecycle rule sweeps it
            log.warning("event=objects_not_deleted prefix=%s reason=%r", prefix, str(exc))

    def on_pilot_gone(self, msg: PilotExited | PilotLost, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id, or_service=True):
            return

        def requeue(tx: Tx) -> None:
            rows = tx.all("SELECT * FROM jobs WHERE pilot_id = ? AND claim_id IS NOT NULL AND "
                          "state IN ('idle', 'running')", (msg.pilot_id,))
            for row in rows:
                self._apply(tx, logic.pilot_gone(Job.from_row(row), msg.pilot_id, msg.reason,
                                                 schedd=self.name, now=time.time()))

        self._transact(ctx, requeue)

    def on_slot(self, msg: SlotAdvertised, ctx: Context) -> None:
        """Claim reconciliation: a job claimed to this pilot that its ad does not list."""
        if not ctx.from_pilot(msg.pilot_id):
            return
        received_at = time.time()
        for held in msg.jobs:  # fetching its inputs, maybe: the claim is not left to expire
            self._listed[held] = (msg.pilot_id, received_at + msg.lease_s)
        made_before = logic.ad_made_at(msg, received_at) - self.claim_grace_s
        query = ("SELECT * FROM jobs WHERE pilot_id = ? AND claim_id IS NOT NULL AND "
                 "state IN ('idle', 'running') AND matched_at < ?")
        if not self.store.read(query, (msg.pilot_id, made_before)):
            return  # the usual case: no transaction, nothing recorded for a heartbeat

        def reconcile(tx: Tx) -> None:
            for row in tx.all(query, (msg.pilot_id, made_before)):
                plan = logic.reconcile(Job.from_row(row), msg, received_at=received_at,
                                       grace_s=self.claim_grace_s, schedd=self.name)
                if not plan.refused:
                    log.warning("event=claim_reconciled job=%s pilot=%s state=%s",
                                plan.job.id, msg.pilot_id, plan.job.state)
                self._apply(tx, plan)

        self._transact(ctx, reconcile)

    def expire_claims(self) -> None:
        """Matched jobs whose pilot never said it started them go back to idle, unless its
        slot ads still list them (it is fetching their input files)."""
        now = time.time()
        self._listed = {job: seen for job, seen in self._listed.items() if seen[1] > now}

        def expire(tx: Tx) -> None:
            for row in tx.all("SELECT * FROM jobs WHERE state = 'idle' AND claim_id IS NOT NULL "
                              "AND matched_at < ?", (now - self.claim_timeout_s,)):
                job = Job.from_row(row)
                if self._listed.get(job.id, ("", 0.0))[0] == job.pilot_id:
                    continue
                self._apply(tx, logic.expire_claim(job, now=now, timeout_s=self.claim_timeout_s,
                                                   schedd=self.name))

        self._transact(None, expire)

    def evaluate_periodic(self) -> None:
        """PeriodicHold, PeriodicRelease and PeriodicRemove of the jobs that have them."""
        now = time.time()

        def evaluate(tx: Tx) -> None:
            for row in tx.all("SELECT * FROM jobs WHERE periodic = 1 AND "
                              "state IN ('idle', 'running', 'held')"):
                plan = logic.periodic(Job.from_row(row), schedd=self.name, now=now)
                if not plan.refused:
                    log.info("event=job_policy job=%s state=%s reason=%r", plan.job.id,
                             plan.changes.get("state"), plan.events[0].reason)
                self._apply(tx, plan)

        self._transact(None, evaluate)

    def _apply(self, tx: Tx, plan: logic.Plan) -> None:
        """Carry out a decision inside the handler's transaction."""
        if plan.job is not None and plan.changes:
            tx.update_job(plan.job.cluster, plan.job.proc, plan.changes)
        for message, pilot in plan.commands:
            tx.send(message, to=pilot)
        for event in plan.events:
            tx.emit(event)
        for line in plan.user_log:
            userlog.append(line.path, line.text, iwd=line.iwd,
                           owner=plan.job.owner if plan.job else "", private_dir=self.private_dir)

    # --- demand -------------------------------------------------------------------------------

    def on_match_analysis(self, msg: MatchAnalysis, ctx: Context) -> None:
        if msg.schedd == self.name:
            self.reasons[msg.source] = dict(msg.reasons)

    def publish_demand(self) -> None:
        now = time.time()
        if self._next_deferral is not None and now >= self._next_deferral:
            self._demand_dirty = True  # a deferred job's time has come: it is demand now
        if not self._demand_dirty and now - self._last_demand < DEMAND_REFRESH_S:
            return
        self._demand_dirty = False
        self._last_demand = now
        self._demand_seq += 1
        self.bus.emit(DemandSnapshot(schedd=self.name, seq=self._demand_seq,
                                     autoclusters=self.demand(now), time=now))

    def demand(self, now: float | None = None) -> list[AutoCluster]:
        """Idle and running jobs per autocluster; a job deferred past `now` is neither."""
        now = time.time() if now is None else now
        rows = self.store.read(
            "SELECT g.*, c.traceparent FROM (SELECT a.id, a.owner, a.ad, a.desired_sites, "
            "SUM(j.state = 'idle' AND j.claim_id IS NULL) AS idle, "
            "SUM(j.state = 'running' OR (j.state = 'idle' AND j.claim_id IS NOT NULL)) AS running, "
            "MIN(CASE WHEN j.state = 'idle' AND j.claim_id IS NULL THEN j.cluster END) AS first "
            "FROM jobs j JOIN autoclusters a ON a.id = j.autocluster "
            "WHERE j.state IN ('idle', 'running') AND NOT (j.state = 'idle' AND "
            "j.claim_id IS NULL AND j.not_before IS NOT NULL AND j.not_before > ?) "
            "GROUP BY a.id) g "
            # the oldest idle job's submission: the trace its provisioning and match join
            "LEFT JOIN clusters c ON c.cluster = g.first ORDER BY g.id", (now,))
        (deferred,) = self.store.read("SELECT MIN(not_before) FROM jobs WHERE state = 'idle' "
                                      "AND not_before > ?", (now,))
        self._next_deferral = deferred[0]
        return [AutoCluster(id=r["id"], owner=r["owner"], ad=r["ad"], idle=int(r["idle"] or 0),
                            running=int(r["running"] or 0), desired_sites=r["desired_sites"],
                            traceparent=r["traceparent"] or "")
                for r in rows]


def _submitted_on_hold(ad: classad2.ClassAd) -> str:
    """The hold reason of a job submitted held (JobStatus 5), or "" for one that is idle."""
    if ad.get("JobStatus") != logic.HELD_STATUS:
        return ""
    reason = ad.get("HoldReason")
    return reason if isinstance(reason, str) and reason else "submitted on hold"


def _require_owner(ctx: Context, owner: str, what: str) -> None:
    """Only `owner` (or an administrator) may act as `owner`."""
    principal = ctx.principal or security.UNCHECKED
    if not principal.may_act_for(owner):
        raise PermanentError(f"refused: {principal.name} may not {what} as {owner}")

