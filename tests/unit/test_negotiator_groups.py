"""Accounting groups, nice users and concurrency limits in the pass, as a pool user sees them."""

from __future__ import annotations

import dataclasses

import pytest

from services.negotiator.groups import (
    CONCURRENCY_LIMIT_DEFAULT,
    FairSharePolicy,
    GroupQuota,
    targets,
)
from services.negotiator.logic import AdTable, NegotiationConfig, negotiate
from tests.unit.test_negotiator_logic import job, slot


def grouped(ac_id, group, user, idle=50, running=0):
    """An autocluster of `user`'s jobs submitted with accounting_group = `group`."""
    extra = f'AcctGroup = "{group}"; AcctGroupUser = "{user}"; AccountingGroup = "{group}.{user}";'
    return dataclasses.replace(job(ac_id, owner=user, idle=idle, extra=extra), running=running)


def single_cpu_slots(count, busy=0):
    """`count` one-cpu pilots, the first `busy` of them running a job."""
    return [slot(f"p{i:02d}", cpus=1, memory=2000, state="busy" if i < busy else "idle",
                 free=(0, 0, 0) if i < busy else None) for i in range(count)]


def run(acs, slots, *, groups=(), limits=(), limit_default=CONCURRENCY_LIMIT_DEFAULT,
        priorities=None, claimed=None):
    policy = FairSharePolicy(tuple(groups), tuple(limits), limit_default)
    table = AdTable(NegotiationConfig(policy=policy))
    return negotiate({"schedd": acs}, slots, priorities or {}, table=table, claim_prefix="t",
                     claimed=claimed)


def dynamic(name, fraction, surplus=False):
    return GroupQuota(name, fraction, dynamic=True, accept_surplus=surplus)


THREE_TO_ONE = (dynamic("physics", 0.75), dynamic("bio", 0.25))


