"""The schedd on the in-memory bus: submit, match, reports, actions, restarts."""

from __future__ import annotations

import time

import classad2
import pytest

from schemas import job as J
from schemas.demand import DemandSnapshot, MatchAnalysis
from schemas.pilot import PilotLost
from schemas.slot import Claim, ClaimActivate, JobKill, MatchOffer
from services.runtime.bus import RemoteError, Subscription, connect
from services.schedd.handlers import Schedd
from services.schedd.store import Store
from tests.helpers import Inbox, wait_until


def job_ad(tmp_path, cmd: str = "/bin/echo", memory: int = 128, **extra) -> str:
    ad = classad2.ClassAd({"Cmd": cmd, "Arguments": "hi there", "Iwd": str(tmp_path),
                           "RequestCpus": 1, "RequestMemory": memory, "RequestDisk": 1024,
                           "Out": "job.out", "Err": "job.err", **extra})
    ad["Requirements"] = classad2.ExprTree("TARGET.Memory >= MY.RequestMemory")
    return str(ad)


class Harness:
    def __init__(self, settings, tmp_path, **schedd_options):
        self.settings = settings
        self.tmp_path = tmp_path
        self.schedd_options = schedd_options  # Schedd's keyword arguments
        self.pilot_inbox, self.events = Inbox(), Inbox()
        self.start()

    def start(self):
        self.bus = connect(self.settings, "schedd", memory=True)
        self.store = Store(self.tmp_path / "schedd.db")
        self.schedd = Schedd("s1", self.store, self.bus, **self.schedd_options)
        for sub in self.schedd.subscriptions():
            self.bus.subscribe(sub)
        self.bus.subscribe(Subscription("pilot", commands={
            "claim.activate": lambda m, c: self.pilot_inbox.add(m),
            "job.kill": lambda m, c: self.pilot_inbox.add(m)}, target="p1"))
        names = ["job.submitted", "job.matched", "job.running", "job.completed", "job.held",
                 "job.removed", "job.released", "job.requeued", "demand.autoclusters"]
        self.bus.subscribe(Subscription("watch", events=dict.fromkeys(names, self._watch)))
        self.bus.start()

    def _watch(self, msg, ctx):
        self.events.add(msg)

    def restart(self):
        self.bus.stop()
        self.store.close()
        self.start()

    def submit(self, ads: list[str], owner: str = "alice",
               files: dict[str, bytes] | None = None) -> J.JobSubmitted:
        """Submit as `burst submit` does; `files` are every job's input files."""
        cluster = self.bus.call(J.ClusterNew(owner=owner), to="s1").cluster
        procs = [J.ProcAd(proc=i, ad=ad, inputs=0 if files else -1) for i, ad in enumerate(ads)]
        return self.bus.call(J.JobSubmit(cluster=cluster, owner=owner, submit_file="x.sub",
                                         procs=procs, input_sets=[files] if files else []),
                             to="s1")

    def q(self, *ids: str) -> dict[str, J.JobInfo]:
        return {j.id: j for j in self.bus.call(J.JobQuery(ids=list(ids)), to="s1").jobs}

    def offer(self, autocluster: str, n: int = 1, owner: str = "alice") -> None:
        claims = [Claim(claim_id=f"c{i}", pilot_id="p1", cpus=1, memory_mb=128, disk_mb=1,
                        entry="e1", site="SiteA", provider="local") for i in range(n)]
        self.bus.send(MatchOffer(schedd="s1", autocluster=autocluster, owner=owner,
                                 claims=claims), to="s1")

    def report(self, job_id: str, claim_id: str, state: str, **kw) -> None:
        self.bus.send(J.JobReport(job_id=job_id, claim_id=claim_id, pilot_id="p1", state=state,
                                  entry="e1", site="SiteA", provider="local", **kw), to="s1")
        self.bus.wait_idle()

    def demand(self) -> DemandSnapshot:
        self.bus.wait_idle()
        self.schedd._demand_dirty = True
        self.schedd.publish_demand()
        self.bus.wait_idle()
        return [e for e in self.events.items if isinstance(e, DemandSnapshot)][-1]


