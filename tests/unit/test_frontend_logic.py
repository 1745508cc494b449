"""Frontend request math: the numbers an operator sees in glidein.request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from schemas.demand import AutoCluster
from schemas.provisioning import EntryAdvertised, GlideinRequest
from services.frontend.logic import (
    EntryInfo,
    GroupLimits,
    GroupPolicy,
    Matcher,
    PilotCounts,
    fair_share,
    glidein_request,
    plan_group,
)

# Ramp out of the way unless a test is about the ramp.
NO_RAMP = GroupLimits(ramp_step=100_000)
POLICY = GroupPolicy("main", trust_domains=frozenset({"aws", "gcp"}), limits=NO_RAMP)


def entry(name, site=None, cpus=4, memory_mb=16000, trust_domain="aws", arch="X86_64"):
    site = site or name
    ad = (
        f'[Cpus = {cpus}; Memory = {memory_mb}; GLIDEIN_Site = "{site}"; '
        f'GLIDEIN_Entry_Name = "{name}"; Arch = "{arch}"; CloudProvider = "{trust_domain}"]'
    )
    return EntryInfo(name, site, ad, trust_domain, cpus, memory_mb)


def autocluster(
    ac_id="1",
    idle=40,
    cpus=1,
    memory=1000,
    requirements="TARGET.Cpus >= RequestCpus && TARGET.Memory >= RequestMemory",
    desired_sites="",
):
    ad = (
        f'[Owner = "alice"; RequestCpus = {cpus}; RequestMemory = {memory}; '
        f"Requirements = {requirements}]"
    )
    return AutoCluster(ac_id, "alice", ad, idle, 0, desired_sites)


def plan(autoclusters, entries, pilots=None, policy=POLICY, previous=None, matcher=None):
    return plan_group(policy, {"schedd1": autoclusters}, entries, pilots or {}, previous, matcher)


def with_limits(**limits):
    return GroupPolicy("main", trust_domains=POLICY.trust_domains, limits=GroupLimits(**limits))


# ------------------------------------------------------------------ demand math


def test_forty_one_cpu_jobs_need_ten_four_cpu_pilots():
    request = plan([autocluster(idle=40)], [entry("aws-east")]).requests["aws-east"]
    assert (request.demand_pilots, request.idle_target, request.new_pilots) == (10, 10, 10)
    assert request.max_glideins == 10
    assert request.remove_excess == "NO"


def test_jobs_split_evenly_between_two_matching_entries():
    result = plan(
        [autocluster(idle=40)], [entry("aws-east"), entry("gcp-west", trust_domain="gcp")]
    )
    assert result.requests["aws-east"].idle_target == 5
    assert result.requests["gcp-west"].idle_target == 5
    assert result.requests["aws-east"].idle_jobs == pytest.approx(20.0)
    assert result.matched == {"schedd1": {"1": ("aws-east", "gcp-west")}}


def test_three_idle_pilots_already_there_means_seven_more():
    pilots = {"aws-east": PilotCounts(idle=3)}
    request = plan([autocluster(idle=40)], [entry("aws-east")], pilots).requests["aws-east"]
    assert request.idle_target == 10  # waiting pilots wanted in all...
    assert request.new_pilots == 7  # ... of which the factory launches this many


def test_pending_and_idle_pilots_both_cover_demand():
    pilots = {"aws-east": PilotCounts(pending=6, idle=4)}
    request = plan([autocluster(idle=40)], [entry("aws-east")], pilots).requests["aws-east"]
    assert request.new_pilots == 0


def test_memory_limits_jobs_per_pilot():
    # 4 cpus but 8000 MB: only two 4000 MB jobs fit in one pilot.
    request = plan(
        [autocluster(idle=40, memory=4000)], [entry("aws-east", memory_mb=8000)]
    ).requests["aws-east"]
    assert request.demand_pilots == 20


def test_fractions_of_pilots_add_up_before_rounding():
    # 2 + 2 + 1 one-cpu jobs of three autoclusters fill two 4-cpu pilots, not three.
    acs = [autocluster("a", idle=2), autocluster("b", idle=2, memory=500), autocluster("c", 1)]
    assert plan(acs, [entry("aws-east")]).requests["aws-east"].demand_pilots == 2


def test_one_small_job_still_gets_a_pilot():
    assert plan([autocluster(idle=1)], [entry("aws-east")]).requests["aws-east"].idle_target == 1


def test_multicore_jobs_fill_whole_pilots():
    acs = [autocluster(idle=10, cpus=4)]
    assert plan(acs, [entry("aws-east", cpus=4)]).requests["aws-east"].demand_pilots == 10
    assert plan(acs, [entry("aws-east", cpus=8)]).requests["aws-east"].demand_pilots == 5


def test_running_jobs_alone_ask_for_nothing():
    ac = AutoCluster("1", "alice", "[RequestCpus = 1]", idle=0, running=50)
    request = plan([ac], [entry("aws-east")]).requests["aws-east"]
    assert (request.idle_target, request.demand_pilots) == (0, 0)


def test_every_entry_gets_a_request_even_without_demand():
    result = plan([], [entry("aws-east"), entry("gcp-west", trust_domain="gcp")])
    assert set(result.requests) == {"aws-east", "gcp-west"}
    assert all(r.idle_target == 0 for r in result.requests.values())


# --------------------------------------------------------------------- matching


def test_requirements_pick_the_entries():
    acs = [autocluster(idle=8, requirements='TARGET.Arch == "aarch64"')]
    result = plan(acs, [entry("x86"), entry("arm", arch="aarch64")])
    assert result.requests["arm"].idle_target == 2
    assert result.requests["x86"].idle_target == 0


def test_unscoped_requirements_look_in_the_entry_like_htcondor():
    acs = [autocluster(idle=4, requirements='Arch == "aarch64" && Cpus >= RequestCpus')]
    result = plan(acs, [entry("x86"), entry("arm", arch="aarch64")])
    assert result.matched["schedd1"]["1"] == ("arm",)


def test_an_error_valued_requirement_is_not_a_match():
    # classad2.Value.Error == 1: a careless truthiness test would call it a match.
    acs = [autocluster(idle=4, requirements='(TARGET.Cpus + "x") > 0')]
    result = plan(acs, [entry("aws-east")])
    assert result.requests["aws-east"].idle_target == 0
    assert "no entry matches its Requirements" in result.unmatched["schedd1"]["1"]


def test_group_match_expression_excludes_entries():
    policy = GroupPolicy(
        "cheap",
        match_expr='TARGET.GLIDEIN_Site != "gcp-west" && MY.Owner == "alice"',
        trust_domains=frozenset({"aws", "gcp"}),
        limits=NO_RAMP,
    )
    result = plan(
        [autocluster(idle=40)],
        [entry("aws-east"), entry("gcp-west", trust_domain="gcp")],
        policy=policy,
    )
    assert result.requests["aws-east"].idle_target == 10
    assert result.requests["gcp-west"].idle_target == 0


def test_desired_sites_only_count_at_listed_sites():
    acs = [autocluster(idle=40, desired_sites=" Site-B , site-c")]
    entries = [entry("a", "site-a"), entry("b", "site-b"), entry("c", "site-c")]
    result = plan(acs, entries)
    assert [result.requests[n].idle_target for n in "abc"] == [0, 5, 5]


def test_trust_domain_without_credentials_gets_no_pilots():
    policy = GroupPolicy("main", trust_domains=frozenset({"aws"}), limits=NO_RAMP)
    entries = [entry("aws-east"), entry("osg", trust_domain="grid")]
    result = plan([autocluster(idle=40)], entries, policy=policy)
    assert result.requests["aws-east"].idle_target == 10  # not split with osg
    assert result.requests["osg"].idle_target == 0


def test_entry_without_trust_domain_needs_no_credentials():
    policy = GroupPolicy("main", limits=NO_RAMP)
    result = plan([autocluster(idle=4)], [entry("laptop", trust_domain="")], policy=policy)
    assert result.requests["laptop"].idle_target == 1


def test_matching_is_evaluated_once_per_ad_pair():
    matcher = Matcher()
    acs = [autocluster("1", idle=40), autocluster("2", idle=40)]  # same ad text
    entries = [entry("aws-east"), entry("gcp-west", trust_domain="gcp")]
    plan(acs, entries, matcher=matcher)
    plan(acs, entries, matcher=matcher)
    assert matcher.evaluations == 2


def test_bad_match_expression_fails_at_startup():
    with pytest.raises(ValueError, match="does not parse"):
        GroupPolicy("main", match_expr="TARGET.Cpus >")


# ------------------------------------------------------------ unmatched reasons


def test_unmatched_reason_lists_the_entries_tried():
    acs = [autocluster(idle=3, requirements="TARGET.Cpus >= 64")]
    entries = [entry(f"e{i}") for i in range(7)]
    reason = plan(acs, entries).unmatched["schedd1"]["1"]
    assert reason == "no entry matches its Requirements (7 entries: e0, e1, e2, e3, e4, +2 more)"


def test_unmatched_reason_for_desired_sites():
    acs = [autocluster(idle=3, desired_sites="mars")]
    reason = plan(acs, [entry("a", "site-a")]).unmatched["schedd1"]["1"]
    assert reason.startswith("DESIRED_Sites mars: no matching entry at those sites")
    assert "site-a" in reason


def test_unmatched_reason_for_missing_credentials():
    policy = GroupPolicy("main", trust_domains=frozenset({"aws"}))
    reason = plan(
        [autocluster(idle=3)], [entry("osg", trust_domain="grid")], policy=policy
    ).unmatched["schedd1"]["1"]
    assert reason == "no credentials for trust domain grid of matching entries (osg)"


def secret_entry(name, domain="aws"):
    return dataclasses.replace(entry(name, trust_domain=domain), credential="ec2-keypair")


def test_an_entry_needing_a_secret_is_used_only_while_the_groups_reference_reads():
    policy = GroupPolicy("main", trust_domains=frozenset({"aws", "local"}),
                         secretless=frozenset({"local"}), limits=NO_RAMP)
    entries = [secret_entry("aws-east"), entry("laptop", trust_domain="local")]
    both = plan([autocluster(idle=8)], entries, policy=policy)
    assert [both.requests[n].idle_target for n in ("aws-east", "laptop")] == [1, 1]
    unreadable = plan_group(policy, {"schedd1": [autocluster(idle=8)]}, entries, {},
                            unusable={"aws": "env:AWS_CREDS: AWS_CREDS is not set"})
    assert [unreadable.requests[n].idle_target for n in ("aws-east", "laptop")] == [0, 2]
    only_aws = plan_group(policy, {"schedd1": [autocluster(idle=8)]}, entries[:1], {},
                          unusable={"aws": "env:AWS_CREDS: AWS_CREDS is not set"})
    assert only_aws.unmatched["schedd1"]["1"] == (
        "group main's credential for trust domain aws cannot be read: env:AWS_CREDS: "
        "AWS_CREDS is not set (matching entries: aws-east)")


def test_a_none_reference_is_no_credential_for_an_entry_that_needs_one():
    policy = GroupPolicy("main", trust_domains=frozenset({"aws"}),
                         secretless=frozenset({"aws"}), limits=NO_RAMP)
    result = plan([autocluster(idle=3)], [secret_entry("aws-east")], policy=policy)
    assert result.unmatched["schedd1"]["1"] == (
        "group main holds no ec2-keypair credential for trust domain aws (its reference is "
        "none) (matching entries: aws-east)")


def test_unmatched_reason_for_group_expression():
    policy = GroupPolicy("gpu", match_expr="TARGET.Cpus > 100", trust_domains=frozenset({"aws"}))
    reason = plan([autocluster(idle=3)], [entry("a")], policy=policy).unmatched["schedd1"]["1"]
    assert (
        reason
        == "entries matching its Requirements (a) are excluded by group gpu's match expression"
    )


def test_unmatched_reason_when_one_job_is_bigger_than_a_pilot():
    reason = plan(
        [autocluster(idle=3, cpus=8, requirements="true")], [entry("a", cpus=4)]
    ).unmatched["schedd1"]["1"]
    assert (
        reason
        == "one job needs 8 cpus and 1000 MB; the largest matching pilot has 4 cpus and 16000 MB"
    )


def test_matched_autoclusters_have_no_reason():
    result = plan([autocluster(idle=3)], [entry("a")])
    assert result.unmatched == {}


# ------------------------------------------------------------------------- caps


def test_max_idle_caps_waiting_pilots():
    policy = with_limits(max_idle=30, ramp_step=100_000)
    pilots = {"a": PilotCounts(pending=10)}
    request = plan([autocluster(idle=1000)], [entry("a")], pilots, policy).requests["a"]
    assert (request.idle_target, request.new_pilots) == (30, 20)
    assert "capped by max_idle 30" in request.reason


def test_max_running_caps_all_pilots_of_the_entry():
    policy = with_limits(max_running=100, ramp_step=100_000)
    pilots = {"a": PilotCounts(busy=95)}
    request = plan([autocluster(idle=400)], [entry("a")], pilots, policy).requests["a"]
    assert request.new_pilots == 5
    assert request.max_glideins == 100


def test_curb_halves_growth_when_many_pilots_are_idle():
    policy = with_limits(curb_idle=10, ramp_step=100_000)
    pilots = {"a": PilotCounts(idle=10)}
    request = plan([autocluster(idle=200)], [entry("a")], pilots, policy).requests["a"]
    assert request.new_pilots == 20  # (50 - 10) // 2
    assert "curb_idle 10" in request.reason


def test_too_many_held_pilots_stop_new_requests():
    policy = with_limits(max_held=5, ramp_step=100_000)
    pilots = {"a": PilotCounts(idle=2, held=6)}
    request = plan([autocluster(idle=40)], [entry("a")], pilots, policy).requests["a"]
    assert request.new_pilots == 0
    assert request.idle_target == 2
    assert "6 held pilots > max_held 5" in request.reason


def test_held_pilots_at_the_limit_still_allow_requests():
    policy = with_limits(max_held=5, ramp_step=100_000)
    pilots = {"a": PilotCounts(held=5)}
    assert plan([autocluster(idle=40)], [entry("a")], pilots, policy).requests["a"].new_pilots == 10


def test_max_glideins_leaves_room_for_busy_pilots_and_the_target():
    pilots = {"a": PilotCounts(pending=2, busy=7, retiring=1)}
    request = plan([autocluster(idle=40)], [entry("a")], pilots).requests["a"]
    assert request.max_glideins == 7 + 1 + 10


def test_group_total_idle_is_shared_fairly_between_entries():
    policy = with_limits(total_max_idle=15, ramp_step=100_000)
    acs = [autocluster(s, idle=40, desired_sites=s) for s in ("a", "b", "c")]
    result = plan(acs, [entry("a"), entry("b"), entry("c")], policy=policy)
    assert [result.requests[s].idle_target for s in "abc"] == [5, 5, 5]
    assert "total_max_idle 15" in result.requests["a"].reason


def test_group_total_gives_small_wants_in_full_first():
    policy = with_limits(total_max_idle=12, ramp_step=100_000)
    acs = [autocluster("a", 8, desired_sites="a"), autocluster("b", 40, desired_sites="b")]
    acs.append(autocluster("c", 40, desired_sites="c"))
    result = plan(acs, [entry("a"), entry("b"), entry("c")], policy=policy)
    assert [result.requests[s].idle_target for s in "abc"] == [2, 5, 5]


def test_group_total_running_counts_busy_pilots_everywhere():
    policy = with_limits(total_max_running=25, ramp_step=100_000)
    acs = [autocluster(s, idle=40, desired_sites=s) for s in ("a", "b")]
    pilots = {"a": PilotCounts(busy=15)}
    result = plan(acs, [entry("a"), entry("b")], pilots, policy)
    assert result.requests["a"].new_pilots + result.requests["b"].new_pilots == 10


def test_fair_share_never_exceeds_budget_or_wants():
    assert fair_share({"a": 3, "b": 10, "c": 10}, 11) == {"a": 3, "b": 4, "c": 4}
    assert fair_share({"a": 3, "b": 0}, 100) == {"a": 3, "b": 0}
    assert fair_share({"a": 3}, -5) == {"a": 0}


# ------------------------------------------------------------------------- ramp


def test_ramp_starts_small_and_doubles():
    policy = with_limits(ramp_step=20, ramp_growth=1.0, max_idle=1000)
    acs = [autocluster(idle=4000)]
    first = plan(acs, [entry("a")], policy=policy).requests["a"]
    assert first.idle_target == 20
    assert "ramp" in first.reason
    # The factory launched the 20; they are pending now.
    second = plan(acs, [entry("a")], {"a": PilotCounts(pending=20)}, policy, {"a": first})
    assert second.requests["a"].idle_target == 40
    third = plan(
        acs, [entry("a")], {"a": PilotCounts(pending=40)}, policy, second.requests
    ).requests["a"]
    assert third.idle_target == 80


def test_ramp_grows_from_last_target_even_if_the_factory_lagged():
    policy = with_limits(ramp_step=20, ramp_growth=1.0, max_idle=1000)
    first = plan([autocluster(idle=4000)], [entry("a")], policy=policy).requests["a"]
    second = plan([autocluster(idle=4000)], [entry("a")], {}, policy, {"a": first}).requests["a"]
    assert second.idle_target == 40


def test_linear_ramp_when_growth_is_zero():
    policy = with_limits(ramp_step=10, ramp_growth=0.0, max_idle=1000)
    previous = plan([autocluster(idle=4000)], [entry("a")], policy=policy).requests
    pilots = {"a": PilotCounts(pending=10)}
    after = plan([autocluster(idle=4000)], [entry("a")], pilots, policy, previous)
    assert after.requests["a"].idle_target == 20


# --------------------------------------------------------------------- removal


def test_demand_gone_asks_to_remove_idle_pilots_after_settling():
    pilots = {"a": PilotCounts(idle=4, busy=3)}
    first = plan([], [entry("a")], pilots).requests
    assert (first["a"].idle_target, first["a"].remove_excess) == (0, "NO")
    second = plan([], [entry("a")], pilots, previous=first).requests["a"]
    assert (second.idle_target, second.remove_excess) == (0, "IDLE")
    assert second.max_glideins == 3  # the busy ones stay


def test_demand_back_stops_removal():
    pilots = {"a": PilotCounts(idle=4)}
    quiet = plan([], [entry("a")], pilots, previous=plan([], [entry("a")], pilots).requests)
    assert quiet.requests["a"].remove_excess == "IDLE"
    again = plan([autocluster(idle=40)], [entry("a")], pilots, previous=quiet.requests)
    assert (again.requests["a"].remove_excess, again.requests["a"].quiet_cycles) == ("NO", 0)


def test_demand_below_waiting_pilots_cancels_only_unbooted_ones():
    pilots = {"a": PilotCounts(pending=8, idle=2)}
    acs = [autocluster(idle=8)]  # two pilots' worth
    first = plan(acs, [entry("a")], pilots).requests
    second = plan(acs, [entry("a")], pilots, previous=first).requests["a"]
    assert (second.idle_target, second.remove_excess) == (2, "WAIT")


def test_frontend_never_asks_to_remove_all():
    pilots = {"a": PilotCounts(idle=4, busy=4, pending=4)}
    previous = None
    for _ in range(20):
        previous = plan([], [entry("a")], pilots, previous=previous).requests
    assert previous["a"].remove_excess == "IDLE"


# ------------------------------------------------------------------- adapters


def test_glidein_request_carries_the_numbers():
    policy = GroupPolicy("main", trust_domains=frozenset({"aws"}), idle_lifetime_s=600.0)
    request = plan([autocluster(idle=40)], [entry("a")], policy=policy).requests["a"]
    message = glidein_request("fe1", policy, request, seq=7, now=123.0)
    assert message == GlideinRequest(
        frontend="fe1",
        group="main",
        entry="a",
        idle_target=request.idle_target,
        max_glideins=request.max_glideins,
        remove_excess="NO",
        idle_lifetime_s=600.0,
        seq=7,
        time=123.0,
    )


def test_entry_info_from_advertised_entry():
    adv = EntryAdvertised(
        entry="aws-east", site="aws", driver="ec2", provider="aws", factory="f1",
        ad="[Cpus = 8]", trust_domain="aws", cpus=8, memory_mb=32000,
    )  # fmt: skip
    assert EntryInfo.from_advertised(adv) == EntryInfo(
        "aws-east", "aws", "[Cpus = 8]", "aws", 8, 32000
    )


def test_pilot_counts_from_status_states():
    counts = PilotCounts.from_states(
        {"pending": 1, "idle": 2, "busy": 3, "held": 1, "failed": 1, "lost": 9}
    )
    assert counts == PilotCounts(pending=1, idle=2, busy=3, retiring=0, held=2)
    assert (counts.waiting, counts.total) == (3, 8)


def test_policy_from_runtime_config():
    @dataclass(frozen=True)
    class Limits:
        max_idle_per_entry: int = 7
        curb_idle_per_entry: int = 3
        ramp_step: int = 4
        some_future_knob: int = 1

    @dataclass(frozen=True)
    class Config:
        name: str = "g"
        match: str = "TARGET.Cpus > 1"
        credentials: dict = None
        idle_lifetime_s: float = 60.0
        limits: Limits = Limits()

    policy = GroupPolicy.from_config(Config(credentials={"aws": "env:X", "local": "none"}))
    assert policy.match_expr == "TARGET.Cpus > 1"
    assert policy.trust_domains == frozenset({"aws", "local"})
    assert policy.secretless == frozenset({"local"})
    assert (policy.limits.max_idle, policy.limits.curb_idle, policy.limits.ramp_step) == (7, 3, 4)
    assert policy.limits.max_held == GroupLimits().max_held


def test_a_job_larger_than_every_pilot_is_told_so_plainly():
    result = plan([autocluster(memory=65536)], [entry("small", memory_mb=2048),
                                                entry("big", memory_mb=8192)])
    assert result.unmatched["schedd1"]["1"] == (
        "no entry has pilots with 65536 MiB of memory (the largest have 8192 MiB)")
    cpus = plan([autocluster(cpus=16)], [entry("small", cpus=4)])
    assert cpus.unmatched["schedd1"]["1"] == (
        "no entry has pilots with 16 cpus (the largest have 4)")


# ------------------------------------------------------------------ custom resources


def _prototype(name, cpus=4, **resources) -> EntryInfo:
    """An entry as the factory advertises it: its real prototype slot ad."""
    from services.factory.prototype import prototype_ad
    from services.runtime.config import EntryConfig

    config = EntryConfig(name=name, site=name, cpus=cpus, memory_mb=8000, **resources)
    return EntryInfo(name, name, prototype_ad(config, "f"), "", cpus, 8000)


def _submitted(tmp_path, commands: str, idle: int = 3) -> AutoCluster:
    """The autocluster the schedd makes of a submit file's job."""
    from services.schedd.queue import autocluster_of
    from tests.unit.test_condor_submit_htcondor import read, script

    script(tmp_path / "sim.sh")
    [job] = read(tmp_path, f"executable = sim.sh\n{commands}\nqueue\n").jobs
    key = autocluster_of(job.ad, "alice")
    return AutoCluster(key.id, "alice", key.ad, idle, 0, "")


