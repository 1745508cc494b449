"""One negotiation pass: autoclusters × classes of slots, never jobs × slots.

    demand: schedd → [AutoCluster] ─┐                    runs of claims per autocluster
    slots:  [SlotAdvertised]        ├─▶ negotiate() ─▶   reasons: why the rest still waits
    priorities (Accountant)        ─┘
    AdTable (kept by the service) ◀─▶ slots read, classes, job ads, evaluations

classad2 runs about 80k symmetric matches per second per core, so a million
idle jobs × 100k slots can never be looked at pair by pair. The jobs of an
autocluster are equal for matching (the schedd grouped them), and slots that
show an autocluster the same texts with the same free resources are equal to
it (pool.py cuts the pool into such classes, matcher.py walks them), so a pass
evaluates (autocluster, class) pairs, and only those it has not seen before:
the AdTable keeps every reading and evaluation between passes, so the work of
a pass follows what changed (new or changed slot ads, new autoclusters), and
its result equals a pass over a fresh table.

Who gets what (HTCondor's order):
- accounting groups first ([[accounting_group]] quotas, groups.py): each group
  in turn, most starved first, up to what its quota (and any surplus) allows;
  with no groups configured every principal is in one group without a cap;
- within a group, principals (AccountingGroup "group.user", else the owner)
  share the free cpus by priority (the pie spin, accounting.pie_shares);
- a principal's autoclusters go in JobPrio order, each job to the best slot;
- concurrency limits cap every autocluster that names them, running jobs counted;
- nice-user jobs last, on what nobody else took.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import classad2
from classad2 import ClassAd

from schemas.demand import AutoCluster
from schemas.slot import SlotAdvertised

from . import custom, groups, reasons
from .accounting import DEFAULT_FLOOR, pie_shares
from .groups import NICE_USER_GROUP, ROOT, FairSharePolicy
from .jobs import JobAd
from .matcher import Matcher, Run, VKey
from .pool import SlotPool, attributes_of
from .result import AcKey, NegotiationResult

MatchFn = Callable[[ClassAd, ClassAd], bool]
ALLOCATION_ROUNDS = 3  # HTCondor's GROUP_QUOTA_MAX_ALLOCATION_ROUNDS
_EPSILON = 1e-9


def symmetric_match(job: ClassAd, slot: ClassAd) -> bool:
    return job.symmetricMatch(slot)


@dataclass(frozen=True)
class NegotiationConfig:
    default_request_cpus: int = 1
    default_request_memory_mb: int = 128
    default_request_disk_kib: int = 1024
    default_priority: float = DEFAULT_FLOOR  # principals the Accountant has not seen yet
    policy: FairSharePolicy = field(default_factory=FairSharePolicy)


# What no real machine has: an ad claiming more is a bug or a lie, and would win every match.
MAX_SLOT_CPUS = 100_000
MAX_SLOT_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_SLOT_DISK_MB = 1024**4  # 1 EiB
MAX_SLOT_CUSTOM = 1_000_000  # of any custom resource (GPUs, Boats, ...)


def slot_problem(msg: SlotAdvertised, slot: ClassAd) -> str:
    """Why a slot ad cannot be believed ("" when it can): resources that are negative, not
    numbers, fewer than one cpu, absurdly large, or more free than the slot has; custom
    ones (MachineResources) included."""
    limits = {"cpus": MAX_SLOT_CPUS, "memory_mb": MAX_SLOT_MEMORY_MB, "disk_mb": MAX_SLOT_DISK_MB}
    free = {"cpus": msg.free_cpus, "memory_mb": msg.free_memory_mb,
            "disk_mb": msg.free_disk_mb}
    total = {"cpus": _number(slot, "TotalCpus", msg.free_cpus),
             "memory_mb": _number(slot, "TotalMemory", msg.free_memory_mb),
             "disk_mb": _number(slot, "TotalDisk", msg.free_disk_mb * 1024) / 1024}
    for name in custom.names_of(slot.get("MachineResources")):
        found = custom.lookup(msg.free_resources, name)
        free[name] = _number(slot, name, 0) if found is None else found
        total[name] = _number(slot, f"Total{name}", free[name])
        limits[name] = MAX_SLOT_CUSTOM
    for name, limit in limits.items():
        if not math.isfinite(total[name]) or not 0 <= total[name] <= limit:
            return f"total {name} {total[name]:g} is not between 0 and {limit}"
        if not 0 <= free[name] <= total[name]:
            return f"free {name} {free[name]} is not between 0 and the total {total[name]:g}"
    if total["cpus"] < 1:
        return f"total cpus {total['cpus']:g} is less than 1"
    return ""


def _number(ad: ClassAd, name: str, default: float) -> float:
    value = ad.get(name)  # a literal comes back as is, cheaper than evaluating it
    if isinstance(value, (classad2.ExprTree, list)):
        value = ad.eval(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default if value is None else math.nan
    return float(value)


class AdTable:
    """What passes keep: slot ads read and cut into classes, job ads parsed, evaluations.

    The service keeps one table for its lifetime and passes it to every
    `negotiate()`; a pass on an unchanged pool reads nothing and evaluates
    nothing. Each slot class has one representative ClassAd, no slot has its own.
    """

    def __init__(self, config: NegotiationConfig | None = None) -> None:
        self.config = config or NegotiationConfig()
        self.pool = SlotPool()
        self.jobs_parsed = 0
        self._jobs: dict[tuple[str, str, str], JobAd] = {}
        self._representatives: dict[str, list] = {}  # seen -> [ClassAd | None, custom written]

    @property
    def parsed(self) -> int:
        """Ad texts read so far (slots and jobs), for metrics and tests."""
        return self.pool.parsed + self.jobs_parsed

    def job(self, text: str, owner: str, desired_sites: str = "") -> JobAd:
        key = (text, owner, desired_sites)
        known = self._jobs.get(key)
        if known is None:
            known = self._jobs[key] = JobAd.parse(text, owner, desired_sites, self.config)
            self.jobs_parsed += 1
        return known

    def slot_ad(self, vkey: VKey) -> ClassAd | None:
        """A ClassAd of what a class of slots shows an autocluster, with its free resources
        written in: one per such view, rewritten for each class that shares it."""
        seen, cpus, memory_mb, disk_mb, amounts = vkey
        found = self._representatives.get(seen)
        if found is None:
            if len(self._representatives) > 100_000:
                self._representatives.clear()
            text = "; ".join(f"{n} = {t}" for n, t in attributes_of(seen).items())
            try:
                found = [ClassAd(f"[{text}]"), custom.NONE]
            except classad2.ClassAdException:
                found = [None, custom.NONE]  # cannot be evaluated: matches nothing
            self._representatives[seen] = found
        ad, written = found
        if ad is not None:
            ad["Cpus"], ad["Memory"], ad["Disk"] = cpus, memory_mb, disk_mb * 1024  # KiB
            if amounts != written:  # custom resources of another class that shares the view
                for name, _ in written:
                    del ad[name]
                for name, amount in amounts:
                    ad[name] = amount
                found[1] = amounts
        return ad

    def retain(self, jobs: set[tuple[str, str, str]]) -> None:
        """Forget job ads that were not in the last pass, so the table tracks the queue."""
        self._jobs = {k: v for k, v in self._jobs.items() if k in jobs}
        for job in self._jobs.values():
            job.trim()


def negotiate(
    demand: Mapping[str, Sequence[AutoCluster]],
    slots: Sequence[SlotAdvertised],
    priorities: Mapping[str, float],
    *,
    table: AdTable | None = None,
    claim_prefix: str | None = None,
    match_fn: MatchFn = symmetric_match,
    claimed: Mapping[AcKey, int] | None = None,
) -> NegotiationResult:
    """Match idle autoclusters to free slot resources; pure but for the `table` cache.

    `priorities` are effective priorities per principal (lower is better), e.g.
    `Accountant.priorities(now)`. `claimed` counts claims made by earlier passes
    that the demand may not show yet (running, for group quotas and limits).
    `claim_prefix` makes claim ids unique across passes (a random one by
    default). `match_fn(job_ad, slot_ad)` is the one place ads are matched:
    tests wrap it to count evaluations.
    """
    table = table if table is not None else AdTable()
    table.pool.sync(slots)
    queue = _Queue.read(demand, table, claimed or {})
    layout = table.pool.arrange({d.job.refs for d in queue.idle})
    floors: dict = {}
    for d in queue.idle:
        part, request = layout[d.job.refs], tuple(d.job.request)
        floor = floors.get(part, request)
        floors[part] = tuple(map(min, floor, request))
    run = _Pass(table, queue, Matcher(table, layout, match_fn, floors))
    used_priorities = {p: priorities.get(p, table.config.default_priority)
                       for p in {d.job.charge.principal for d in queue.idle}}
    run.allocate(used_priorities)
    why = reasons.Explainer(table, layout, run.matcher, run)
    for d in queue.idle:
        if d.remaining and not d.runs:
            queue.reasons[d.key] = why.explain(d)
    table.retain(queue.ads)
    return NegotiationResult(
        runs={d.key: d.runs for d in queue.idle if d.runs},
        requests={d.key: d.job.request for d in queue.idle if d.runs},
        reasons=queue.reasons,
        owners={d.key: d.ac.owner for d in queue.idle},
        schedds=tuple(sorted(demand)),
        cpus_by_owner={p: c for p, c in run.cpus_by_principal.items() if c},
        cpus_by_group={g: c for g, c in run.cpus_by_group.items() if c},
        priorities=used_priorities,
        evaluations=run.matcher.evaluations,
        slot_classes=sum(len(p.classes) for p in set(layout.values())),
        claim_prefix=claim_prefix or uuid.uuid4().hex[:12],
        # A copy (a few ms for 100k pilots): later passes replace records.
        slots=dict(table.pool.records),
    )


@dataclass(eq=False)
class Demand:
    key: AcKey
    ac: AutoCluster
    job: JobAd
    remaining: int
    runs: list[Run] = field(default_factory=list)
    # At some turn slots may have been there but a share was used up: what held it back.
    share_limited: bool = False
    limited_by: str = ""  # the concurrency limit that stopped it, if one did


@dataclass
class _Queue:
    """The demand of every schedd, read: idle autoclusters, and what runs already."""

    idle: list[Demand] = field(default_factory=list)
    reasons: dict[AcKey, str] = field(default_factory=dict)
    ads: set[tuple[str, str, str]] = field(default_factory=set)
    group_usage: dict[str, float] = field(default_factory=dict)  # cpus running per group
    limit_usage: dict[str, float] = field(default_factory=dict)  # running per limit

    @classmethod
    def read(cls, demand: Mapping[str, Sequence[AutoCluster]], table: AdTable,
             claimed: Mapping[AcKey, int]) -> _Queue:
        queue = cls()
        for schedd in sorted(demand):
            for ac in demand[schedd]:
                key = (schedd, ac.id)
                running = ac.running + claimed.get(key, 0)
                if ac.idle <= 0 and running <= 0:
                    continue
                try:
                    job = table.job(ac.ad, ac.owner, ac.desired_sites)
                except classad2.ClassAdException:
                    if ac.idle > 0:
                        queue.reasons[key] = "its ClassAd does not parse"
                    continue
                queue.ads.add((ac.ad, ac.owner, ac.desired_sites))
                queue.count(job, running)
                if ac.idle > 0:
                    queue.idle.append(Demand(key, ac, job, ac.idle))
        return queue

    def count(self, job: JobAd, running: float) -> None:
        group = job.charge.group
        self.group_usage[group] = self.group_usage.get(group, 0.0) + running * job.request.cpus
        for name, amount in job.charge.limits:
            self.limit_usage[name] = self.limit_usage.get(name, 0.0) + running * amount


class _Pass:
    """Who gets what: groups in turn, principals by the pie, autoclusters in JobPrio order."""

    def __init__(self, table: AdTable, queue: _Queue, matcher: Matcher) -> None:
        self.policy = table.config.policy
        self.pool = table.pool
        self.queue = queue
        self.matcher = matcher
        self.cpus_by_principal: dict[str, int] = {}
        self.cpus_by_group: dict[str, int] = {}
        self.limit_usage = dict(queue.limit_usage)
        self.group_usage = dict(queue.group_usage)
        self.quotas: dict[str, float] = {}  # per group, when groups are configured
        self.targets: dict[str, float] = {}  # what each group could hold, last round

    def allocate(self, priorities: dict[str, float]) -> None:
        by_group: dict[str, dict[str, list[Demand]]] = {}
        for d in sorted(self.queue.idle, key=lambda d: (-d.job.job_prio, d.key)):
            charge = d.job.charge
            by_group.setdefault(charge.group, {}).setdefault(charge.principal, []).append(d)
        nice = by_group.pop(NICE_USER_GROUP, {})
        if self.policy.groups:
            self._by_quota(by_group, priorities)
        else:
            self.spin_pie(ROOT, by_group.get(ROOT, {}), priorities, math.inf)
        self.spin_pie(NICE_USER_GROUP, nice, priorities, math.inf)

    def _by_quota(self, by_group: dict[str, dict[str, list[Demand]]],
                  priorities: dict[str, float]) -> None:
        """HTCondor's allocation rounds: what a group could not use goes to the others."""
        self.quotas = self.policy.quotas(self.pool.pool_cpus)
        usage = self.group_usage
        requested = {g: usage.get(g, 0.0) + sum(d.remaining * d.job.request.cpus
                                                for ds in by_group.get(g, {}).values()
                                                for d in ds)
                     for g in self.quotas}
        for _ in range(ALLOCATION_ROUNDS):
            targets = self.targets = groups.targets(self.policy, self.quotas, requested, usage)
            for group in groups.starvation_order(self.quotas, usage):
                budget = targets[group] - usage.get(group, 0.0)
                if group in by_group and budget > _EPSILON:
                    self.spin_pie(group, by_group[group], priorities, budget)
            short = [g for g in self.quotas if usage.get(g, 0.0) < targets[g] - _EPSILON]
            if not short or self.matcher.free_cpus <= 0:
                return
            for group in short:
                requested[group] = usage.get(group, 0.0)

    def spin_pie(self, group: str, principals: dict[str, list[Demand]],
                 priorities: dict[str, float], budget: float) -> None:
        """Hand out up to `budget` free cpus in rounds; what a principal cannot use goes
        back in the pie."""
        active = sorted(principals, key=lambda p: (priorities[p], p))
        used = 0.0
        while active and self.matcher.free_cpus > 0 and budget - used > _EPSILON:
            pie = min(self.matcher.free_cpus, budget - used)
            shares = pie_shares(pie, {p: priorities[p] for p in active})
            progress, hungry = 0, []
            for principal in active:
                got, limited = self.serve_principal(group, principal, principals[principal],
                                                    shares[principal])
                progress += got
                if limited:
                    hungry.append(principal)
            used += progress
            active = hungry
            if active and progress == 0:
                # Every share left is smaller than one job: give the crumbs out by priority.
                for principal in active:
                    got, _ = self.serve_principal(group, principal, principals[principal],
                                                  budget - used)
                    used += got
                return

    def serve_principal(self, group: str, principal: str, demands: list[Demand],
                        budget: float) -> tuple[int, bool]:
        """Match the principal's autoclusters in order within `budget` cpus; True if it
        ran out of budget."""
        used, limited = 0, False
        for d in demands:
            if d.remaining:
                got, hit_budget = self.serve(d, budget - used)
                used += got
                d.share_limited = d.share_limited or hit_budget
                limited = limited or hit_budget
        self.cpus_by_principal[principal] = self.cpus_by_principal.get(principal, 0) + used
        self.cpus_by_group[group] = self.cpus_by_group.get(group, 0) + used
        self.group_usage[group] = self.group_usage.get(group, 0.0) + used
        return used, limited

    def serve(self, d: Demand, budget: float) -> tuple[int, bool]:
        """Up to `budget` cpus of the demand's jobs: (cpus used, stopped by the budget)."""
        cpus = d.job.request.cpus
        affordable = d.remaining if budget == math.inf else int((budget + _EPSILON) // cpus)
        allowed = min(d.remaining, self._limit_room(d))
        cap = min(affordable, allowed)
        taken = self.matcher.take(d.job, cap, d.runs) if cap > 0 else 0
        d.remaining -= taken
        for name, amount in d.job.charge.limits:
            self.limit_usage[name] = self.limit_usage.get(name, 0.0) + taken * amount
        # Held back by the share only if a slot would have taken one more.
        return taken * cpus, taken == affordable < allowed and self.matcher.available(d.job)

    def _limit_room(self, d: Demand) -> int:
        room = d.remaining
        for name, amount in d.job.charge.limits:
            left = self.policy.limit(name) - self.limit_usage.get(name, 0.0)
            fits = max(0, int((left + _EPSILON) // amount))
            if fits < room:
                room = fits
                if not fits:
                    d.limited_by = name
        return room