@pytest.fixture
def h(settings, tmp_path):
    harness = Harness(settings, tmp_path)
    yield harness
    harness.bus.stop()


def test_submitted_jobs_are_idle_and_grouped_into_one_autocluster(h, tmp_path):
    done = h.submit([job_ad(tmp_path)] * 3)
    assert done.cluster == 1 and done.jobs == ["1.0", "1.1", "1.2"]
    assert {j.state for j in h.q().values()} == {"idle"}
    (ac,) = h.demand().autoclusters
    assert (ac.owner, ac.idle, ac.running) == ("alice", 3, 0)


def test_different_memory_requests_make_different_autoclusters(h, tmp_path):
    h.submit([job_ad(tmp_path, memory=128), job_ad(tmp_path, memory=4096)])
    assert sorted(ac.idle for ac in h.demand().autoclusters) == [1, 1]


def test_match_sends_the_job_and_its_spooled_files_to_the_pilot(h, tmp_path):
    # burst submit read run.sh; the schedd never opens the user's copy (gone by now).
    h.submit([job_ad(tmp_path, cmd=str(tmp_path / "run.sh"))],
             files={"run.sh": b"#!/bin/sh\necho hi\n"})
    assert not (tmp_path / "run.sh").exists()
    (ac,) = h.demand().autoclusters
    h.offer(ac.id)
    (activation,) = h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    assert isinstance(activation, ClaimActivate)
    assert activation.job_id == "1.0" and activation.executable == "run.sh"
    assert activation.files == {"run.sh": b"#!/bin/sh\necho hi\n"}
    assert activation.arguments == ["hi", "there"]
    assert h.demand().autoclusters[0].idle == 0  # matched jobs are no longer demand


def test_reports_move_the_job_to_running_then_completed_with_outputs(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "running")
    assert h.q()["1.0"].state == "running"
    h.report("1.0", "c0", "exited", exit_code=3, stdout=b"out\n", stderr=b"err\n",
             output_files={"result.txt": b"42"})
    job = h.q()["1.0"]
    assert (job.state, job.exit_code, job.site, job.entry) == ("completed", 3, "SiteA", "e1")
    assert (tmp_path / "job.out").read_text() == "out\n"
    assert (tmp_path / "job.err").read_text() == "err\n"
    assert (tmp_path / "result.txt").read_text() == "42"


def test_a_report_for_an_old_claim_changes_nothing(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "someone-else", "exited", exit_code=0)
    assert h.q()["1.0"].state == "idle"


def test_held_report_keeps_the_reason(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "held", reason="memory usage 300 MiB exceeded request_memory 128 MiB")
    job = h.q()["1.0"]
    assert job.state == "held" and "exceeded request_memory" in job.hold_reason


def test_rejected_claim_and_lost_pilot_put_jobs_back_to_idle(h, tmp_path):
    h.submit([job_ad(tmp_path)] * 2)
    h.offer(h.demand().autoclusters[0].id, n=2)
    h.pilot_inbox.wait_for(lambda items: len(items) == 2)
    h.report("1.0", "c0", "rejected", reason="slot busy")
    h.report("1.1", "c1", "running")
    h.bus.emit(PilotLost(pilot_id="p1", entry="e1", reason="vanished"))
    h.bus.wait_idle()
    jobs = h.q()
    assert (jobs["1.0"].state, jobs["1.1"].state) == ("idle", "idle")
    assert h.demand().autoclusters[0].idle == 2