def test_a_job_asking_for_a_resource_no_entry_offers_waits_with_that_reason(tmp_path):
    ac = _submitted(tmp_path, "request_Boats = 1")
    result = plan([ac], [_prototype("plain"), _prototype("gpu", gpus=1)])
    assert result.unmatched["schedd1"][ac.id] == "no entry offers Boats (it asks for 1)"
    assert all(r.idle_target == 0 for r in result.requests.values())


def test_a_job_asking_for_more_than_any_pilot_has_says_how_much_there_is(tmp_path):
    ac = _submitted(tmp_path, "request_gpus = 2")
    result = plan([ac], [_prototype("gpu", gpus=1)])
    assert result.unmatched["schedd1"][ac.id] == "no entry has pilots with 2 GPUs (the most: 1)"


def test_custom_resources_limit_jobs_per_pilot_like_cpus(tmp_path):
    # 4 cpus but 2 Boats: two one-Boat jobs per pilot, so 3 jobs need 2 pilots
    ac = _submitted(tmp_path, "request_boats = 1", idle=3)
    result = plan([ac], [_prototype("plain"), _prototype("harbour", resources={"Boats": 2})])
    assert result.matched == {"schedd1": {ac.id: ("harbour",)}}
    assert result.requests["harbour"].demand_pilots == 2
