"""`burst bench negotiate`: negotiation passes over a realistic pool, cold and incremental.

    workload(seed) ─▶ demand, slots ─▶ negotiate()  cold: a fresh table reads every ad
                                    ─▶ negotiate()  warm: same table, nothing changed
                     1% of slots re-advertised ─▶ negotiate()  changed: same table
                                    ─▶ negotiate()  fresh table, same input: must equal it
                     sample of job ads × slot ads ─▶ symmetricMatch per pair ─▶ pairs/s

The pairwise figure is what matching job by job, slot by slot would cost;
`ratio_vs_pairwise` is that extrapolated time over the cold pass, a
machine-independent measure of what autoclusters and slot classes buy;
`speedup_changed_vs_cold` is the cold pass's time over the changed one's, what keeping
the table between passes buys. A pass decides runs of claims; `offers_s` is
making the claims of the cold pass (ids and messages), as the service does
when it sends them.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import resource
import time
from dataclasses import dataclass

import psutil
from classad2 import ClassAd

from schemas.demand import AutoCluster
from schemas.slot import SlotAdvertised

from .accounting import Accountant
from .logic import AdTable, negotiate

_SITES = ["UCSD", "Nebraska", "Wisconsin", "FNAL", "Purdue", "MIT", "Caltech", "UChicago",
          "AWS_US_East", "AWS_US_West", "CERN_OpenStack", "Cesnet_OpenNebula"]
_PROVIDERS = {"AWS_US_East": "aws", "AWS_US_West": "aws", "CERN_OpenStack": "openstack",
              "Cesnet_OpenNebula": "opennebula"}
_INSTANCE_TYPES = {  # cpus, MiB
    "aws": [("m5.xlarge", 4, 15_000), ("m5.2xlarge", 8, 31_000), ("c5.2xlarge", 8, 15_000),
            ("m6g.xlarge", 4, 15_000)],
    "openstack": [("m1.large", 4, 7_800), ("m1.xlarge", 8, 15_600), ("c1.6", 6, 11_700)],
    "opennebula": [("medium", 4, 8_000), ("large", 8, 16_000)],
    "local": [("batch4", 4, 8_000), ("batch8", 8, 16_000), ("batch6", 6, 24_000)],
}
_OWNERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
CHANGED_FRACTION = 0.01


@dataclass(frozen=True)
class _Entry:
    name: str
    site: str
    provider: str
    instance_type: str
    cpus: int
    memory_mb: int
    arch: str


def run(jobs: int = 100_000, autoclusters: int = 100, slots: int = 10_000, seed: int = 7) -> dict:
    rng = random.Random(seed)
    entries = _entries(rng, count=36)
    slot_ads = _slots(rng, entries, slots)
    demand = {"schedd-1": [], "schedd-2": []}
    for i, ac in enumerate(_autoclusters(rng, autoclusters, jobs)):
        demand[f"schedd-{1 + i % 2}"].append(ac)
    priorities = _priorities()
    gc.collect()
    rss_before = _rss_mib()

    table = AdTable()
    cold_s, cold_cpu_s, cold = _timed(lambda: negotiate(demand, slot_ads, priorities,
                                                        table=table))
    rss_after_cold = _rss_mib()
    warm_s, warm_cpu_s, warm = _timed(lambda: negotiate(demand, slot_ads, priorities,
                                                        table=table))
    changed_ads = _readvertise(rng, entries, slot_ads, CHANGED_FRACTION)
    changed_s, changed_cpu_s, changed = _timed(lambda: negotiate(demand, changed_ads,
                                                                 priorities, table=table))
    rss_tables = _rss_mib()
    offers_s, _, _ = _timed(lambda: cold.matches)
    fresh = negotiate(demand, changed_ads, priorities)
    pairs_per_s = _pairwise_rate(rng, demand, slot_ads)
    pairwise_s = jobs * slots / pairs_per_s
    return {
        "jobs": sum(ac.idle for acs in demand.values() for ac in acs),
        "autoclusters": sum(len(acs) for acs in demand.values()),
        "slots": len(slot_ads),
        "cold_pass_s": round(cold_s, 3),
        "warm_pass_s": round(warm_s, 3),
        "changed_pass_s": round(changed_s, 3),
        # CPU time of this process: what a pass costs on a machine shared with other work.
        "cold_pass_cpu_s": round(cold_cpu_s, 3),
        "warm_pass_cpu_s": round(warm_cpu_s, 3),
        "changed_pass_cpu_s": round(changed_cpu_s, 3),
        "changed_slots": sum(a is not b for a, b in zip(slot_ads, changed_ads, strict=True)),
        "speedup_changed_vs_cold": round(cold_s / changed_s, 1),
        "pass_s": round(cold_s, 3),
        "offers_s": round(offers_s, 3),
        "rss_mib": round(max(rss_after_cold, rss_tables), 1),
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "matches": cold.match_count,
        "matched_cpus": sum(cold.cpus_by_owner.values()),
        "warm_matches": warm.match_count,
        "changed_matches": changed.match_count,
        "changed_equals_fresh": _same(changed, fresh),
        "warm_equals_cold": _same(warm, cold),
        "evaluations_cold": cold.evaluations,
        "evaluations_changed": changed.evaluations,
        "slot_classes": cold.slot_classes,
        "slots_retiring": sum(s.state == "retiring" for s in slot_ads),
        "free_cpus": sum(s.free_cpus for s in slot_ads if s.state != "retiring"),
        "unmatched_autoclusters": len(cold.reasons),
        "pairwise_pairs_per_s": round(pairs_per_s),
        "pairwise_s_extrapolated": round(pairwise_s, 1),
        "ratio_vs_pairwise": round(pairwise_s / cold_s, 1),
        "cpus_by_owner": ", ".join(f"{o}={cold.cpus_by_owner.get(o, 0)} (prio {p:.1f})"
                                   for o, p in sorted(cold.priorities.items())),
        "sample_reasons": " | ".join(sorted(set(cold.reasons.values()))[:6]),
    }


def format_report(result: dict) -> str:
    r = result
    lines = [
        (f"negotiation: {r['jobs']:,} idle jobs in {r['autoclusters']:,} autoclusters, "
         f"{r['slots']:,} slots ({r['slots_retiring']:,} retiring, {r['free_cpus']:,} free cpus)"),
        (f"  cold pass (reads every ad)        {r['cold_pass_s']:.3f} s "
         f"({r['cold_pass_cpu_s']:.3f} s cpu)"),
        (f"  warm pass (nothing changed)       {r['warm_pass_s']:.3f} s "
         f"({r['warm_pass_cpu_s']:.3f} s cpu)"),
        (f"  changed pass ({r['changed_slots']:,} slots changed)  {r['changed_pass_s']:.3f} s "
         f"({r['changed_pass_cpu_s']:.3f} s cpu; {r['speedup_changed_vs_cold']:,}x faster "
         f"than cold; the same result as a fresh table: {r['changed_equals_fresh']})"),
        f"  claims of the cold pass made in   {r['offers_s']:.3f} s",
        f"  matches                           {r['matches']:,} ({r['matched_cpus']:,} cpus)",
        (f"  classad evaluations               {r['evaluations_cold']:,} cold, "
         f"{r['evaluations_changed']:,} changed, over {r['slot_classes']:,} slot classes"),
        (f"  pairwise symmetricMatch           {r['pairwise_pairs_per_s']:,} pairs/s -> "
         f"{r['pairwise_s_extrapolated']:,.0f} s for every job x slot"),
        f"  ratio vs pairwise                 {r['ratio_vs_pairwise']:,.0f}x",
        (f"  rss                               {r['rss_mib']:.0f} MiB "
         f"({r['rss_before_mib']:.0f} MiB of it the workload; peak {r['peak_rss_mib']:.0f})"),
        f"  cpus matched by owner             {r['cpus_by_owner']}",
        f"  unmatched autoclusters            {r['unmatched_autoclusters']}: {r['sample_reasons']}",
    ]
    return "\n".join(lines)


def _same(a, b) -> bool:
    """Equal decisions: the same runs of claims (claim ids are made later, at random)."""
    return a.runs == b.runs and a.reasons == b.reasons and a.cpus_by_owner == b.cpus_by_owner


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _readvertise(rng: random.Random, entries: list[_Entry], slots: list[SlotAdvertised],
                 fraction: float) -> list[SlotAdvertised]:
    """The same pool after `fraction` of its pilots advertised again: another state and
    free resources, and for half of them a renewed ad (a new GLIDEIN_ToRetire)."""
    changed = list(slots)
    by_name = {e.name: e for e in entries}
    for i in rng.sample(range(len(slots)), max(1, int(len(slots) * fraction))):
        old = slots[i]
        new = _slot(rng, i, by_name[old.entry])
        ad = new.ad if rng.random() < 0.5 else old.ad
        changed[i] = dataclasses.replace(new, ad=ad, seq=old.seq + 1)
    return changed


def _timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu, value


def _priorities() -> dict[str, float]:
    # A day of history: heavy users have worse (higher) priorities.
    accountant = Accountant()
    accountant.update(0.0, {"alice": 400, "bob": 50, "carol": 2000, "dave": 10})
    accountant.update(43_200.0, {"alice": 300, "bob": 80, "carol": 1500, "erin": 5})
    return accountant.priorities(86_400.0)


def _entries(rng: random.Random, count: int) -> list[_Entry]:
    entries = []
    for i in range(count):
        site = _SITES[i % len(_SITES)]
        provider = _PROVIDERS.get(site, "local")
        itype, cpus, memory = rng.choice(_INSTANCE_TYPES[provider])
        arch = "aarch64" if itype.startswith("m6g") else "X86_64"
        name = f"{provider}_{site}_{itype}_{i}".replace(".", "_")
        entries.append(_Entry(name, site, provider, itype, cpus, memory, arch))
    return entries


def _slots(rng: random.Random, entries: list[_Entry], count: int) -> list[SlotAdvertised]:
    weights = [rng.uniform(0.5, 3) for _ in entries]
    return [_slot(rng, i, rng.choices(entries, weights)[0]) for i in range(count)]


def _slot(rng: random.Random, i: int, e: _Entry) -> SlotAdvertised:
    disk_mb = 20_000 * e.cpus
    state = rng.choices(["idle", "busy", "retiring"], [0.6, 0.36, 0.04])[0]
    free_cpus = e.cpus if state == "idle" else rng.randint(0, e.cpus - 1)
    share = free_cpus / e.cpus
    ad = f"""[
        Name = "slot1@glidein_{i}@{e.name}.pool"; MyType = "Machine";
        Cpus = {e.cpus}; Memory = {e.memory_mb}; Disk = {disk_mb * 1024};
        TotalCpus = {e.cpus}; TotalMemory = {e.memory_mb}; PartitionableSlot = true;
        Arch = "{e.arch}"; OpSys = "LINUX"; OpSysAndVer = "AlmaLinux9";
        GLIDEIN_Site = "{e.site}"; GLIDEIN_ResourceName = "{e.site}";
        GLIDEIN_Entry_Name = "{e.name}"; GLIDEIN_Factory = "burst-factory";
        GLIDEIN_ToRetire = {1_700_000_000 + rng.randint(0, 86_400)};
        CloudProvider = "{e.provider}"; CloudInstanceID = "i-{i:017x}";
        CloudInstanceType = "{e.instance_type}"; CloudSpot = {str(rng.random() < 0.3).lower()};
        StartdIpAddr = "<10.{i // 65536}.{i // 256 % 256}.{i % 256}:9618>";
        IsGlidein = true;
        START = TARGET.RequestCpus <= MY.Cpus && TARGET.RequestMemory <= MY.Memory;
        Requirements = START && TARGET.RequestDisk <= MY.Disk
    ]"""
    return SlotAdvertised(
        pilot_id=f"pilot-{i:05d}", ad=ad, state=state, free_cpus=free_cpus,
        free_memory_mb=int(e.memory_mb * share), free_disk_mb=int(disk_mb * share),
        entry=e.name, site=e.site, provider=e.provider,
    )


def _autoclusters(rng: random.Random, count: int, jobs: int) -> list[AutoCluster]:
    if jobs < count:
        raise ValueError("need at least one idle job per autocluster")
    # Heavy-tailed sizes, as real queues have: a few big clusters and many small ones.
    weights = [rng.paretovariate(1.2) for _ in range(count)]
    spare = jobs - count
    idle = [1 + int(spare * w / sum(weights)) for w in weights]
    idle[weights.index(max(weights))] += jobs - sum(idle)  # exact total, on the biggest
    return [_autocluster(rng, i, n) for i, n in enumerate(idle)]


def _autocluster(rng: random.Random, i: int, idle: int) -> AutoCluster:
    cpus = rng.choices([1, 2, 4], [0.7, 0.2, 0.1])[0]
    memory = cpus * rng.choice([1_000, 1_500, 2_000, 2_500, 3_500])
    disk_kib = rng.choice([1, 2, 5, 10]) * 1_000_000
    clauses = ["TARGET.Arch == \"X86_64\"", "TARGET.OpSys == \"LINUX\"",
               "TARGET.Disk >= RequestDisk", "TARGET.Memory >= RequestMemory",
               "TARGET.Cpus >= RequestCpus"]
    clauses += rng.choice([[], [], [], _site_clause(rng), ["TARGET.CloudProvider =!= \"aws\""],
                           ["TARGET.CloudProvider == \"local\""], ["TARGET.Memory >= 4000"],
                           ["TARGET.CloudSpot =!= true"], ["TARGET.HasGPU =?= true"]])
    rank = rng.choice(["", "", "Rank = TARGET.Memory;", "Rank = TARGET.Cpus;",
                       "Rank = (TARGET.CloudProvider == \"local\") * 10;"])
    desired = ",".join(rng.sample(_SITES, 2)) if rng.random() < 0.15 else ""
    ad = (f"[RequestCpus = {cpus}; RequestMemory = {memory}; RequestDisk = {disk_kib}; "
          f"JobPrio = {rng.choice([0, 0, 0, 5, 10])}; {rank} "
          f"Requirements = {' && '.join(clauses)}]")
    return AutoCluster(id=str(i), owner=rng.choice(_OWNERS), ad=ad, idle=idle,
                       desired_sites=desired)


def _site_clause(rng: random.Random) -> list[str]:
    a, b = rng.sample(_SITES, 2)
    return [f"(TARGET.GLIDEIN_Site == \"{a}\" || TARGET.GLIDEIN_Site == \"{b}\")"]


def _pairwise_rate(rng: random.Random, demand: dict, slots: list[SlotAdvertised],
                   sample: int = 200) -> float:
    """symmetricMatch pairs per second over a sample, ads parsed beforehand (not timed)."""
    acs = [ac for acs in demand.values() for ac in acs]
    job_ads = [ClassAd(ac.ad) for ac in rng.choices(acs, [ac.idle for ac in acs], k=sample)]
    slot_ads = []
    for s in rng.sample(slots, min(sample, len(slots))):
        ad = ClassAd(s.ad)
        ad["Cpus"], ad["Memory"], ad["Disk"] = s.free_cpus, s.free_memory_mb, s.free_disk_mb * 1024
        slot_ads.append(ad)
    start = time.perf_counter()
    for job in job_ads:
        for slot in slot_ads:
            job.symmetricMatch(slot)
    return len(job_ads) * len(slot_ads) / (time.perf_counter() - start)
