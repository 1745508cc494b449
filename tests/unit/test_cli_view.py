"""The collector view folded from events, and the CLI's time parsing."""

from __future__ import annotations

import time

import pytest

from schemas.job import JobCompleted, JobRunning, JobSubmitted
from schemas.pilot import PilotExited, PilotLaunched, PilotLost, PilotRegistered
from schemas.provisioning import EntryAdvertised
from schemas.slot import SlotAdvertised
from services.cli.main import Failure
from services.cli.output import parse_since
from services.cli.view import PoolView


def fold(events) -> PoolView:
    view = PoolView()
    for event in events:
        view.apply(event)
    return view


def launched(pilot_id, entry="e1", provider="aws"):
    return PilotLaunched(pilot_id=pilot_id, entry=entry, site="S", factory="f", driver="ec2",
                         provider=provider)


def slot(pilot_id, state, claims, free_cpus, entry="e1"):
    return SlotAdvertised(pilot_id=pilot_id, ad="[]", state=state, free_cpus=free_cpus,
                          free_memory_mb=0, free_disk_mb=0, claims=claims, entry=entry)


def test_pilots_move_through_their_states_per_entry():
    view = fold([
        EntryAdvertised(entry="e1", site="S", driver="ec2", provider="aws", factory="f", ad="[]"),
        launched("p1"), launched("p2"), launched("p3"), launched("p4"),
        PilotRegistered(pilot_id="p2", entry="e1", site="S", provider="aws", cpus=4,
                        memory_mb=1, disk_mb=1),
        slot("p2", "busy", ["c1", "c2"], 2),
        PilotRegistered(pilot_id="p3", entry="e1", site="S", provider="aws", cpus=4,
                        memory_mb=1, disk_mb=1),
        slot("p3", "idle", [], 4),
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


def test_jobs_are_counted_by_their_latest_state():
    view = fold([
        JobSubmitted(schedd="s", cluster=1, jobs=["1.0", "1.1", "1.2"]),
        JobRunning(schedd="s", job_id="1.0", owner="a", pilot_id="p"),
        JobRunning(schedd="s", job_id="1.1", owner="a", pilot_id="p"),
        JobCompleted(schedd="s", job_id="1.1", owner="a", exit_code=0),
    ])
    assert view.job_counts() == {"idle": 1, "running": 1, "completed": 1, "held": 0,
                                 "removed": 0}


@pytest.mark.parametrize(("text", "age"), [("30s", 30), ("10m", 600), ("2h", 7200),
                                           ("1d", 86400)])
def test_since_accepts_ages(text, age):
    assert abs(parse_since(text) - (time.time() - age)) < 2


def test_since_accepts_epoch_and_iso_times():
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2023-11-14T22:13:20Z") == 1700000000.0


def test_since_starts_at_the_whole_second_so_no_event_inside_is_dropped():
    stamped = 1700000000  # the AMQP timestamp of an event published at 1700000000.9
    assert stamped >= parse_since("1700000000.5")
    assert stamped >= parse_since("2023-11-14T22:13:20.5Z")
    assert stamped < parse_since("1700000001")  # a window from the next second leaves it out
    age = parse_since("1s")
    assert age.is_integer() and time.time() - 3 < age <= time.time() - 1


def test_since_rejects_nonsense_with_a_usage_error():
    with pytest.raises(Failure) as err:
        parse_since("yesterday-ish")
    assert err.value.exit_code == 2 and "--since" in err.value.message
