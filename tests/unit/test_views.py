"""The views folded from events (services/views): the collector view, its tallies, the
series over time, the events kept per job, and the filters of `burst events`."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas.job import JobCompleted, JobHeld, JobMatched, JobRunning, JobSubmitted
from schemas.pilot import PilotExited, PilotLaunched, PilotLost, PilotRegistered, PilotRetiring
from schemas.provisioning import EntryAdvertised
from schemas.slot import SlotAdvertised
from services.runtime import codec
from services.views import EventFilter, PoolView, Series, Timeline
from services.views.pool import vm_state


def fold(events) -> PoolView:
    view = PoolView()
    for event in events:
        view.apply(event)
    return view


def entry(name="e1", provider="aws", ad="[]"):
    return EntryAdvertised(entry=name, site="S", driver="ec2", provider=provider, factory="f",
                           ad=ad)


def launched(pilot_id, entry="e1", provider="aws", time=0.0):
    return PilotLaunched(pilot_id=pilot_id, entry=entry, site="S", factory="f", driver="ec2",
                         provider=provider, time=time)


def registered(pilot_id, entry="e1", time=0.0):
    return PilotRegistered(pilot_id=pilot_id, entry=entry, site="S", provider="aws", cpus=4,
                           memory_mb=1, disk_mb=1, time=time)


def slot(pilot_id, state, claims, free_cpus, entry="e1", time=0.0):
    return SlotAdvertised(pilot_id=pilot_id, ad="[]", state=state, free_cpus=free_cpus,
                          free_memory_mb=0, free_disk_mb=0, claims=claims, entry=entry,
                          time=time)


def running(job_id, entry="e1", pilot="p1"):
    return JobRunning(schedd="s", job_id=job_id, owner="a", pilot_id=pilot, entry=entry)


def test_pilots_move_through_their_states_per_entry():
    view = fold([
        entry(), launched("p1"), launched("p2"), launched("p3"), launched("p4"),
        registered("p2"), slot("p2", "busy", ["c1", "c2"], 2),
        registered("p3"), slot("p3", "idle", [], 4),
        PilotExited(pilot_id="p4", entry="e1", reason="idle"),
    ])
    assert view.pilot_counts("e1") == {"pending": 1, "busy": 1, "idle": 1, "exited": 1}
    assert view.slots() == {"claimed": 2, "unclaimed": 2}
    assert view.vms() == {"aws": {"pending": 1, "running": 2, "terminated": 1}}
    (row,) = view.entry_rows()
    assert row["name"] == "e1" and row["pilots"]["busy"] == 1


def test_a_lost_pilot_keeps_nothing_claimed():
    view = fold([launched("p1"), slot("p1", "busy", ["c1"], 0),
                 PilotLost(pilot_id="p1", entry="e1", reason="gone")])
    assert view.pilot_counts("e1") == {"lost": 1}
    assert view.slots() == {"claimed": 0, "unclaimed": 0}


def test_jobs_are_counted_by_their_latest_state_and_where_they_run():
    view = fold([
        JobSubmitted(schedd="s", cluster=1, jobs=["1.0", "1.1", "1.2"], owner="a"),
        running("1.0", entry="e1"), running("1.1", entry="e2"),
        JobCompleted(schedd="s", job_id="1.1", owner="a", exit_code=3, entry="e2"),
    ])
    assert view.job_counts() == {"idle": 1, "running": 1, "completed": 1, "held": 0,
                                 "removed": 0}
    assert view.running_jobs_by_entry() == {"e1": 1}
    assert view.jobs["1.1"].exit_code == 3 and view.jobs["1.0"].owner == "a"


def test_a_job_id_submitted_again_belongs_to_a_new_queue_and_starts_idle():
    submitted = JobSubmitted(schedd="s", cluster=1, jobs=["1.0"], owner="a")
    view = fold([submitted, running("1.0"), submitted])
    assert view.job_counts()["running"] == 0 and view.job_counts()["idle"] == 1
    assert view.running_jobs_by_entry() == {}


def recount(view: PoolView) -> dict:
    """The counts computed from scratch, to check the running tallies against."""
    live = [p for p in view.pilots.values() if p.state in ("idle", "busy", "retiring")]
    vms: dict = {}
    for p in view.pilots.values():
        vms.setdefault(p.provider or "unknown", Counter())[vm_state(p.state)] += 1
    return {
        "pilots": {e: dict(Counter(p.state for p in view.pilots.values() if p.entry == e))
                   for e in ("e1", "e2")},
        "slots": {"claimed": sum(p.claims for p in live),
                  "unclaimed": sum(1 for p in live if p.free_cpus > 0 and p.state != "retiring")},
        "jobs": {**dict.fromkeys(("idle", "running", "completed", "held", "removed"), 0),
                 **Counter(j.state for j in view.jobs.values())},
        "running_at": dict(Counter(j.entry for j in view.jobs.values() if j.state == "running")),
        "vms": {k: dict(v) for k, v in sorted(vms.items())},
    }


def tallied(view: PoolView) -> dict:
    return {"pilots": {e: view.pilot_counts(e) for e in ("e1", "e2")}, "slots": view.slots(),
            "jobs": view.job_counts(), "running_at": view.running_jobs_by_entry(),
            "vms": view.vms()}


@pytest.mark.parametrize("seed", range(5))
def test_the_running_tallies_always_equal_a_recount(seed):
    rng = random.Random(seed)
    pilots, jobs = [f"p{i}" for i in range(6)], [f"1.{i}" for i in range(8)]
    view = PoolView()
    view.apply(JobSubmitted(schedd="s", cluster=1, jobs=jobs, owner="a"))
    makers = [
        lambda p, e: launched(p, e),
        lambda p, e: registered(p, e),
        lambda p, e: slot(p, rng.choice(["idle", "busy", "retiring"]),
                          [f"c{i}" for i in range(rng.randint(0, 3))], rng.randint(0, 2), e),
        lambda p, e: PilotRetiring(pilot_id=p, entry=e, reason="r"),
        lambda p, e: PilotExited(pilot_id=p, entry=e, reason="r"),
        lambda p, e: PilotLost(pilot_id=p, entry=e, reason="r"),
        lambda p, e: running(rng.choice(jobs), e, p),
        lambda p, e: JobCompleted(schedd="s", job_id=rng.choice(jobs), owner="a", exit_code=0),
        lambda p, e: JobHeld(schedd="s", job_id=rng.choice(jobs), owner="a", reason="r"),
        lambda p, e: JobSubmitted(schedd="s", cluster=1, jobs=[rng.choice(jobs)], owner="a"),
    ]
    for _ in range(300):
        pilot = rng.choice(pilots)
        view.apply(rng.choice(makers)(pilot, "e1" if pilot < "p3" else "e2"))
        assert tallied(view) == recount(view)


def test_launch_latency_runs_from_launched_to_registered():
    view = fold([launched("p1", time=100.0), registered("p1", time=112.5),
                 registered("p1", time=130.0),  # a second registration changes nothing
                 registered("p2", time=140.0)])  # launched before the window: no latency
    (launch,) = view.launches
    assert (launch.pilot_id, launch.entry, launch.launched_at, launch.seconds) == \
        ("p1", "e1", 100.0, 12.5)


def test_cost_counts_pilot_hours_at_the_price_an_entry_ad_carries():
    view = fold([
        entry("e1", ad="[ CloudPricePerHour = 0.5; GLIDEIN_Site = \"S\" ]"), entry("e2"),
        launched("p1", "e1", time=1000.0), PilotExited(pilot_id="p1", entry="e1", reason="r",
                                                       time=1000.0 + 7200),
        launched("p2", "e1", time=10000.0),
        launched("p3", "e2", time=1000.0),
    ])
    assert view.prices == {"e1": 0.5, "e2": None}
    cost = view.cost(now=10000.0 + 1800)
    assert cost["e1"] == pytest.approx(0.5 * 2 + 0.5 * 0.5)
    assert cost["e2"] is None  # no price known: unknown, not free


def test_a_price_that_is_no_number_is_unknown():
    view = fold([entry("e1", ad='[ CloudPricePerHour = "cheap" ]')])
    assert view.prices == {"e1": None} and view.cost(0.0) == {"e1": None}


def test_series_keeps_one_point_per_change_and_never_steps_back_in_time():
    view, series = PoolView(), Series()
    for t, event in [(10.0, launched("p1")), (11.0, registered("p1")),
                     (11.5, slot("p1", "busy", ["c1"], 3)),
                     (11.7, slot("p1", "busy", ["c1"], 3)),  # same counts: no point
                     (12.0, slot("p1", "idle", [], 4)),
                     (11.8, slot("p1", "busy", ["c2"], 3))]:  # another host's clock, behind
        view.apply(event, t)
        series.record(t, view)
    points = list(series.points)
    assert [(p.t, p.vms_pending, p.vms_running, p.claimed) for p in points] == [
        (10.0, 1, 0, 0), (11.0, 0, 1, 0), (11.5, 0, 1, 1), (12.0, 0, 1, 0), (12.0, 0, 1, 1)]
    since = series.since(11.6)
    assert [(p.t, p.claimed, p.vms_running) for p in since] == [
        (11.6, 1, 1), (12.0, 0, 1), (12.0, 1, 1)]


def envelope(event):
    return codec.encode(event)


def test_the_timeline_keeps_the_feed_and_each_jobs_own_events():
    timeline = Timeline(feed_size=3)
    events = [JobSubmitted(schedd="s", cluster=1, jobs=["1.0", "1.1"], owner="a"),
              launched("p1", time=5.0), running("1.1", pilot="p1"),
              JobCompleted(schedd="s", job_id="1.1", owner="a", exit_code=0)]
    for event in events:
        timeline.apply(envelope(event))
    assert [r["key"] for r in timeline.job_events["1.1"]] == [
        "job.submitted.v1", "job.running.v1", "job.completed.v1"]
    assert [r["key"] for r in timeline.job_events["1.0"]] == ["job.submitted.v1"]
    assert [r["seq"] for r, _e in timeline.feed] == [2, 3, 4]
    record, _event = timeline.feed[-1]
    assert record["job_id"] == "1.1" and "exit_code=0" in record["summary"]
    assert timeline.pool.job_counts()["completed"] == 1


def test_an_undecodable_event_is_kept_in_the_feed_and_changes_no_view():
    from services.runtime.codec import Envelope

    timeline = Timeline()
    record, event = timeline.apply(Envelope("job.running", 9, b"\xc1", "m1",
                                            routing_key="job.running.v9"))
    assert event is None and record["summary"] == "(undecodable)"
    assert timeline.pool.job_counts()["running"] == 0 and not timeline.series.points


MATCHED = JobMatched(schedd="s", job_id="12.3", owner="alice", claim_id="c", pilot_id="p1",
                     entry="e1")
SUBMITTED = JobSubmitted(schedd="s", cluster=12, jobs=["12.0", "12.3"], owner="alice")
PILOT = launched("p1", "e1")


@pytest.mark.parametrize(("wanted", "matches"), [
    (EventFilter(), [MATCHED, SUBMITTED, PILOT]),
    (EventFilter.of(entity=["job"]), [MATCHED, SUBMITTED]),
    (EventFilter.of(entity=["job", "pilot"]), [MATCHED, SUBMITTED, PILOT]),  # OR within
    (EventFilter.of(key=["*.launched.*"]), [PILOT]),
    (EventFilter.of(entry=["e1"]), [MATCHED, PILOT]),  # a submission has no entry
    (EventFilter.of(owner=["alice"]), [MATCHED, SUBMITTED]),  # a pilot has no owner
    (EventFilter.of(job=["12.3"]), [MATCHED, SUBMITTED]),
    (EventFilter.of(job=["12"]), [MATCHED, SUBMITTED]),  # a whole cluster
    (EventFilter.of(job=["1"]), []),  # 12.3 is not in cluster 1
    (EventFilter.of(entry=["e1"], owner=["alice"]), [MATCHED]),  # AND across
    (EventFilter.of(entity=["pilot"], owner=["alice"]), []),
])
def test_event_filters(wanted, matches):
    from schemas import routing_key

    assert [e for e in (MATCHED, SUBMITTED, PILOT) if wanted.matches(routing_key(e), e)] == \
        matches


def test_filters_from_a_query_string_and_an_undecodable_event():
    from urllib.parse import parse_qs

    wanted = EventFilter.from_query(parse_qs("entity=job&entity=pilot&owner=bob"))
    assert wanted == EventFilter(entities=("job", "pilot"), owners=("bob",))
    assert not wanted.matches("job.matched.v1", None)  # no fields to check the owner on
    assert EventFilter.of(entity=["job"]).matches("job.matched.v9", None)


def test_a_lost_connection_resumes_at_the_last_second_without_repeats(monkeypatch):
    from services.runtime.codec import Envelope
    from services.views import stream

    monkeypatch.setattr(stream, "RETRY_S", (0.0,))
    log = [Envelope("t", 1, b"", f"m{i}", timestamp=ts) for i, ts in enumerate([5, 6, 6, 7])]
    calls = []

    def history(since, follow, idle_timeout):
        calls.append((since, follow))
        for env in log:
            if since is None or env.timestamp >= since:
                yield env
                if len(calls) == 1 and env.message_id == "m1":
                    raise ConnectionError("broker went away")  # mid-backlog
        if follow:
            raise KeyboardInterrupt  # the end of the test

    seen = []
    with pytest.raises(KeyboardInterrupt):
        for env in stream.replay_then_follow(history, None):
            seen.append(env.message_id if env is not stream.CAUGHT_UP else "caught up")
    assert seen == ["m0", "m1", "m2", "m3", "caught up"]
    assert calls == [(None, False), (6, False), (7, True)]


def test_a_command_hears_of_a_missing_broker_before_the_backlog_at_once():
    from services.views import stream

    def history(since, follow, idle_timeout):
        raise ConnectionError("no broker")
        yield

    with pytest.raises(ConnectionError):
        next(stream.replay_then_follow(history, None, patient=False))