def test_remove_of_a_running_job_kills_it_on_the_pilot(h, tmp_path):
    h.submit([job_ad(tmp_path)] * 2)
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "running")
    result = h.bus.call(J.JobAction(action="remove", ids=["1"], reason="changed my mind"),
                        to="s1")
    assert sorted(result.changed) == ["1.0", "1.1"]
    kill = h.pilot_inbox.wait_for(lambda items: len(items) == 2)[1]
    assert isinstance(kill, JobKill) and kill.job_id == "1.0"
    assert {j.state for j in h.q().values()} == {"removed"}


def test_hold_release_and_unknown_ids(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    held = h.bus.call(J.JobAction(action="hold", ids=["1.0", "9"]), to="s1")
    assert held.changed == ["1.0"] and held.skipped == {"9": "no such job"}
    assert h.q()["1.0"].state == "held"
    again = h.bus.call(J.JobAction(action="release", ids=["1.0"]), to="s1")
    assert again.changed == ["1.0"] and h.q()["1.0"].state == "idle"


def test_submit_of_an_unallocated_cluster_is_refused(h, tmp_path):
    with pytest.raises(RemoteError, match="cluster 77 was not allocated"):
        h.bus.call(J.JobSubmit(cluster=77, owner="a", submit_file="x",
                               procs=[J.ProcAd(0, job_ad(tmp_path))]), to="s1")
    assert h.q() == {}


def test_idle_reasons_from_analysis_show_in_the_queue(h, tmp_path):
    h.submit([job_ad(tmp_path, memory=999999)])
    ac = h.demand().autoclusters[0].id
    h.bus.emit(MatchAnalysis(source="frontend:main", schedd="s1",
                             reasons={ac: "no entry has 999999 MiB"}))
    h.bus.wait_idle()
    assert h.q()["1.0"].idle_reason == "no entry has 999999 MiB"


def test_the_queue_survives_a_restart(h, tmp_path):
    h.submit([job_ad(tmp_path)] * 2)
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "running")
    h.restart()
    jobs = h.q()
    assert (jobs["1.0"].state, jobs["1.1"].state) == ("running", "idle")
    assert h.submit([job_ad(tmp_path)]).cluster == 2


def test_a_redelivered_message_republishes_instead_of_redoing(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    report = J.JobReport(job_id="1.0", claim_id="c0", pilot_id="p1", state="running")
    h.bus.send(report, to="s1", message_id="a" * 32)
    h.bus.send(report, to="s1", message_id="a" * 32)
    h.bus.wait_idle()
    assert h.q()["1.0"].runs == 1
    running = [e for e in h.events.items if isinstance(e, J.JobRunning)]
    assert len(running) == 2  # the same event twice, not a second run


def test_the_user_log_gets_htcondor_style_events(h, tmp_path):
    log = tmp_path / "jobs.log"
    h.submit([job_ad(tmp_path, UserLog=str(log))])
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "running")
    h.report("1.0", "c0", "exited", exit_code=2)
    text = log.read_text()
    codes = [line.split()[0] for line in text.splitlines() if line[:3].isdigit()]
    assert codes == ["000", "001", "005"]
    assert "(001.000.000)" in text and "Normal termination (return value 2)" in text


def test_a_job_submitted_on_hold_is_queued_held_until_released(h, tmp_path):
    """`hold = true`: submit.py writes JobStatus 5 and HTCondor's reason into the ad."""
    log = tmp_path / "held.log"
    held = job_ad(tmp_path, UserLog=str(log), JobStatus=5, HoldReasonCode=15,
                  HoldReason="submitted on hold at user's request")
    h.submit([held, job_ad(tmp_path)])
    jobs = h.q()
    assert (jobs["1.0"].state, jobs["1.0"].hold_reason) == (
        "held", "submitted on hold at user's request")
    assert jobs["1.1"].state == "idle"
    (ac,) = h.demand().autoclusters
    assert ac.idle == 1  # the held job is no demand
    events = [type(e).__name__ for e in h.events.wait_for(
        lambda items: any(isinstance(e, J.JobHeld) for e in items))
        if isinstance(e, (J.JobSubmitted, J.JobHeld))]
    assert events == ["JobSubmitted", "JobHeld"]
    codes = [line.split()[0] for line in log.read_text().splitlines() if line[:3].isdigit()]
    assert codes == ["000", "012"]
    h.bus.call(J.JobAction(action="release", ids=["1.0"], reason=""), to="s1")
    assert h.q("1.0")["1.0"].state == "idle"
    assert h.demand().autoclusters[0].idle == 2


