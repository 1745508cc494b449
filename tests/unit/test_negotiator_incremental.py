"""Passes that keep their table between them decide as a fresh pass would, and matching a
class of slots at once gives each job the slot a one-by-one greedy pass would."""

from __future__ import annotations

import dataclasses
import random

import pytest
from classad2 import ClassAd

from services.negotiator.logic import AdTable, negotiate
from tests.unit.test_negotiator_logic import (
    BASIC_REQ,
    carve,
    fits,
    free_of,
    job,
    random_request,
    random_resources,
    random_workload,
    request_of,
    slot,
    slot_ad_with,
)


def decisions(result):
    """What a pass decided, claim ids aside (they are random by design)."""
    return result.runs, result.reasons, result.cpus_by_owner


def mutate_pool(rng, slots, step):
    """Pilots come, go, retire, and advertise other free resources or another ad."""
    changed = []
    for s in slots:
        roll = rng.random()
        if roll < 0.05:
            continue  # gone
        if roll < 0.15:
            cpus = s.free_cpus if s.free_cpus > 0 else 1
            used = rng.randint(0, cpus)
            s = dataclasses.replace(s, free_cpus=cpus - used, seq=s.seq + 1,
                                    free_memory_mb=max(0, s.free_memory_mb - 700 * used),
                                    free_resources={n: rng.randint(0, have) for n, have
                                                    in s.free_resources.items()})
        elif roll < 0.2:
            s = dataclasses.replace(s, state="retiring" if s.state != "retiring" else "idle")
        elif roll < 0.25:
            s = dataclasses.replace(s, ad=s.ad.replace('Arch = "X86_64"', 'Arch = "aarch64"'),
                                    seq=s.seq + 1)
        changed.append(s)
    for i in range(rng.randint(0, 6)):
        changed.append(slot(f"new{step}-{i}", cpus=rng.choice([1, 4, 8]),
                            site=rng.choice(["A", "B", "C"]),
                            provider=rng.choice(["aws", "local"]),
                            resources=random_resources(rng)))
    rng.shuffle(changed)
    return changed


def mutate_queue(rng, acs, step):
    """Jobs start and finish; autoclusters come, some reading attributes nobody read yet."""
    changed = [dataclasses.replace(ac, idle=rng.randint(0, 6), running=rng.randint(0, 3))
               if rng.random() < 0.3 else ac for ac in acs if rng.random() > 0.05]
    new_clause = rng.choice(['TARGET.Arch == "X86_64"', "TARGET.Cpus >= 4",
                             'TARGET.CloudInstanceID =!= "i-p01"', "TARGET.HasGPU =!= true"])
    changed.append(job(f"n{step}", owner=rng.choice(["alice", "bob", "carol"]),
                       idle=rng.randint(1, 8), requirements=f"{BASIC_REQ} && {new_clause}",
                       rank=rng.choice(["", "TARGET.Memory"]), resources=random_request(rng)))
    return changed


@pytest.mark.parametrize("seed", range(4))
def test_a_kept_table_decides_as_a_fresh_one_over_random_changes(seed):
    rng = random.Random(seed)
    # 300 pilots with their own Name: an autocluster reading Name gets a partition of its own.
    acs, slots = random_workload(rng, slot_cpus=4, count_slots=300, count_acs=12)
    priorities = {"alice": 1.0, "bob": 3.0, "carol": 0.5}
    table = AdTable()
    for step in range(6):
        kept = negotiate({"s": acs}, slots, priorities, table=table, claim_prefix="x")
        fresh = negotiate({"s": acs}, slots, priorities, claim_prefix="x")
        assert kept.match_count > 0
        assert decisions(kept) == decisions(fresh), f"step {step}"
        again = negotiate({"s": acs}, slots, priorities, table=table, claim_prefix="x")
        assert decisions(again) == decisions(fresh)
        assert again.evaluations == 0, "nothing changed: everything was evaluated before"
        slots, acs = mutate_pool(rng, slots, step), mutate_queue(rng, acs, step)


def expanded(result, key):
    return [pilot for pilots, per, _ in result.runs.get(key, [])
            for pilot in pilots for _ in range(per)]


def one_by_one(acs, slots, table):
    """The reference: each job of each autocluster (JobPrio order) to the slot first in line
    by (Rank, least free (cpus, MiB, MB disk, then custom amounts by name), what the job
    sees of it, pilot id), carved as it goes."""
    part = table.pool.main
    reader = table.pool.reader
    free = {s.pilot_id: free_of(s) for s in slots if s.state != "retiring"}
    by_id = {s.pilot_id: s for s in slots}
    order = sorted(acs, key=lambda ac: (-ClassAd(ac.ad).get("JobPrio", 0), ac.id))
    made = {}
    for ac in order:
        j = table.job(ac.ad, ac.owner, ac.desired_sites)
        request = request_of(ClassAd(ac.ad))
        made[ac.id] = []
        for _ in range(ac.idle):
            best = None
            for pilot, f in free.items():
                s = by_id[pilot]
                if not fits(request, f) or (j.sites and s.site.casefold() not in j.sites):
                    continue
                ad = slot_ad_with(s, f)
                if j.ad.symmetricMatch(ad) is not True:
                    continue
                seen = part.kind_of[pilot].seen_by(j.refs, reader)
                candidate = (-j.rank(ad), *f[:3], sorted(f[3].items()), seen, pilot)
                best = candidate if best is None or candidate < best else best
            if best is None:
                break
            pilot = best[-1]
            free[pilot] = carve(free[pilot], request)
            made[ac.id].append(pilot)
    return made


@pytest.mark.parametrize("seed", range(8))
def test_matching_classes_at_once_gives_each_job_the_slot_one_by_one_would(seed):
    rng = random.Random(50 + seed)
    acs, slots = random_workload(rng, slot_cpus=rng.choice([4, 8]), count_slots=24,
                                 count_acs=8)
    acs = [dataclasses.replace(ac, owner="alice", idle=rng.randint(1, 12)) for ac in acs]
    table = AdTable()
    result = negotiate({"s": acs}, slots, {}, table=table)
    reference = one_by_one(acs, slots, table)
    assert result.match_count > 0
    for ac in acs:
        assert expanded(result, ("s", ac.id)) == reference[ac.id], ac.id


def test_claims_are_numbered_in_the_order_they_were_made():
    result = negotiate({"s": [job("a", idle=5), job("b", idle=3, cpus=2)]},
                       [slot("p1", cpus=4), slot("p2", cpus=4)], {}, claim_prefix="t")
    numbers = sorted(int(c.claim_id.split(".")[1]) for cs in result.matches.values() for c in cs)
    assert numbers == list(range(1, result.match_count + 1))
