"""Negotiator matchmaking: what a pool user sees, checked without a broker."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
from classad2 import ClassAd, Value

from schemas.demand import AutoCluster
from schemas.slot import SlotAdvertised
from services.negotiator.accounting import Accountant, pie_shares
from services.negotiator.logic import AdTable, negotiate, symmetric_match

BASIC_REQ = (
    "TARGET.Cpus >= RequestCpus && TARGET.Memory >= RequestMemory && TARGET.Disk >= RequestDisk"
)
SLOT_REQ = "TARGET.RequestCpus <= MY.Cpus && TARGET.RequestMemory <= MY.Memory"


def job(ac_id="1", owner="alice", idle=1, cpus=1, memory=1000, disk_kib=1024,
        requirements=BASIC_REQ, rank="", desired_sites="", extra="", resources=None):
    """An autocluster; `resources` {"Boats": 1} asks for custom ones as condor_submit does
    (Request<Name>, and a Requirements clause reading the slot's <Name>)."""
    rank_attr = f"Rank = {rank};" if rank else ""
    for name, amount in (resources or {}).items():
        extra += f" Request{name} = {amount};"
        requirements += f" && TARGET.{name} >= MY.Request{name}"
    ad = (f"[RequestCpus = {cpus}; RequestMemory = {memory}; RequestDisk = {disk_kib}; "
          f"{rank_attr} {extra} Requirements = {requirements}]")
    return AutoCluster(id=ac_id, owner=owner, ad=ad, idle=idle, desired_sites=desired_sites)


def slot(pilot_id="p1", cpus=4, memory=8000, disk_mb=10_000, site="SiteA", provider="aws",
         requirements=SLOT_REQ, state="idle", free=None, extra="", resources=None):
    """A pilot's slot ad; `resources` {"Boats": 2} are custom ones, advertised as pilots do
    (<Name> free, Total<Name>, MachineResources), all free unless `free` says otherwise:
    (cpus, MiB, MB disk[, {"Boats": 1}])."""
    free_cpus, free_memory, free_disk, *free_custom = free or (cpus, memory, disk_mb)
    resources = resources or {}
    free_custom = free_custom[0] if free_custom else dict(resources)
    if resources:
        extra += "".join(f" {n} = {free_custom[n]}; Total{n} = {total};"
                         for n, total in resources.items())
        extra += f' MachineResources = "Cpus Memory Disk {" ".join(resources)}";'
    ad = (f'[Name = "slot1@{pilot_id}"; Cpus = {cpus}; Memory = {memory}; Disk = {disk_mb * 1024}; '
          f'GLIDEIN_Site = "{site}"; GLIDEIN_Entry_Name = "entry_{site}"; '
          f'CloudProvider = "{provider}"; CloudInstanceID = "i-{pilot_id}"; Arch = "X86_64"; '
          f"{extra} Requirements = {requirements}]")
    return SlotAdvertised(pilot_id=pilot_id, ad=ad, state=state, free_cpus=free_cpus,
                          free_memory_mb=free_memory, free_disk_mb=free_disk,
                          entry=f"entry_{site}", site=site, provider=provider,
                          free_resources=free_custom)


def run(autoclusters, slots, priorities=None, **kw):
    kw.setdefault("claim_prefix", "t")
    return negotiate({"schedd": autoclusters}, slots, priorities or {}, **kw)


def pilots(result, ac_id="1"):
    return Counter(c.pilot_id for c in result.matches.get(("schedd", ac_id), []))


# ---------------------------------------------------------------- matching


def test_slot_requirements_rejecting_the_job_prevent_the_match():
    picky = slot("picky", requirements="TARGET.RequestMemory <= 500")
    result = run([job(memory=1000)], [picky])
    assert result.matches == {}
    assert result.reasons[("schedd", "1")] == (
        "1 of 1 slot satisfies its Requirements, but their own Requirements reject it")


def test_job_requirements_choose_among_slots():
    result = run([job(idle=3, requirements='TARGET.CloudProvider == "openstack"')],
                 [slot("a", provider="aws"), slot("o", provider="openstack")])
    assert pilots(result) == {"o": 3}


def test_rank_prefers_the_higher_ranked_slot():
    slots = [slot("small", memory=4000), slot("big", memory=16000), slot("mid", memory=8000)]
    result = run([job(rank="TARGET.Memory")], slots)
    assert pilots(result) == {"big": 1}


def test_rank_error_counts_as_zero_and_still_matches():
    result = run([job(idle=2, rank='TARGET.NoSuchAttr + "x"')], [slot("a")])
    assert pilots(result) == {"a": 2}


def test_requirements_that_evaluate_to_error_never_match():
    # Adding a string to a number is Error, which is not True even though Value.Error == 1.
    ac = job(requirements='(TARGET.Cpus + "x") > 0')
    assert run([ac], [slot("a")]).matches == {}


def test_htcondor_string_list_functions_work_in_requirements():
    ac = job(requirements='stringListMember(TARGET.GLIDEIN_Site, "elsewhere,SiteA")')
    assert ("schedd", "1") in run([ac], [slot("a", site="SiteA")]).matches
    assert run([ac], [slot("b", site="SiteB")]).matches == {}


def test_four_cpu_slot_takes_four_one_cpu_jobs_and_not_a_fifth():
    result = run([job(idle=5, cpus=1, memory=1000)], [slot("p", cpus=4, memory=8000)])
    claims = result.matches[("schedd", "1")]
    assert [c.pilot_id for c in claims] == ["p"] * 4
    assert {(c.cpus, c.memory_mb) for c in claims} == {(1, 1000)}
    assert len({c.claim_id for c in claims}) == 4


def test_memory_carving_limits_jobs_per_slot():
    result = run([job(idle=4, cpus=1, memory=1500)], [slot("p", cpus=4, memory=4000)])
    assert pilots(result) == {"p": 2}


def test_slot_free_resources_not_totals_are_matched():
    busy = slot("p", cpus=8, memory=16000, state="busy", free=(1, 2000, 5000))
    result = run([job(idle=3, cpus=1, memory=1000), job("2", cpus=2)], [busy])
    assert pilots(result) == {"p": 1}
    assert result.reasons[("schedd", "2")] == (
        "1 slot matches but none has 2 cpus, 1000 MiB, 1 MB disk free")


def test_claims_carry_where_the_job_runs():
    result = run([job()], [slot("p", site="SiteB", provider="openstack")])
    (claim,) = result.matches[("schedd", "1")]
    assert (claim.pilot_id, claim.site, claim.entry, claim.provider) == (
        "p", "SiteB", "entry_SiteB", "openstack")
    assert (claim.cpus, claim.memory_mb, claim.disk_mb) == (1, 1000, 1)


def test_desired_sites_are_honoured():
    slots = [slot("a", site="SiteA"), slot("b", site="SiteB"), slot("c", site="SiteC")]
    result = run([job("1", idle=6, desired_sites="SiteB, SiteC"),
                  job("2", desired_sites="Elsewhere")], slots)
    assert {c.site for c in result.matches[("schedd", "1")]} <= {"SiteB", "SiteC"}
    assert len(result.matches[("schedd", "1")]) == 6
    assert result.reasons[("schedd", "2")] == (
        "DESIRED_Sites Elsewhere: no slot at those sites (slots are at SiteA, SiteB, SiteC)")


def test_retiring_slots_are_skipped():
    result = run([job(idle=2)], [slot("old", state="retiring")])
    assert result.matches == {}
    assert result.reasons[("schedd", "1")] == "no slots in the pool (1 retiring)"


def test_a_job_can_target_one_slot_by_a_unique_attribute():
    slots = [slot(f"p{i}") for i in range(20)]
    result = run([job(idle=9, requirements='TARGET.Name == "slot1@p7"'), job("2", idle=3)], slots)
    assert pilots(result, "1") == {"p7": 4}
    assert sum(pilots(result, "2").values()) == 3


def test_slot_attributes_are_compared_through_what_they_reference():
    # Same IsFast expression text on both slots; only the attribute it reads differs.
    fast = slot("fast", extra="Speed = 20; IsFast = MY.Speed > 10;")
    slow = slot("slow", extra="Speed = 5; IsFast = MY.Speed > 10;")
    result = run([job(idle=8, requirements="TARGET.IsFast")], [slow, fast])
    assert pilots(result) == {"fast": 4}


def test_slot_start_can_read_the_owner():
    no_mallory = slot("p", requirements=SLOT_REQ + ' && TARGET.Owner =!= "mallory"')
    result = run([job("m", owner="mallory"), job("a", owner="alice")], [no_mallory])
    assert pilots(result, "a") == {"p": 1}
    assert ("schedd", "m") not in result.matches


def test_passes_are_deterministic_whatever_the_input_order():
    slots = [slot(f"p{i}", cpus=2, site=f"S{i % 3}") for i in range(12)]
    acs = [job(str(i), owner=f"o{i % 2}", idle=5) for i in range(4)]
    first = run(acs, slots)
    shuffled = slots[:]
    random.Random(1).shuffle(shuffled)
    assert without_claim_ids(run(acs, shuffled).matches) == without_claim_ids(first.matches)


def without_claim_ids(matches):
    # Claim ids are random by design (unguessable capabilities); the rest must not vary.
    return {key: [dataclasses.replace(c, claim_id="") for c in claims]
            for key, claims in matches.items()}


def test_claim_ids_are_unguessable_and_unique():
    result = run([job(idle=20)], [slot(f"p{i}", cpus=4) for i in range(5)])
    ids = [c.claim_id for claims in result.matches.values() for c in claims]
    assert len(ids) == len(set(ids)) == 20
    assert all(len(i.rsplit(".", 1)[-1]) == 32 for i in ids)  # 128 random bits each


# ---------------------------------------------------------------- reasons


def test_reasons_name_the_blocking_cause():
    slots = [slot("a", cpus=4, memory=8000), slot("b", cpus=4, memory=8000)]
    result = run([
        job("big", cpus=16),
        job("nomatch", requirements='TARGET.CloudProvider == "opennebula"'),
        job("bad", extra="Broken = ;"),
    ], slots)
    assert result.reasons[("schedd", "big")] == (
        "requests 16 cpus, 1000 MiB, 1 MB disk, more than any slot has "
        "(at most 4 cpus, 8000 MiB, 10000 MB disk)")
    assert result.reasons[("schedd", "nomatch")] == (
        "no slot matches its Requirements (2 slots considered)")
    assert result.reasons[("schedd", "bad")] == "its ClassAd does not parse"
    assert run([job()], []).reasons[("schedd", "1")] == "no slots in the pool"


def test_autoclusters_that_got_matches_have_no_reason():
    result = run([job(idle=10)], [slot("a", cpus=2)])
    assert len(result.matches[("schedd", "1")]) == 2
    assert result.reasons == {}


def test_analyses_group_reasons_per_schedd():
    result = negotiate({"s1": [job("x", cpus=64)], "s2": [job("y")]}, [slot("a")], {})
    by_schedd = {a.schedd: a.reasons for a in result.analyses()}
    assert by_schedd["s2"] == {}
    assert by_schedd["s1"]["x"].startswith("requests 64 cpus")
    (offer,) = result.offers(cycle=3)
    assert (offer.schedd, offer.autocluster, offer.owner, offer.cycle) == ("s2", "y", "alice", 3)


# ---------------------------------------------------------------- fair share


def ten_one_cpu_slots():
    return [slot(f"p{i}", cpus=1, memory=2000) for i in range(10)]


def test_equal_priorities_split_the_pool_evenly():
    acs = [job("a", owner="alice", idle=10), job("b", owner="bob", idle=10)]
    result = run(acs, ten_one_cpu_slots(), {"alice": 1.0, "bob": 1.0})
    assert result.cpus_by_owner == {"alice": 5, "bob": 5}


def test_worse_priority_gets_fewer_cpus():
    acs = [job("a", owner="alice", idle=10), job("b", owner="bob", idle=10)]
    result = run(acs, ten_one_cpu_slots(), {"alice": 0.5, "bob": 2.0})
    assert result.cpus_by_owner == {"alice": 8, "bob": 2}


def test_unused_share_goes_back_to_the_others():
    acs = [job("a", owner="alice", idle=2), job("b", owner="bob", idle=10)]
    result = run(acs, ten_one_cpu_slots(), {"alice": 0.5, "bob": 0.5})
    assert result.cpus_by_owner == {"alice": 2, "bob": 8}


def test_a_share_that_cannot_be_used_goes_back_to_the_others():
    acs = [job("a", owner="alice", idle=10, requirements='TARGET.GLIDEIN_Site == "Nowhere"'),
           job("b", owner="bob", idle=10)]
    result = run(acs, ten_one_cpu_slots(), {"alice": 0.5, "bob": 0.5})
    assert result.cpus_by_owner == {"bob": 10}


def test_fair_share_reason_for_an_owner_left_out():
    acs = [job("a", owner="alice", idle=10), job("b", owner="bob", idle=10)]
    result = run(acs, ten_one_cpu_slots(), {"alice": 0.5, "bob": 1000.0})
    assert result.cpus_by_owner == {"alice": 10}
    assert result.reasons[("schedd", "b")] == (
        "fair share: owner bob got their share this cycle (0 cpus)")


def test_within_an_owner_job_priority_orders_autoclusters():
    acs = [job("low", idle=5, extra="JobPrio = 0;"), job("high", idle=5, extra="JobPrio = 10;")]
    result = run(acs, [slot("a", cpus=3)])
    assert pilots(result, "high") == {"a": 3}
    assert ("schedd", "low") not in result.matches


def test_usage_halves_after_one_half_life():
    accountant = Accountant(half_life_s=100.0)
    accountant.update(0.0, {"alice": 10})
    assert accountant.priorities(0.0) == {"alice": 0.5}  # the floor: nothing used yet
    accountant.update(10_000.0, {})  # alice ran 10 cpus for 100 half-lives
    assert accountant.usage(10_000.0)["alice"] == pytest.approx(10.0)
    assert accountant.usage(10_100.0)["alice"] == pytest.approx(5.0)
    assert accountant.usage(10_200.0)["alice"] == pytest.approx(2.5)
    assert accountant.priority("alice", 10_100.0) == pytest.approx(5.0)
    assert accountant.priority("nobody", 10_100.0) == 0.5


def test_priorities_are_deterministic_and_survive_a_restart():
    def history(acct):
        acct.update(0.0, {"alice": 4, "bob": 1})
        acct.update(3_600.0, {"alice": 8})
        acct.update(7_200.0, {"bob": 2})
        return acct

    a = history(Accountant(half_life_s=3_600.0, factors={"bob": 10.0}))
    b = Accountant(half_life_s=3_600.0, factors={"bob": 10.0})
    b.restore(a.snapshot())
    assert a.priorities(9_000.0) == b.priorities(9_000.0)
    # Each update's figure runs until the next: 4 cpus for one half-life, then 8 for one.
    assert a.usage(7_200.0)["alice"] == pytest.approx(4 * 0.5 * 0.5 + 8 * 0.5)
    assert a.priority("bob", 7_200.0) == pytest.approx(10 * max(0.5, 1 * 0.5 * 0.5))


def test_pie_shares_are_inverse_to_priority():
    assert pie_shares(10, {"alice": 0.5, "bob": 2.0}) == pytest.approx({"alice": 8, "bob": 2})


# ---------------------------------------------------------------- caching


def counting_match():
    calls = []

    def match(job_ad, slot_ad):
        calls.append(1)
        return symmetric_match(job_ad, slot_ad)

    return match, calls


def test_evaluations_are_bounded_by_slot_classes_not_slots():
    # 200 slots from 2 entries, unique Name and CloudInstanceID each: 2 static classes,
    # each slot passing through free states 4, 3, 2, 1.
    slots = [slot(f"p{i:03d}", site=f"Site{i % 2}") for i in range(200)]
    acs = [job("1", idle=300), job("2", idle=300, memory=500, rank="TARGET.Memory"),
           job("3", idle=50, requirements='TARGET.GLIDEIN_Site == "Site1"')]
    match, calls = counting_match()
    result = run(acs, slots, match_fn=match)
    assert result.match_count == 650
    assert len(calls) == result.evaluations <= len(acs) * 2 * 4
    assert len(calls) < len(slots)  # pair by pair would be 3 × 200 at the very least


def test_ads_are_parsed_once_while_unchanged():
    table = AdTable()
    slots = [slot(f"p{i}") for i in range(5)]
    run([job()], slots, table=table)
    assert table.parsed == 6
    run([job()], slots, table=table)
    assert table.parsed == 6
    slots[2] = slot("p2", memory=16_000)
    second = run([job(rank="TARGET.Memory")], slots, table=table)
    assert table.parsed == 8  # the changed slot and the new autocluster ad
    assert pilots(second) == {"p2": 1}


def test_reusing_a_table_gives_the_same_result_as_a_fresh_one():
    slots = [slot(f"p{i}", cpus=2, site=f"S{i % 3}") for i in range(9)]
    acs = [job(str(i), idle=4, rank="TARGET.Memory") for i in range(3)]
    table = AdTable()
    run(acs, slots, table=table)
    assert without_claim_ids(run(acs, slots, table=table).matches) == \
        without_claim_ids(run(acs, slots).matches)


# ---------------------------------------------------------------- against brute force


SITES = ["A", "B", "C"]


def random_resources(rng, per_cpu=0.25):
    """Custom resources of a random slot: none, or some Boats (and GPUs)."""
    some = max(1, int(per_cpu))
    return rng.choice([{}, {}, {"Boats": some * rng.choice([1, 2])},
                       {"Boats": some, "GPUs": some}])


def random_request(rng):
    """Custom resources a random autocluster asks for, spelled as users do (request_boats)."""
    return rng.choice([{}, {}, {}, {"boats": 1}, {"Boats": 2}, {"GPUs": 1}])


def random_workload(rng, slot_cpus, count_slots=30, count_acs=8):
    slots = []
    for i in range(count_slots):
        memory = rng.choice([4_000, 8_000, 16_000]) * slot_cpus // 4
        requirements = rng.choice([SLOT_REQ, SLOT_REQ + " && TARGET.RequestMemory <= 2000",
                                   SLOT_REQ + ' && TARGET.Owner =!= "mallory"'])
        slots.append(slot(f"p{i:02d}", cpus=slot_cpus, memory=memory, disk_mb=10 * memory,
                          site=rng.choice(SITES), provider=rng.choice(["aws", "local"]),
                          requirements=requirements,
                          resources=random_resources(rng, slot_cpus / 4)))
    acs = []
    for i in range(count_acs):
        clause = rng.choice(["", ' && TARGET.GLIDEIN_Site == "B"', " && TARGET.Memory >= 8000",
                             ' && TARGET.CloudProvider == "local"',
                             ' && TARGET.Name == "slot1@p03"'])
        rank = rng.choice(["", 'TARGET.GLIDEIN_Site == "C"', '(TARGET.CloudProvider == "aws") * 2'])
        acs.append(job(f"ac{i}", owner=rng.choice(["alice", "bob"]), idle=rng.randint(1, 5),
                       cpus=rng.choice([1, 2]), memory=rng.choice([1000, 3000]),
                       requirements=BASIC_REQ + clause, rank=rank,
                       desired_sites=rng.choice(["", "", "A,C"]),
                       resources=random_request(rng)))
    return acs, slots


def slot_ad_with(s, free):
    """The slot's ad with `free` written in: (cpus, MiB, MB disk[, custom amounts])."""
    ad = ClassAd(s.ad)
    ad["Cpus"], ad["Memory"], ad["Disk"] = free[0], free[1], free[2] * 1024
    for name, amount in dict(free[3] if len(free) > 3 else {}).items():
        ad[name] = amount
    return ad


def free_of(s):
    """A slot's free resources, custom ones by lower-case name."""
    return (s.free_cpus, s.free_memory_mb, s.free_disk_mb,
            {name.lower(): amount for name, amount in s.free_resources.items()})


def request_of(job_ad):
    """(cpus, MiB, MB disk, custom amounts by lower-case name) a job ad asks for."""
    disk_mb = -(-job_ad["RequestDisk"] // 1024)  # KiB rounded up to MB
    custom = {name[len("Request"):].lower(): job_ad[name] for name in job_ad
              if name.lower().startswith("request")
              and name.lower() not in ("requestcpus", "requestmemory", "requestdisk")}
    return job_ad["RequestCpus"], job_ad["RequestMemory"], disk_mb, custom


def fits(request, free) -> bool:
    return all(r <= f for r, f in zip(request[:3], free[:3], strict=True)) and all(
        free[3].get(name, 0) >= amount for name, amount in request[3].items())


def carve(free, request):
    return (*(f - r for f, r in zip(free[:3], request[:3], strict=True)),
            {name: have - request[3].get(name, 0) for name, have in free[3].items()})


def brute_force(acs, slots):
    """Every job against every slot with classad2, carving as it goes: the reference."""
    free = {s.pilot_id: free_of(s) for s in slots}
    site = {s.pilot_id: s.site for s in slots}
    ranks = {}
    for ac in acs:
        job_ad = ClassAd(ac.ad)
        request = request_of(job_ad)
        sites = {x.strip() for x in ac.desired_sites.split(",") if x.strip()}
        ranks[ac.id] = []
        for _ in range(ac.idle):
            best = None
            for s in slots:
                ad = slot_ad_with(s, free[s.pilot_id])
                ok = fits(request, free[s.pilot_id])
                if ok and (not sites or site[s.pilot_id] in sites) and job_ad.symmetricMatch(ad):
                    rank = _rank(job_ad, ad)
                    if best is None or rank > best[0]:
                        best = (rank, s.pilot_id)
            if best is None:
                break
            free[best[1]] = carve(free[best[1]], request)
            ranks[ac.id].append(best[0])
    return ranks


def _rank(job_ad, slot_ad):
    if "Rank" not in job_ad:
        return 0.0
    value = job_ad.lookup("Rank").eval(scope=job_ad, target=slot_ad)
    is_number = isinstance(value, (bool, int, float)) and not isinstance(value, Value)
    return float(value) if is_number else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_grouped_matching_equals_pairwise_when_resources_are_ample(seed):
    acs, slots = random_workload(random.Random(seed), slot_cpus=64)
    result = run(acs, slots)
    reference = brute_force(acs, slots)
    for ac in acs:
        claims = result.matches.get(("schedd", ac.id), [])
        assert len(claims) == len(reference[ac.id]), ac
        job_ad = ClassAd(ac.ad)
        by_id = {s.pilot_id: s for s in slots}
        ours = [_rank(job_ad, slot_ad_with(by_id[c.pilot_id], (64, 10**6, 10**7))) for c in claims]
        assert sorted(ours) == sorted(reference[ac.id]), ac


@pytest.mark.parametrize("seed", range(6))
def test_every_claim_was_a_valid_match_when_made(seed):
    acs, slots = random_workload(random.Random(100 + seed), slot_cpus=4, count_slots=10)
    result = run(acs, slots)
    assert result.match_count > 0
    by_id = {s.pilot_id: s for s in slots}
    free = {s.pilot_id: free_of(s) for s in slots}
    made = sorted(((int(c.claim_id.split(".")[1]), key, c) for key, claims in result.matches.items()
                   for c in claims), key=lambda t: t[0])
    ads = {ac.id: ClassAd(ac.ad) for ac in acs}
    for _, (_, ac_id), claim in made:
        before = free[claim.pilot_id]
        assert ads[ac_id].symmetricMatch(slot_ad_with(by_id[claim.pilot_id], before))
        # The claim takes what the job asks for, custom resources named as the slot names them.
        request = request_of(ads[ac_id])
        assert (claim.cpus, claim.memory_mb, claim.disk_mb) == request[:3]
        assert claim.resources.keys() <= by_id[claim.pilot_id].free_resources.keys()
        assert {n.lower(): a for n, a in claim.resources.items()} == request[3]
        after = carve(before, request)
        assert min(after[:3]) >= 0 and min(after[3].values(), default=0) >= 0, "over-committed"
        free[claim.pilot_id] = after
