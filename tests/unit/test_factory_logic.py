"""Factory reconcile decisions: what an operator sees launched, retired, killed."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.provisioning import GlideinRequest
from services.factory.logic import (
    EntryPolicy,
    Pilot,
    client_name,
    decide_entry,
)

ROOMY = EntryPolicy(max_pilots=1000, max_launch_per_cycle=1000)
MAIN = client_name("fe", "main")
OTHER = client_name("fe", "other")


def request(idle_target, max_glideins=1000, remove="NO", group="main", seq=1):
    return GlideinRequest(
        frontend="fe",
        group=group,
        entry="aws-east",
        idle_target=idle_target,
        max_glideins=max_glideins,
        remove_excess=remove,
        seq=seq,
    )


def pilots(state, n, client=MAIN, prefix=None, age_s=10.0, state_age_s=10.0):
    prefix = prefix or f"{client}-{state}"
    return [Pilot(f"{prefix}{i}", client, state, age_s, state_age_s) for i in range(n)]


# ----------------------------------------------------------------------- launch


def test_launches_up_to_the_idle_target():
    actions = decide_entry([request(10)], pilots("idle", 3), ROOMY)
    assert actions.launch == {MAIN: 7}
    assert (actions.retire, actions.kill) == ((), ())


def test_pending_pilots_count_as_waiting():
    actions = decide_entry([request(10)], pilots("pending", 4) + pilots("idle", 6), ROOMY)
    assert actions.launch == {}
    assert actions.nothing_to_do


def test_busy_pilots_do_not_count_as_waiting():
    actions = decide_entry([request(10)], pilots("busy", 50), ROOMY)
    assert actions.launch == {MAIN: 10}


def test_never_more_than_max_glideins_for_the_group():
    actions = decide_entry([request(10, max_glideins=12)], pilots("busy", 8), ROOMY)
    assert actions.launch == {MAIN: 4}


def test_never_more_than_max_pilots_for_the_entry():
    policy = EntryPolicy(max_pilots=10, max_launch_per_cycle=100)
    existing = pilots("busy", 6, client=OTHER)
    actions = decide_entry([request(10)], existing, policy)
    assert actions.launch == {MAIN: 4}
    assert "room 4 of max_pilots 10" in actions.reason


def test_lost_pilots_free_their_place():
    policy = EntryPolicy(max_pilots=10, max_launch_per_cycle=100)
    actions = decide_entry([request(10)], pilots("lost", 10), policy)
    assert actions.launch == {MAIN: 10}


def test_launches_are_rate_limited_per_cycle():
    policy = EntryPolicy(max_pilots=1000, max_launch_per_cycle=5)
    assert decide_entry([request(50)], [], policy).launch == {MAIN: 5}


def test_rate_limit_is_shared_fairly_between_groups():
    policy = EntryPolicy(max_pilots=1000, max_launch_per_cycle=10)
    actions = decide_entry([request(50), request(2, group="other")], [], policy)
    assert actions.launch == {OTHER: 2, MAIN: 8}
    actions = decide_entry([request(50), request(40, group="other")], [], policy)
    assert actions.launch == {OTHER: 5, MAIN: 5}


def test_no_launch_before_the_launch_interval():
    policy = EntryPolicy(max_pilots=100, max_launch_per_cycle=10, launch_interval_s=30.0)
    assert decide_entry([request(5)], [], policy, since_last_launch_s=12.0).launch == {}
    assert decide_entry([request(5)], [], policy, since_last_launch_s=30.0).launch == {MAIN: 5}
    assert decide_entry([request(5)], [], policy, since_last_launch_s=None).launch == {MAIN: 5}


def test_a_zero_max_pilots_entry_launches_nothing():
    assert decide_entry([request(5)], [], EntryPolicy(max_pilots=0)).launch == {}


def test_newest_request_of_a_group_wins():
    actions = decide_entry([request(2, seq=5), request(9, seq=4)], [], ROOMY)
    assert actions.launch == {MAIN: 2}


def test_group_without_request_is_left_alone():
    actions = decide_entry([], pilots("idle", 5, client=OTHER), ROOMY)
    assert actions.nothing_to_do


# ---------------------------------------------------------------------- removal


def test_no_mode_keeps_surplus_pilots():
    actions = decide_entry([request(0, 0, "NO")], pilots("idle", 5) + pilots("pending", 2), ROOMY)
    assert actions.retire == ()


def test_demand_gone_retires_idle_and_pending_never_busy():
    mine = pilots("idle", 3) + pilots("pending", 2) + pilots("busy", 4) + pilots("retiring", 1)
    actions = decide_entry([request(0, max_glideins=5, remove="IDLE")], mine, ROOMY)
    retired = set(actions.retire)
    assert retired == {p.pilot_id for p in mine if p.state in ("idle", "pending")}
    assert actions.launch == {}


def test_idle_mode_retires_only_down_to_the_target():
    mine = pilots("idle", 6)
    actions = decide_entry([request(4, remove="IDLE")], mine, ROOMY)
    assert len(actions.retire) == 2


def test_max_glideins_zero_with_idle_retires_every_idle_pilot():
    mine = pilots("idle", 4) + pilots("busy", 2)
    actions = decide_entry([request(0, max_glideins=0, remove="IDLE")], mine, ROOMY)
    assert sorted(actions.retire) == sorted(p.pilot_id for p in mine if p.state == "idle")


def test_wait_mode_cancels_only_pending_pilots():
    mine = pilots("pending", 5) + pilots("idle", 5)
    actions = decide_entry([request(2, remove="WAIT")], mine, ROOMY)
    assert sorted(actions.retire) == sorted(p.pilot_id for p in mine if p.state == "pending")


def test_all_mode_retires_idle_and_pending_but_lets_busy_finish():
    mine = pilots("pending", 2) + pilots("idle", 2) + pilots("busy", 3)
    actions = decide_entry([request(5, remove="ALL")], mine, ROOMY)
    assert len(actions.retire) == 4
    assert not any("busy" in pilot_id for pilot_id in actions.retire)
    assert actions.launch == {}


def test_removal_touches_only_the_requesting_group():
    mine = pilots("idle", 3)
    theirs = pilots("idle", 3, client=OTHER)
    actions = decide_entry([request(0, 0, "IDLE"), request(3, group="other")], mine + theirs, ROOMY)
    assert sorted(actions.retire) == sorted(p.pilot_id for p in mine)


def test_pending_go_first_youngest_first_then_longest_idle():
    mine = [
        Pilot("idle-new", MAIN, "idle", age_s=500, state_age_s=5),
        Pilot("idle-old", MAIN, "idle", age_s=500, state_age_s=400),
        Pilot("pending-old", MAIN, "pending", age_s=200),
        Pilot("pending-new", MAIN, "pending", age_s=20),
    ]
    actions = decide_entry([request(0, 0, "IDLE")], mine, ROOMY)
    assert actions.retire == ("pending-new", "pending-old", "idle-old", "idle-new")
    partial = decide_entry([request(1, remove="IDLE")], mine, ROOMY)
    assert partial.retire == ("pending-new", "pending-old", "idle-old")


def test_unknown_remove_mode_removes_nothing():
    actions = decide_entry([request(0, 0, "EVERYTHING")], pilots("idle", 3), ROOMY)
    assert actions.retire == ()


def test_lowering_max_pilots_drains_idle_pilots_of_any_group():
    mine = pilots("idle", 3) + pilots("busy", 2)
    theirs = pilots("pending", 2, client=OTHER)
    actions = decide_entry([request(3)], mine + theirs, EntryPolicy(max_pilots=4))
    assert len(actions.retire) == 3  # 7 pilots, 2 busy stay
    assert set(actions.retire) >= {p.pilot_id for p in theirs}
    assert actions.launch == {}


# ------------------------------------------------------------------------- kill


def test_pilots_that_never_registered_are_killed():
    policy = EntryPolicy(max_pilots=100, max_launch_per_cycle=100, pending_timeout_s=300)
    stuck = pilots("pending", 2, prefix="stuck", age_s=301)
    fresh = pilots("pending", 1, prefix="fresh", age_s=30)
    actions = decide_entry([request(3)], stuck + fresh, policy)
    assert actions.kill == ("stuck0", "stuck1")
    assert actions.launch == {MAIN: 2}  # replace them: they will never take a job


def test_held_pilots_are_killed_after_their_grace():
    policy = EntryPolicy(held_grace_s=600)
    held = [
        Pilot("held-long", MAIN, "held", age_s=900, state_age_s=700),
        Pilot("held-just", MAIN, "held", age_s=900, state_age_s=100),
    ]
    actions = decide_entry([request(0)], held + pilots("busy", 2, age_s=9999), policy)
    assert actions.kill == ("held-long",)


def test_killed_pilots_still_hold_their_place_under_max_glideins():
    policy = EntryPolicy(max_pilots=100, max_launch_per_cycle=100, pending_timeout_s=60)
    stuck = pilots("pending", 4, age_s=61)
    actions = decide_entry([request(4, max_glideins=5)], stuck, policy)
    assert actions.launch == {MAIN: 1}


def test_killed_pilots_are_not_also_retired():
    policy = EntryPolicy(pending_timeout_s=60)
    stuck = pilots("pending", 2, age_s=61)
    actions = decide_entry([request(0, 0, "IDLE")], stuck, policy)
    assert actions.retire == ()
    assert len(actions.kill) == 2


# ---------------------------------------------------------------------- config


def test_policy_from_runtime_entry_config():
    @dataclass(frozen=True)
    class Limits:
        max_pilots: int = 3
        max_launch_per_cycle: int = 2
        pending_timeout_s: float = 99.0

    @dataclass(frozen=True)
    class Entry:
        limits: Limits = Limits()

    policy = EntryPolicy.from_config(Entry())
    assert (policy.max_pilots, policy.max_launch_per_cycle, policy.pending_timeout_s) == (
        3,
        2,
        99.0,
    )
    assert policy.held_grace_s == EntryPolicy().held_grace_s