@pytest.mark.parametrize("pool_size", [8, 40])
def test_two_groups_with_a_3_to_1_quota_get_cpus_in_that_ratio(pool_size):
    acs = [grouped("p", "physics", "alice"), grouped("b", "bio", "bob")]
    result = run(acs, single_cpu_slots(pool_size), groups=THREE_TO_ONE)
    assert result.cpus_by_group == {"physics": pool_size * 3 // 4, "bio": pool_size // 4}
    assert result.cpus_by_owner == {"physics.alice": pool_size * 3 // 4,
                                    "bio.bob": pool_size // 4}


def test_static_quotas_count_the_jobs_already_running():
    acs = [grouped("p", "physics", "alice", running=6), grouped("b", "bio", "bob")]
    groups = (GroupQuota("physics", 9, dynamic=False, accept_surplus=False),
              GroupQuota("bio", 3, dynamic=False, accept_surplus=False))
    result = run(acs, single_cpu_slots(12, busy=6), groups=groups)
    assert result.cpus_by_group == {"physics": 3, "bio": 3}


def test_a_group_without_surplus_stops_at_its_quota_and_says_so():
    acs = [grouped("p", "physics", "alice")]
    result = run(acs, single_cpu_slots(8), groups=THREE_TO_ONE)
    assert result.cpus_by_group == {"physics": 6}
    assert result.reasons == {}  # it got claims: what it waits for shows next pass
    # 6 running, 2 claimed by an earlier pass that the demand does not show yet.
    waiting = run([grouped("p", "physics", "alice", running=6)], single_cpu_slots(10, busy=6),
                  groups=THREE_TO_ONE, claimed={("schedd", "p"): 2})
    assert waiting.cpus_by_group == {}
    assert waiting.reasons[("schedd", "p")] == (
        "accounting group physics is at its quota: 8 cpus in use, quota 7.5")


def test_surplus_goes_to_groups_that_accept_it():
    acs = [grouped("p", "physics", "alice")]
    groups = (dynamic("physics", 0.75, surplus=True), dynamic("bio", 0.25))
    assert run(acs, single_cpu_slots(8), groups=groups).cpus_by_group == {"physics": 8}


def test_jobs_without_a_group_get_what_the_groups_leave():
    acs = [grouped("p", "physics", "alice"), job("n", owner="carol", idle=50)]
    groups = (GroupQuota("physics", 5, dynamic=False, accept_surplus=False),)
    result = run(acs, single_cpu_slots(8), groups=groups)
    assert result.cpus_by_group == {"physics": 5, "<none>": 3}
    assert result.cpus_by_owner == {"physics.alice": 5, "carol": 3}


def test_an_unknown_group_is_charged_as_no_group_but_keeps_its_principal():
    acs = [grouped("x", "chemistry", "dave", idle=3)]
    result = run(acs, single_cpu_slots(8), groups=THREE_TO_ONE)
    assert result.cpus_by_group == {"<none>": 3}
    assert result.cpus_by_owner == {"chemistry.dave": 3}


def test_principals_in_one_group_share_it_by_priority():
    acs = [grouped("a", "physics", "alice"), grouped("b", "physics", "bob")]
    result = run(acs, single_cpu_slots(8), groups=THREE_TO_ONE,
                 priorities={"physics.alice": 1.0, "physics.bob": 2.0})
    assert result.cpus_by_owner == {"physics.alice": 4, "physics.bob": 2}


def test_nice_user_jobs_get_only_what_nobody_else_wants():
    nice = grouped("n", "nice-user", "carol")
    few = run([nice, job("a", owner="alice", idle=5)], single_cpu_slots(8),
              priorities={"nice-user.carol": 0.5, "alice": 100.0})
    assert few.cpus_by_owner == {"alice": 5, "nice-user.carol": 3}
    many = run([nice, job("a", owner="alice", idle=20)], single_cpu_slots(8),
               priorities={"nice-user.carol": 0.5, "alice": 100.0})
    assert many.cpus_by_owner == {"alice": 8}
    assert many.reasons[("schedd", "n")].startswith("nice_user: runs only on what nobody")


LICENSED = 'ConcurrencyLimits = "license_a";'


def test_concurrency_limits_cap_running_and_new_jobs_together():
    limits = (("license_a", 3.0),)
    fresh = run([job("l", idle=10, extra=LICENSED)], single_cpu_slots(8), limits=limits)
    assert fresh.match_count == 3
    running = run([dataclasses.replace(job("l", idle=10, extra=LICENSED), running=2)],
                  single_cpu_slots(8), limits=limits)
    assert running.match_count == 1
    claimed = run([job("l", idle=10, extra=LICENSED)], single_cpu_slots(8), limits=limits,
                  claimed={("schedd", "l"): 3})
    assert claimed.match_count == 0
    assert claimed.reasons[("schedd", "l")] == "concurrency limit license_a: 3 of 3 in use"


def test_a_limit_shared_by_autoclusters_and_amounts_per_job():
    limits = (("db", 5.0),)
    acs = [job("one", idle=10, extra='ConcurrencyLimits = "db";'),
           job("two", idle=10, memory=500, extra='ConcurrencyLimits = "DB:2";')]
    result = run(acs, single_cpu_slots(8), limits=limits)
    used = sum(len(result.matches.get(("schedd", a), [])) * n for a, n in (("one", 1), ("two", 2)))
    assert used == 5 and result.match_count < 8


def test_unconfigured_limits_take_the_default():
    result = run([job("l", idle=10, extra='ConcurrencyLimits = "anything";')],
                 single_cpu_slots(8), limit_default=2)
    assert result.match_count == 2


def test_an_expression_for_concurrency_limits_is_evaluated():
    expr = 'Kind = "gpu"; ConcurrencyLimits = strcat("lic_", Kind);'
    result = run([job("l", idle=10, extra=expr)], single_cpu_slots(8), limits=(("lic_gpu", 1),))
    assert result.match_count == 1


def test_quotas_as_htcondor_assigns_them():
    static = FairSharePolicy((GroupQuota("a", 30, dynamic=False, accept_surplus=False),
                              GroupQuota("b", 10, dynamic=False, accept_surplus=False),
                              dynamic("d", 0.5)))
    # Static quotas first, scaled down to the pool; dynamic ones share what is left;
    # jobs of no group get the rest.
    assert static.quotas(20) == {"a": 15.0, "b": 5.0, "d": 0.0, "<none>": 0.0}
    assert static.quotas(80) == {"a": 30.0, "b": 10.0, "d": 20.0, "<none>": 20.0}
    overbooked = FairSharePolicy((dynamic("a", 0.8), dynamic("b", 0.4)))
    assert overbooked.quotas(12) == pytest.approx({"a": 8.0, "b": 4.0, "<none>": 0.0})


def test_surplus_is_shared_in_proportion_to_quotas():
    policy = FairSharePolicy((dynamic("a", 0.5, surplus=True), dynamic("b", 0.25, surplus=True),
                              dynamic("idle", 0.25)))
    quotas = policy.quotas(12)
    wanted = {"a": 100.0, "b": 100.0, "idle": 0.0, "<none>": 0.0}
    assert targets(policy, quotas, wanted, {}) == {"a": 8, "b": 4, "idle": 0, "<none>": 0}
