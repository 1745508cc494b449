"""The schedd: owns the job queue; turns commands and reports into job events.

    CLI ─cluster.new/job.submit/job.query/job.action─▶ ┌────────┐ ─job.*──────────▶ events
    negotiator ─match.offer──────────────────────────▶ │ schedd │ ─claim.activate─▶ pilot
    pilot ─job.report────────────────────────────────▶ │ SQLite │ ─job.kill───────▶ pilot
    events: match.analysis, pilot.exited, pilot.lost─▶ └────────┘ ─demand.autoclusters▶ events

Each handler is one transaction (store.py); what it publishes is recorded in
that transaction and republished unchanged if the message comes again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import classad2

from schemas import job as J
from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.pilot import PilotExited, PilotLost
from schemas.slot import ClaimActivate, JobKill, MatchOffer
from services.runtime.ackpolicy import PermanentError
from services.runtime.bus import Bus, Context, Subscription

from . import queue, transfer, userlog
from .store import Store, Tx

log = logging.getLogger("burst.schedd")

DEMAND_DEBOUNCE_S = 0.3
DEMAND_REFRESH_S = 15.0
CLAIM_TIMEOUT_S = 120.0
TERMINAL = ("completed", "removed")


class Schedd:
    def __init__(self, name: str, store: Store, bus: Bus, *,
                 claim_timeout_s: float = CLAIM_TIMEOUT_S):
        self.name = name
        self.store = store
        self.bus = bus
        self.claim_timeout_s = claim_timeout_s
        self.reasons: dict[str, dict[str, str]] = {}  # source -> autocluster -> reason
        self._demand_dirty = True
        self._demand_seq = 0
        self._last_demand = 0.0

    # --- wiring -------------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        commands = {
            "cluster.new": self.on_cluster_new,
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
        }
        return [Subscription(f"schedd.{self.name}", commands=commands, events=events,
                             target=self.name, prefetch=500, exclusive=True)]

    def started(self) -> None:
        self.bus.call_every(DEMAND_DEBOUNCE_S, self.publish_demand)
        self.bus.call_every(10.0, self.expire_claims, first_delay_s=10.0)
        self.bus.call_every(3600.0, lambda: self.store.prune_processed(86400.0))

    def stopping(self) -> None:
        pass

    def _transact(self, ctx: Context | None, work: Callable[[Tx], Any]) -> Any:
        with self.store.transaction(ctx.message_id if ctx else None) as tx:
            reply = None if tx.replayed else work(tx)
        for out in tx.outputs:
            publish = ctx if ctx is not None else self.bus
            if out.kind == "emit":
                publish.emit(out.message)
            else:
                publish.send(out.message, out.to)
        self._demand_dirty = True
        return reply

    # --- submission ---------------------------------------------------------------------------

    def on_cluster_new(self, msg: J.ClusterNew, ctx: Context) -> J.ClusterAllocated:
        def allocate(tx: Tx) -> J.ClusterAllocated:
            cluster = tx.next_cluster()
            tx.execute("INSERT INTO clusters (cluster, owner, allocated_at) VALUES (?, ?, ?)",
                       (cluster, msg.owner, time.time()))
            return J.ClusterAllocated(schedd=self.name, cluster=cluster)

        return self._transact(ctx, allocate)

    def on_job_submit(self, msg: J.JobSubmit, ctx: Context) -> J.JobSubmitted:
        ads = []
        for proc in msg.procs:
            try:
                ads.append((proc.proc, classad2.ClassAd(proc.ad)))
            except Exception as exc:  # classad2 raises its own parse errors
                raise PermanentError(f"job {msg.cluster}.{proc.proc}: bad ClassAd: {exc}") from None
        if not ads:
            raise PermanentError(f"cluster {msg.cluster}: no jobs to queue")
        return self._transact(ctx, lambda tx: self._queue_cluster(tx, msg, ads))

    def _queue_cluster(self, tx: Tx, msg: J.JobSubmit, ads: list) -> J.JobSubmitted:
        row = tx.one("SELECT owner, submitted_at FROM clusters WHERE cluster = ?", (msg.cluster,))
        if row is None:
            raise PermanentError(f"cluster {msg.cluster} was not allocated by schedd {self.name}")
        if row["submitted_at"] is not None:
            raise PermanentError(f"cluster {msg.cluster} was already submitted")
        now = time.time()
        ids = []
        for proc, ad in ads:
            key = queue.autocluster_of(ad, msg.owner)
            tx.execute("INSERT OR IGNORE INTO autoclusters (id, owner, ad, desired_sites) "
                       "VALUES (?, ?, ?, ?)", (key.id, msg.owner, key.ad, key.desired_sites))
            cpus, memory, disk = queue.resource_requests(ad)
            tx.execute(
                "INSERT INTO jobs (cluster, proc, owner, state, ad, autocluster, request_cpus, "
                "request_memory_mb, request_disk_mb, submitted_at) "
                "VALUES (?, ?, ?, 'idle', ?, ?, ?, ?, ?, ?)",
                (msg.cluster, proc, msg.owner, str(ad), key.id, cpus, memory, disk, now))
            ids.append(queue.job_id(msg.cluster, proc))
            userlog.append(_userlog_path(ad), userlog.event_text(
                userlog.SUBMITTED, msg.cluster, proc, f"Job submitted from host: <{self.name}>"))
        tx.execute("UPDATE clusters SET submitted_at = ?, submit_file = ? WHERE cluster = ?",
                   (now, msg.submit_file, msg.cluster))
        submitted = J.JobSubmitted(schedd=self.name, cluster=msg.cluster, jobs=ids,
                                   owner=msg.owner)
        tx.emit(submitted)
        log.info("event=cluster_submitted cluster=%d jobs=%d owner=%s", msg.cluster, len(ids),
                 msg.owner)
        return submitted

    # --- queries and user actions -------------------------------------------------------------

    def on_job_query(self, msg: J.JobQuery, ctx: Context) -> J.JobList:
        where, args = self._selector(msg.ids)
        if not msg.include_history:
            where += " AND state NOT IN ('completed', 'removed')"
        rows = self.store.read(f"SELECT * FROM jobs WHERE {where} ORDER BY cluster, proc",
                               tuple(args))
        return J.JobList(schedd=self.name,
                         jobs=[queue.job_view(dict(r), self.reasons) for r in rows])

    @staticmethod
    def _selector(ids: list[str]) -> tuple[str, list]:
        if not ids:
            return "1=1", []
        clauses, args = [], []
        for text in ids:
            try:
                cluster, proc = queue.parse_job_id(text)
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
        if msg.action not in ("remove", "hold", "release"):
            raise PermanentError(f"unknown action {msg.action!r}")
        where, args = self._selector(msg.ids)
        return self._transact(ctx, lambda tx: self._act(tx, msg, where, args))

    def _act(self, tx: Tx, msg: J.JobAction, where: str, args: list) -> J.JobActionResult:
        rows = tx.all(f"SELECT * FROM jobs WHERE {where}", tuple(args))
        changed, skipped = [], {}
        found = {queue.job_id(r["cluster"], r["proc"]) for r in rows}
        for text in msg.ids:
            if not any(j == text or j.startswith(f"{text}.") for j in found):
                skipped[text] = "no such job"
        for row in rows:
            jid = queue.job_id(row["cluster"], row["proc"])
            why_not = self._apply_action(tx, msg, row)
            if why_not:
                skipped[jid] = why_not
            else:
                changed.append(jid)
        return J.JobActionResult(changed=changed, skipped=skipped)

    def _apply_action(self, tx: Tx, msg: J.JobAction, row: Any) -> str:
        jid, state = queue.job_id(row["cluster"], row["proc"]), row["state"]
        if msg.action == "release":
            if state != "held":
                return f"is {state}, not held"
            self._set(tx, row, state="idle", hold_reason="")
            tx.emit(J.JobReleased(schedd=self.name, job_id=jid, owner=row["owner"]))
            self._log(row, userlog.RELEASED, "Job was released.", msg.reason)
            return ""
        if state in TERMINAL or (msg.action == "hold" and state == "held"):
            return f"is already {state}"
        self._kill_claim(tx, row, msg.reason or f"{msg.action} by user")
        if msg.action == "remove":
            self._set(tx, row, state="removed", finished_at=time.time())
            tx.emit(J.JobRemoved(schedd=self.name, job_id=jid, owner=row["owner"],
                                 reason=msg.reason))
            self._log(row, userlog.ABORTED, "Job was aborted.", msg.reason)
        else:
            self._hold(tx, row, msg.reason or "held by user")
        return ""

    def _kill_claim(self, tx: Tx, row: Any, reason: str) -> None:
        if row["claim_id"] and row["pilot_id"]:
            tx.send(JobKill(pilot_id=row["pilot_id"], job_id=queue.job_id(row["cluster"],
                                                                          row["proc"]),
                            claim_id=row["claim_id"], reason=reason), to=row["pilot_id"])

    @staticmethod
    def _set(tx: Tx, row: Any, *, clear_claim: bool = True, **values: Any) -> None:
        if clear_claim:
            values.update(claim_id=None, matched_at=None)
        columns = ", ".join(f"{k} = ?" for k in values)
        tx.execute(f"UPDATE jobs SET {columns} WHERE cluster = ? AND proc = ?",
                   (*values.values(), row["cluster"], row["proc"]))

    # --- matches and claims -------------------------------------------------------------------

    def on_match_offer(self, msg: MatchOffer, ctx: Context) -> None:
        self._transact(ctx, lambda tx: self._activate_claims(tx, msg))

    def _activate_claims(self, tx: Tx, msg: MatchOffer) -> None:
        now = time.time()
        for claim in msg.claims:
            row = tx.one("SELECT * FROM jobs WHERE autocluster = ? AND state = 'idle' AND "
                         "claim_id IS NULL ORDER BY cluster, proc LIMIT 1", (msg.autocluster,))
            if row is None:
                log.info("event=claim_unused autocluster=%s claim=%s", msg.autocluster,
                         claim.claim_id)
                continue
            jid = queue.job_id(row["cluster"], row["proc"])
            ad = classad2.ClassAd(row["ad"])
            try:
                executable, files = transfer.input_files(ad)
            except transfer.TransferError as exc:
                self._hold(tx, row, str(exc))
                continue
            self._set(tx, row, clear_claim=False, claim_id=claim.claim_id,
                      pilot_id=claim.pilot_id, entry=claim.entry, site=claim.site,
                      provider=claim.provider, matched_at=now)
            tx.send(ClaimActivate(
                claim_id=claim.claim_id, pilot_id=claim.pilot_id, schedd=self.name, job_id=jid,
                job_ad=row["ad"], executable=executable, arguments=transfer.arguments(ad),
                environment=transfer.environment(ad), files=files, cpus=claim.cpus,
                memory_mb=claim.memory_mb, disk_mb=claim.disk_mb,
                output_files=transfer.string_list(ad, "TransferOutput"),
                stream_names=transfer.stream_names(ad)), to=claim.pilot_id)
            tx.emit(J.JobMatched(schedd=self.name, job_id=jid, owner=row["owner"],
                                 claim_id=claim.claim_id, pilot_id=claim.pilot_id,
                                 entry=claim.entry, site=claim.site))

    def _hold(self, tx: Tx, row: Any, reason: str) -> None:
        self._set(tx, row, state="held", hold_reason=reason)
        tx.emit(J.JobHeld(schedd=self.name, job_id=queue.job_id(row["cluster"], row["proc"]),
                          owner=row["owner"], reason=reason))
        self._log(row, userlog.HELD, "Job was held.", reason)

    @staticmethod
    def _log(row: Any, code: int, message: str, detail: str = "") -> None:
        path = _userlog_path(classad2.ClassAd(row["ad"]))
        if path:
            userlog.append(path, userlog.event_text(code, row["cluster"], row["proc"], message,
                                                    detail))

    def _requeue(self, tx: Tx, row: Any, reason: str) -> None:
        self._set(tx, row, state="idle", pilot_id=None, entry=None, site=None, provider=None)
        tx.emit(J.JobRequeued(schedd=self.name, job_id=queue.job_id(row["cluster"], row["proc"]),
                              owner=row["owner"], reason=reason))

    def on_job_report(self, msg: J.JobReport, ctx: Context) -> None:
        self._transact(ctx, lambda tx: self._apply_report(tx, msg))

    def _apply_report(self, tx: Tx, msg: J.JobReport) -> None:
        cluster, proc = queue.parse_job_id(msg.job_id)
        row = tx.one("SELECT * FROM jobs WHERE cluster = ? AND proc = ?", (cluster, proc))
        if row is None or row["claim_id"] != msg.claim_id:
            log.info("event=stale_report job=%s claim=%s state=%s", msg.job_id, msg.claim_id,
                     msg.state)
            return
        where = {"pilot_id": msg.pilot_id, "entry": msg.entry or row["entry"],
                 "site": msg.site or row["site"], "provider": msg.provider or row["provider"]}
        if msg.state == "running":
            self._set(tx, row, clear_claim=False, state="running", started_at=time.time(),
                      runs=row["runs"] + 1, **where)
            tx.emit(J.JobRunning(schedd=self.name, job_id=msg.job_id, owner=row["owner"],
                                 **where))
            self._log(row, userlog.EXECUTING,
                      f"Job executing on host: <{msg.pilot_id}> at site {where['site']}")
        elif msg.state == "rejected":
            self._requeue(tx, row, f"pilot {msg.pilot_id} rejected the claim: {msg.reason}")
        elif msg.state in ("exited", "held"):
            self._finish(tx, row, msg, where)
        else:
            raise PermanentError(f"unknown job report state {msg.state!r}")

    def _finish(self, tx: Tx, row: Any, msg: J.JobReport, where: dict) -> None:
        ad = classad2.ClassAd(row["ad"])
        try:
            outputs = transfer.write_outputs(ad, msg.stdout, msg.stderr, msg.output_files)
        except transfer.TransferError as exc:
            self._hold(tx, row, str(exc))
            return
        if msg.state == "held":
            self._hold(tx, row, msg.reason)
            return
        self._set(tx, row, state="completed", exit_code=msg.exit_code,
                  exit_signal=msg.exit_signal, finished_at=time.time(),
                  started_at=row["started_at"] or time.time() - msg.wall_seconds, **where)
        tx.emit(J.JobCompleted(schedd=self.name, job_id=msg.job_id, owner=row["owner"],
                               exit_code=msg.exit_code, exit_signal=msg.exit_signal,
                               wall_seconds=msg.wall_seconds, outputs=outputs, **where))
        how = (f"(1) Normal termination (return value {msg.exit_code})"
               if msg.exit_signal is None else
               f"(0) Abnormal termination (signal {msg.exit_signal})")
        self._log(row, userlog.TERMINATED, "Job terminated.", how)

    def on_pilot_gone(self, msg: PilotExited | PilotLost, ctx: Context) -> None:
        def requeue(tx: Tx) -> None:
            rows = tx.all("SELECT * FROM jobs WHERE pilot_id = ? AND claim_id IS NOT NULL AND "
                          "state IN ('idle', 'running')", (msg.pilot_id,))
            for row in rows:
                self._requeue(tx, row, f"pilot {msg.pilot_id} went away: {msg.reason}")

        self._transact(ctx, requeue)

    def expire_claims(self) -> None:
        """Matched jobs whose pilot never said it started them go back to idle."""
        cutoff = time.time() - self.claim_timeout_s

        def expire(tx: Tx) -> None:
            for row in tx.all("SELECT * FROM jobs WHERE state = 'idle' AND claim_id IS NOT NULL "
                              "AND matched_at < ?", (cutoff,)):
                self._kill_claim(tx, row, "claim not activated in time")
                self._requeue(tx, row, f"pilot {row['pilot_id']} did not start it within "
                                       f"{self.claim_timeout_s:g}s")

        self._transact(None, expire)

    # --- demand -------------------------------------------------------------------------------

    def on_match_analysis(self, msg: MatchAnalysis, ctx: Context) -> None:
        if msg.schedd == self.name:
            self.reasons[msg.source] = dict(msg.reasons)

    def publish_demand(self) -> None:
        now = time.time()
        if not self._demand_dirty and now - self._last_demand < DEMAND_REFRESH_S:
            return
        self._demand_dirty = False
        self._last_demand = now
        self._demand_seq += 1
        self.bus.emit(DemandSnapshot(schedd=self.name, seq=self._demand_seq,
                                     autoclusters=self.demand(), time=now))

    def demand(self) -> list[AutoCluster]:
        rows = self.store.read(
            "SELECT a.id, a.owner, a.ad, a.desired_sites, "
            "SUM(j.state = 'idle' AND j.claim_id IS NULL) AS idle, "
            "SUM(j.state = 'running' OR (j.state = 'idle' AND j.claim_id IS NOT NULL)) AS running "
            "FROM jobs j JOIN autoclusters a ON a.id = j.autocluster "
            "WHERE j.state IN ('idle', 'running') GROUP BY a.id ORDER BY a.id")
        return [AutoCluster(id=r["id"], owner=r["owner"], ad=r["ad"], idle=int(r["idle"] or 0),
                            running=int(r["running"] or 0), desired_sites=r["desired_sites"])
                for r in rows]


def _userlog_path(ad: classad2.ClassAd) -> str:
    value = ad.get("UserLog")
    return value if isinstance(value, str) else ""