def test_a_query_naming_too_many_jobs_is_refused_at_once(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    ids = [f"1.{i}" for i in range(10_001)]
    with pytest.raises(RemoteError, match="query too large: 10001 job ids"):
        h.bus.call(J.JobQuery(ids=ids), to="s1")
    (dead,) = h.bus.dead_letters("schedd.s1")
    assert "gave up" not in dead[1]  # dead-lettered at once, not after retries


def test_a_submission_numbering_two_jobs_alike_is_refused(h, tmp_path):
    cluster = h.bus.call(J.ClusterNew(owner="alice"), to="s1").cluster
    twice = [J.ProcAd(0, job_ad(tmp_path)), J.ProcAd(0, job_ad(tmp_path))]
    with pytest.raises(RemoteError, match="proc numbers must be distinct"):
        h.bus.call(J.JobSubmit(cluster=cluster, owner="alice", submit_file="x", procs=twice),
                   to="s1")
    assert h.q() == {}


# --- job policy and deferral -----------------------------------------------------------------


def stored_ad(h, job_id: str) -> classad2.ClassAd:
    cluster, proc = job_id.split(".")
    (row,) = h.store.read("SELECT ad FROM jobs WHERE cluster = ? AND proc = ?",
                          (int(cluster), int(proc)))
    return classad2.ClassAd(row["ad"])


def test_a_job_whose_exit_policy_says_again_runs_again_until_it_may_leave(h, tmp_path):
    """max_retries = 3 with on_exit_remove = ExitCode == 0, as condor_submit folds them."""
    log = tmp_path / "retry.log"
    h.submit([job_ad(tmp_path, UserLog=str(log), JobMaxRetries=3, NumJobCompletions=0,
                     NumJobStarts=0, OnExitRemove=classad2.ExprTree(
                         "NumJobCompletions > JobMaxRetries || ExitCode =?= 0 || "
                         "(ExitCode == 0)"))])
    for attempt, exit_code in enumerate([1, 1, 0]):
        h.offer(h.demand().autoclusters[0].id)
        h.pilot_inbox.wait_for(lambda items, n=attempt: len(items) == n + 1)
        h.report("1.0", "c0", "running")
        assert stored_ad(h, "1.0")["NumJobStarts"] == attempt + 1
        h.report("1.0", "c0", "exited", exit_code=exit_code)
    job = h.q()["1.0"]
    assert (job.state, job.exit_code, job.runs) == ("completed", 0, 3)
    ad = stored_ad(h, "1.0")
    assert (ad["JobStatus"], ad["NumJobStarts"], ad["NumJobCompletions"]) == (4, 3, 3)
    requeued = [e for e in h.events.items if isinstance(e, J.JobRequeued)]
    assert len(requeued) == 2 and all("OnExitRemove" in e.reason for e in requeued)
    codes = [line.split()[0] for line in log.read_text().splitlines() if line[:3].isdigit()]
    assert codes == ["000", "001", "004", "001", "004", "001", "005"]


def test_the_periodic_timer_acts_on_the_jobs_whose_expressions_fire(h, tmp_path):
    h.submit([job_ad(tmp_path, PeriodicRemove=classad2.ExprTree("(time() - QDate) >= 0")),
              job_ad(tmp_path, PeriodicRemove=classad2.ExprTree("(time() - QDate) > 3600")),
              job_ad(tmp_path, PeriodicHold=classad2.ExprTree("NoSuchAttribute"))])
    h.schedd.evaluate_periodic()
    h.bus.wait_idle()
    jobs = h.q()
    assert [jobs[j].state for j in ("1.0", "1.1", "1.2")] == ["removed", "idle", "held"]
    assert stored_ad(h, "1.2")["HoldReasonCode"] == 5
    removed = h.events.wait_for(lambda items: any(isinstance(e, J.JobRemoved) for e in items))
    assert any(isinstance(e, J.JobRemoved) and e.job_id == "1.0" and
               "PeriodicRemove" in e.reason for e in removed)


@pytest.fixture
def timed(settings, tmp_path):
    """Starts a schedd with its timers running (as services.runtime.service.run starts it);
    gives (bus, store, demand snapshots)."""
    buses = []

    def start(periodic_interval_s: float):
        bus = connect(settings, "schedd", memory=True)
        store = Store(tmp_path / "timed.db")
        schedd = Schedd("s1", store, bus, periodic_interval_s=periodic_interval_s)
        snapshots = Inbox()
        for sub in [*schedd.subscriptions(), Subscription("watch", events={
                "demand.autoclusters": lambda m, c: snapshots.add(m)})]:
            bus.subscribe(sub)
        bus.start()
        bus.call_soon_threadsafe(schedd.started)
        buses.append(bus)
        return bus, store, snapshots

    yield start
    for bus in buses:
        bus.stop()


def submit_one(bus, ad: str) -> None:
    cluster = bus.call(J.ClusterNew(owner="alice"), to="s1").cluster
    bus.call(J.JobSubmit(cluster=cluster, owner="alice", submit_file="x.sub",
                         procs=[J.ProcAd(0, ad)]), to="s1")


def test_the_periodic_timer_runs_at_the_configured_interval(timed, tmp_path):
    bus, store, _ = timed(periodic_interval_s=0.05)
    submit_one(bus, job_ad(tmp_path, PeriodicRemove=True))
    wait_until(lambda: store.read("SELECT state FROM jobs")[0]["state"] == "removed", 5.0,
               "the periodic timer's remove")


def test_a_deferred_job_becomes_demand_when_its_time_comes(timed, tmp_path):
    bus, _, snapshots = timed(periodic_interval_s=3600)
    submit_one(bus, job_ad(tmp_path, DeferralTime=classad2.ExprTree("QDate + 1")))
    snapshots.wait_for(lambda inbox: inbox.items and not inbox.items[-1].autoclusters,
                       what="a snapshot without it")  # not demand yet
    # no message comes in between: the demand timer knows when the deferral ends (else the
    # next snapshot would be the 15 s refresh)
    snapshots.wait_for(lambda inbox: inbox.items[-1].autoclusters
                       and inbox.items[-1].autoclusters[0].idle == 1, timeout=5.0,
                       what="a snapshot with it idle")


def test_a_deferred_job_is_no_demand_and_not_matched_until_its_time(h, tmp_path):
    h.submit([job_ad(tmp_path, DeferralTime=classad2.ExprTree("QDate + 3600")),
              job_ad(tmp_path, DeferralTime=classad2.ExprTree("QDate - 1"))])
    (ac,) = h.demand().autoclusters
    assert (ac.idle, ac.running) == (1, 0)
    h.offer(ac.id, n=2)
    (activation,) = h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    assert activation.job_id == "1.1"
    jobs = h.q()
    assert jobs["1.0"].state == "idle" and jobs["1.0"].idle_reason.startswith("deferred until ")
    assert h.schedd.demand(now=time.time() + 3601)[0].idle == 1  # then it is demand


def test_a_deferral_time_that_is_no_time_refuses_the_submission(h, tmp_path):
    with pytest.raises(RemoteError, match="job 1.0: DeferralTime NoSuchAttribute is not a time"):
        h.submit([job_ad(tmp_path, DeferralTime=classad2.ExprTree("NoSuchAttribute"))])
    assert h.q() == {}
