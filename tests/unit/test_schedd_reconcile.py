"""Claim reconciliation: a job claimed to a pilot whose slot ad no longer lists it waits again
at once, not when the pilot retires; ads older than the claim, and other pilots' ads, change
nothing."""

from __future__ import annotations

import time

import pytest

from schemas import job as J
from schemas.slot import JobKill, SlotAdvertised
from services.condor.claims import claim_digest
from services.runtime import codec, security
from services.runtime.bus import Context
from services.schedd import logic
from services.schedd.logic import Job
from tests.unit.test_schedd import Harness, job_ad

NOW = 1_700_000_000.0
GRACE = 10.0


def claimed(state: str = "running", matched_at: float = NOW - 60, **fields) -> Job:
    return Job(**{"cluster": 3, "proc": 1, "owner": "alice", "state": state,
                  "claim_id": "claim-secret", "pilot_id": "p1", "matched_at": matched_at,
                  **fields})


def ad(pilot: str = "p1", made: float = NOW, jobs: tuple[str, ...] = (),
       claims: tuple[str, ...] = ()) -> SlotAdvertised:
    return SlotAdvertised(pilot_id=pilot, ad="[]", state="busy", free_cpus=1, free_memory_mb=1,
                          free_disk_mb=1, claims=list(claims), time=made, jobs=list(jobs))


def reconcile(job: Job, slot: SlotAdvertised, received_at: float = NOW) -> logic.Plan:
    return logic.reconcile(job, slot, received_at=received_at, grace_s=GRACE, schedd="s1")


@pytest.mark.parametrize("state", ["running", "idle"])
def test_a_claimed_job_the_ad_does_not_list_is_requeued_and_killed_on_the_pilot(state):
    plan = reconcile(claimed(state), ad(jobs=("3.0", "9.9")))
    assert plan.changes["state"] == "idle" and plan.changes["claim_id"] is None
    (requeued,) = plan.events
    assert isinstance(requeued, J.JobRequeued)
    assert requeued.reason == "pilot p1 no longer runs it"
    ((kill, pilot),) = plan.commands
    assert isinstance(kill, JobKill) and (kill.job_id, pilot) == ("3.1", "p1")


def test_a_job_listed_by_id_or_by_its_claim_digest_stays():
    assert reconcile(claimed(), ad(jobs=("3.1",))).refused
    # A pilot that does not list jobs yet still advertises its claims' digests.
    assert reconcile(claimed(), ad(claims=(claim_digest("claim-secret"),))).refused


def test_an_ad_made_within_the_grace_after_the_activation_changes_nothing():
    fresh = claimed(matched_at=NOW - GRACE + 1)
    assert "too recently" in reconcile(fresh, ad()).refused
    assert not reconcile(claimed(matched_at=NOW - GRACE - 1), ad()).refused


def test_a_pilot_clock_ahead_of_ours_does_not_make_an_old_ad_look_new():
    job = claimed(matched_at=NOW - 1)
    assert reconcile(job, ad(made=NOW + 3600), received_at=NOW).refused
    assert reconcile(job, ad(made=0.0), received_at=NOW).refused  # no time: its arrival


def test_only_jobs_claimed_to_that_pilot_in_a_live_state_are_touched():
    assert reconcile(claimed(pilot_id="p2"), ad()).refused
    assert reconcile(claimed(claim_id=None), ad()).refused
    for state in ("held", "completed", "removed"):
        assert reconcile(claimed(state), ad()).refused


# --- the schedd on the in-memory bus --------------------------------------------------------


class Pool(Harness):
    """test_schedd's harness, with a job running on p1 and p1's slot ads."""

    def running_job(self) -> None:
        self.submit([job_ad(self.tmp_path)])
        self.offer(self.demand().autoclusters[0].id)
        self.pilot_inbox.wait_for(lambda inbox: len(inbox) == 1)
        self.report("1.0", "c0", "running")

    def advertise(self, jobs: list[str], made: float) -> None:
        self.bus.emit(SlotAdvertised(pilot_id="p1", ad="[]", state="busy", free_cpus=0,
                                     free_memory_mb=0, free_disk_mb=0, time=made, jobs=jobs))
        self.bus.wait_idle()

    def activated_a_minute_ago(self) -> None:
        with self.store.transaction() as tx:
            tx.execute("UPDATE jobs SET matched_at = matched_at - 60")

    def state(self) -> str:
        return self.q()["1.0"].state

    def processed(self) -> int:
        return self.store.read("SELECT COUNT(*) AS n FROM processed")[0]["n"]


@pytest.fixture
def pool(settings, tmp_path):
    pool = Pool(settings, tmp_path)
    pool.running_job()
    yield pool
    pool.bus.stop()


def requeued(pool: Pool) -> list[J.JobRequeued]:
    return [e for e in pool.events.items if isinstance(e, J.JobRequeued)]


def test_a_running_job_its_pilot_stops_listing_is_requeued_at_once(pool):
    before = pool.processed()
    pool.advertise(["1.0"], made=time.time() + 60)  # heartbeats that list it: nothing happens
    pool.advertise([], made=time.time() - 60)  # an ad from before the activation: too old
    assert pool.state() == "running" and requeued(pool) == []
    assert pool.processed() == before  # heartbeats leave no trace in the queue file
    pool.activated_a_minute_ago()
    pool.advertise([], made=time.time())
    assert pool.state() == "idle"
    (event,) = requeued(pool)
    assert event.reason == "pilot p1 no longer runs it"
    kill = pool.pilot_inbox.wait_for(lambda inbox: len(inbox) == 2)[1]
    assert isinstance(kill, JobKill) and kill.job_id == "1.0"


def test_an_ad_about_p1_signed_by_another_pilot_is_ignored(pool):
    pool.activated_a_minute_ago()
    slot = ad(pilot="p1", made=time.time())
    envelope = codec.encode(slot)
    for signer in (security.pilot("p2"), security.service("factory")):
        pool.schedd.on_slot(slot, Context(pool.bus, envelope, "q", principal=signer))
    assert pool.state() == "running"
    pool.schedd.on_slot(slot, Context(pool.bus, envelope, "q", principal=security.pilot("p1")))
    assert pool.state() == "idle"
