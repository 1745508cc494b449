"""One negotiation pass: autoclusters × slot classes, never jobs × slots.

    demand: schedd → [AutoCluster] ─┐
    slots:  [SlotAdvertised]        ├─▶ negotiate() ─▶ NegotiationResult
    priorities (Accountant)        ─┘     matches: (schedd, autocluster) → [Claim]
    AdTable (parsed ads, kept) ◀──▶         reasons: (schedd, autocluster) → why still idle

classad2 runs about 80k symmetric matches per second per core, so 100k idle
jobs × 10k slots can never be looked at pair by pair. Two equivalences make a
pass cheap:

- the jobs of an autocluster have equal significant attributes (the schedd
  grouped them), so one evaluation stands for all of them;
- slots evaluate identically against an autocluster when everything the
  evaluation can read is equal: the attributes the autocluster's Requirements
  and Rank reference, the slot's own Requirements and all it references
  (followed through the slot ad), and the slot's free Cpus/Memory/Disk. Slots
  are grouped into such classes, and each (autocluster, class) pair is
  evaluated once per pass and cached.

Partitionable slots are matched as HTCondor matches them: Cpus/Memory/Disk are
set to what is free, and a match carves the job's request out of them, so the
slot moves to another class and can take more jobs.

Owners share the free cpus by priority (the pie spin, `accounting.pie_shares`);
an owner's autoclusters are served in JobPrio order, each job going to the
best-ranked matching class.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import classad2
from classad2 import ClassAd

from schemas.demand import AutoCluster, MatchAnalysis
from schemas.slot import Claim, MatchOffer, SlotAdvertised
from services.condor.claims import new_claim_id

from .accounting import DEFAULT_FLOOR, pie_shares

AcKey = tuple[str, str]  # (schedd, autocluster id)
ClassKey = tuple[int, int, int, int]  # (static class id, free cpus, free MiB, free MB disk)
MatchFn = Callable[[ClassAd, ClassAd], bool]

# Slot attributes the negotiator overwrites with the free resources before matching.
_RESOURCES = frozenset({"cpus", "memory", "disk"})
_ABSENT = "\x00"  # attribute not in the ad: a match reads it from the other ad
_SEP = "\x1f"


def symmetric_match(job: ClassAd, slot: ClassAd) -> bool:
    return job.symmetricMatch(slot)


@dataclass(frozen=True)
class NegotiationConfig:
    default_request_cpus: int = 1
    default_request_memory_mb: int = 128
    default_request_disk_kib: int = 1024
    default_priority: float = DEFAULT_FLOOR  # owners the Accountant has not seen yet


@dataclass(frozen=True)
class Resources:
    cpus: int
    memory_mb: int
    disk_mb: int

    def fits_in(self, cpus: int, memory_mb: int, disk_mb: int) -> bool:
        return self.cpus <= cpus and self.memory_mb <= memory_mb and self.disk_mb <= disk_mb

    def __str__(self) -> str:
        return f"{self.cpus} cpus, {self.memory_mb} MiB, {self.disk_mb} MB disk"


# ---------------------------------------------------------------- parsed ads


@dataclass(frozen=True, eq=False)
class JobAd:
    """An autocluster's ad, parsed once, with what matching needs from it."""

    ad: ClassAd
    refs: tuple[str, ...]  # sorted lower-case slot attributes its Requirements/Rank may read
    request: Resources
    job_prio: int

    @classmethod
    def parse(cls, text: str, owner: str, config: NegotiationConfig) -> JobAd:
        ad = ClassAd(text)
        if "Owner" not in ad:
            # Slots' START expressions commonly read TARGET.Owner; the schedd may leave it out.
            ad["Owner"] = owner
        cpus = _number(ad, "RequestCpus", config.default_request_cpus)
        memory_mb = _number(ad, "RequestMemory", config.default_request_memory_mb)
        disk_kib = _number(ad, "RequestDisk", config.default_request_disk_kib)
        request = Resources(
            cpus=max(1, math.ceil(cpus)),  # a 0-cpu request would fit a slot forever
            memory_mb=max(0, math.ceil(memory_mb)),
            disk_mb=max(0, math.ceil(disk_kib / 1024)),
        )
        _, slot_refs = _closure(ad, ("requirements", "rank"))
        # Free resources are part of every slot class key already.
        refs = tuple(sorted(slot_refs - _RESOURCES))
        return cls(ad, refs, request, int(_number(ad, "JobPrio", 0)))

    def rank(self, slot: ClassAd) -> float:
        if "Rank" not in self.ad:
            return 0.0
        return _as_number(self.ad.lookup("Rank").eval(scope=self.ad, target=slot), 0.0)


class SlotAd:
    """A slot's parsed ad, kept between passes while its text is unchanged."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ad = ClassAd(text)
        # Read before any pass overwrites Cpus/Memory/Disk with free resources.
        self.totals = _advertised_totals(self.ad)
        self.site = _string(self.ad, "GLIDEIN_Site")
        self.entry = _string(self.ad, "GLIDEIN_Entry_Name")
        self.provider = _string(self.ad, "CloudProvider")
        self._reach_text: dict[str, str] = {}
        self._keys: dict[tuple[str, ...], str] = {}
        self._own_key = self._reach("requirements")

    def static_key(self, refs: tuple[str, ...]) -> str:
        """All that autoclusters reading `refs` can see of this slot, free resources aside."""
        key = self._keys.get(refs)
        if key is None:
            key = self._keys[refs] = _SEP.join([self._own_key, *map(self._reach, refs)])
        return key

    def _reach(self, name: str) -> str:
        """`name` and what it references in this ad, as text; memoized, as autoclusters
        read overlapping attributes."""
        text = self._reach_text.get(name)
        if text is None:
            found, _ = _closure(self.ad, (name,), skip=_RESOURCES)
            # Texts start with "=", "~" or _ABSENT, so name and text never run together.
            text = self._reach_text[name] = _SEP.join(f"{n}{t}" for n, t in sorted(found.items()))
        return text

    def set_resources(self, cpus: int, memory_mb: int, disk_mb: int) -> ClassAd:
        self.ad["Cpus"] = cpus
        self.ad["Memory"] = memory_mb
        self.ad["Disk"] = disk_mb * 1024  # KiB, as HTCondor advertises Disk
        return self.ad


# What no real machine has: an ad claiming more is a bug or a lie, and would win every match.
MAX_SLOT_CPUS = 100_000
MAX_SLOT_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_SLOT_DISK_MB = 1024**4  # 1 EiB


def slot_problem(msg: SlotAdvertised, slot: SlotAd) -> str:
    """Why a slot ad cannot be believed ("" when it can): resources that are negative, not
    numbers, fewer than one cpu, absurdly large, or more free than the slot has."""
    limits = {"cpus": MAX_SLOT_CPUS, "memory_mb": MAX_SLOT_MEMORY_MB, "disk_mb": MAX_SLOT_DISK_MB}
    free = {"cpus": msg.free_cpus, "memory_mb": msg.free_memory_mb,
            "disk_mb": msg.free_disk_mb}
    total = {"cpus": _number(slot.ad, "TotalCpus", msg.free_cpus),
             "memory_mb": _number(slot.ad, "TotalMemory", msg.free_memory_mb),
             "disk_mb": _number(slot.ad, "TotalDisk", msg.free_disk_mb * 1024) / 1024}
    for name, limit in limits.items():
        if not math.isfinite(total[name]) or not 0 <= total[name] <= limit:
            return f"total {name} {total[name]:g} is not between 0 and {limit}"
        if not 0 <= free[name] <= total[name]:
            return f"free {name} {free[name]} is not between 0 and the total {total[name]:g}"
    if total["cpus"] < 1:
        return f"total cpus {total['cpus']:g} is less than 1"
    return ""


class AdTable:
    """Parsed ClassAds kept between passes: each ad text is parsed once.

    The service keeps one table for its lifetime and passes it to every
    `negotiate()`; a pass on an unchanged pool parses nothing. Passes write the
    free resources into the slot ads' Cpus/Memory/Disk, so the ads are the
    table's own: read totals from `SlotAd.totals`.
    """

    def __init__(self, config: NegotiationConfig | None = None) -> None:
        self.config = config or NegotiationConfig()
        self.parsed = 0  # ads parsed so far, for metrics and tests
        self._slots: dict[str, SlotAd] = {}
        self._jobs: dict[tuple[str, str], JobAd] = {}

    def slot(self, pilot_id: str, text: str) -> SlotAd:
        known = self._slots.get(pilot_id)
        if known is None or known.text != text:
            known = self._slots[pilot_id] = SlotAd(text)
            self.parsed += 1
        return known

    def job(self, text: str, owner: str) -> JobAd:
        known = self._jobs.get((text, owner))
        if known is None:
            known = self._jobs[(text, owner)] = JobAd.parse(text, owner, self.config)
            self.parsed += 1
        return known

    def retain(self, pilot_ids: Iterable[str], jobs: Iterable[tuple[str, str]]) -> None:
        """Forget ads that were not in the last pass, so the table tracks the pool."""
        keep_slots, keep_jobs = set(pilot_ids), set(jobs)
        self._slots = {k: v for k, v in self._slots.items() if k in keep_slots}
        self._jobs = {k: v for k, v in self._jobs.items() if k in keep_jobs}


# ---------------------------------------------------------------- result


@dataclass(frozen=True)
class NegotiationResult:
    matches: dict[AcKey, list[Claim]]  # only autoclusters that got claims
    reasons: dict[AcKey, str]  # autoclusters left idle with no match at all
    owners: dict[AcKey, str]  # every autocluster with idle jobs in the pass
    schedds: tuple[str, ...]  # every schedd whose demand the pass saw
    cpus_by_owner: dict[str, int]  # cpus matched this pass
    priorities: dict[str, float]  # the priorities the pass used
    evaluations: int  # classad2 symmetric matches run
    slot_classes: int  # distinct slot classes evaluated

    @property
    def match_count(self) -> int:
        return sum(len(claims) for claims in self.matches.values())

    def offers(self, cycle: int = 0) -> list[MatchOffer]:
        return [
            MatchOffer(schedd=schedd, autocluster=ac, owner=self.owners[(schedd, ac)],
                       claims=claims, cycle=cycle)
            for (schedd, ac), claims in self.matches.items()
        ]

    def analyses(self, source: str = "negotiator") -> list[MatchAnalysis]:
        """One per schedd in the pass, so reasons that no longer hold get cleared."""
        by_schedd: dict[str, dict[str, str]] = {schedd: {} for schedd in self.schedds}
        for (schedd, ac), reason in self.reasons.items():
            by_schedd[schedd][ac] = reason
        return [MatchAnalysis(source=source, schedd=s, reasons=r) for s, r in by_schedd.items()]


# ---------------------------------------------------------------- the pass


def negotiate(
    demand: Mapping[str, Sequence[AutoCluster]],
    slots: Sequence[SlotAdvertised],
    priorities: Mapping[str, float],
    *,
    table: AdTable | None = None,
    claim_prefix: str | None = None,
    match_fn: MatchFn = symmetric_match,
) -> NegotiationResult:
    """Match idle autoclusters to free slot resources; pure but for the `table` cache.

    `priorities` are effective owner priorities (lower is better), e.g.
    `Accountant.priorities(now)`. `claim_prefix` makes claim ids unique across
    passes (a random one by default). `match_fn(job_ad, slot_ad)` is the one
    place ads are matched: tests wrap it to count evaluations.
    """
    table = table if table is not None else AdTable()
    latest = _latest_ads(slots)
    usable = [s for s in latest if s.state != "retiring"]
    pool = _Pool([_Slot(s, ad) for s in usable if (ad := _parse_slot(table, s)) is not None])
    demands, reasons = _demands(demand, table)
    run = _Pass(pool, _Evaluator(match_fn), claim_prefix or uuid.uuid4().hex[:12])
    by_owner = _by_owner(demands)
    used_priorities = {o: priorities.get(o, table.config.default_priority) for o in by_owner}
    run.spin_pie(by_owner, used_priorities)
    retiring = len(latest) - len(usable)
    for d in demands:
        if d.remaining and not d.claims:
            reasons[d.key] = run.explain(d, retiring)
    table.retain((s.pilot_id for s in usable), ((d.ac.ad, d.ac.owner) for d in demands))
    return _result(demands, reasons, used_priorities, run, tuple(sorted(demand)))


@dataclass(eq=False)
class _Demand:
    key: AcKey
    ac: AutoCluster
    job: JobAd
    sites: frozenset[str] | None  # casefolded DESIRED_Sites, None when unset
    remaining: int
    claims: list[Claim] = field(default_factory=list)
    # At some turn a slot was there but the owner's share was used up; whatever
    # happened in later rounds, its owner's priority is what held it back.
    share_limited: bool = False


class _Slot:
    __slots__ = ("free", "msg", "parsed", "site", "totals")

    def __init__(self, msg: SlotAdvertised, parsed: SlotAd) -> None:
        self.msg = msg
        self.parsed = parsed
        self.site = msg.site or parsed.site
        self.free = (msg.free_cpus, msg.free_memory_mb, msg.free_disk_mb)
        self.totals = _astuple(parsed.totals) if parsed.totals else self.free


class _Group:
    """The pool cut into classes for the autoclusters that read the same slot attributes."""

    __slots__ = ("classes", "empty", "sid_of")

    def __init__(self) -> None:
        self.sid_of: dict[str, int] = {}
        # Dicts as ordered sets: the first member is taken, the same one on every run.
        self.classes: dict[ClassKey, dict[str, None]] = {}
        # The classes with nothing running on the slots, to explain what did not match.
        self.empty: dict[ClassKey, list[_Slot]] = {}


class _Pool:
    """Free resources of the usable slots, kept partitioned into classes as jobs carve them."""

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = {s.msg.pilot_id: s for s in slots}
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.site_of: list[str] = []  # casefolded site of each static class id
        self._sids: dict[str, int] = {}
        self.free_cpus = sum(max(0, s.free[0]) for s in slots)

    def group(self, refs: tuple[str, ...]) -> _Group:
        group = self.groups.get(refs)
        if group is None:
            group = self.groups[refs] = self._build_group(refs)
        return group

    def static_id(self, slot: _Slot, refs: tuple[str, ...]) -> int:
        key = f"{slot.site}{_SEP}{slot.parsed.static_key(refs)}"
        sid = self._sids.get(key)
        if sid is None:
            sid = self._sids[key] = len(self.site_of)
            self.site_of.append(slot.site.casefold())
        return sid

    def carve(self, slot: _Slot, request: Resources) -> None:
        old = slot.free
        slot.free = (old[0] - request.cpus, old[1] - request.memory_mb, old[2] - request.disk_mb)
        self.free_cpus -= request.cpus
        pilot_id = slot.msg.pilot_id
        for group in self.groups.values():
            sid = group.sid_of[pilot_id]
            members = group.classes[(sid, *old)]
            del members[pilot_id]
            if not members:
                del group.classes[(sid, *old)]
            if slot.free[0] > 0:
                group.classes.setdefault((sid, *slot.free), {})[pilot_id] = None

    def _build_group(self, refs: tuple[str, ...]) -> _Group:
        group = _Group()
        for pilot_id, slot in self.slots.items():
            sid = group.sid_of[pilot_id] = self.static_id(slot, refs)
            group.empty.setdefault((sid, *slot.totals), []).append(slot)
            if slot.free[0] > 0:
                group.classes.setdefault((sid, *slot.free), {})[pilot_id] = None
        return group


class _Evaluator:
    """(autocluster, slot class) evaluations, cached: the only place ads are matched."""

    def __init__(self, match_fn: MatchFn) -> None:
        self.match_fn = match_fn
        self.cache: dict[tuple[int, ClassKey], float | None] = {}
        self.count = 0

    def rank(self, job: JobAd, key: ClassKey, slot: SlotAd) -> float | None:
        """The job's Rank of the class, or None when they do not match."""
        cache_key = (id(job), key)
        if cache_key in self.cache:
            return self.cache[cache_key]
        ad = slot.set_resources(key[1], key[2], key[3])
        self.count += 1
        rank = job.rank(ad) if self.match_fn(job.ad, ad) else None
        self.cache[cache_key] = rank
        return rank


class _Pass:
    """The mutable state of one pass: the pool being carved and the claims made so far."""

    def __init__(self, pool: _Pool, evaluator: _Evaluator, claim_prefix: str) -> None:
        self.pool = pool
        self.evaluator = evaluator
        self.claim_prefix = claim_prefix
        self.claims_made = 0
        self.cpus_by_owner: dict[str, int] = {}

    def spin_pie(self, by_owner: dict[str, list[_Demand]], priorities: dict[str, float]) -> None:
        """Hand out the free cpus in rounds; what an owner cannot use goes back in the pie."""
        active = sorted(by_owner, key=lambda owner: (priorities[owner], owner))
        while active and self.pool.free_cpus > 0:
            shares = pie_shares(self.pool.free_cpus, {o: priorities[o] for o in active})
            progress, still_hungry = 0, []
            for owner in active:
                got, limited = self.serve_owner(owner, by_owner[owner], shares[owner])
                progress += got
                if limited:
                    still_hungry.append(owner)
            active = still_hungry
            if active and progress == 0:
                # Every share left is smaller than one job: give the crumbs out by priority.
                for owner in active:
                    self.serve_owner(owner, by_owner[owner], math.inf)
                return

    def serve_owner(self, owner: str, demands: list[_Demand], budget: float) -> tuple[int, bool]:
        """Match the owner's autoclusters in order within `budget` cpus; True if it ran out."""
        used, limited = 0, False
        for demand in demands:
            if demand.remaining:
                got, hit_budget = self.serve(demand, budget - used)
                used += got
                demand.share_limited = demand.share_limited or hit_budget
                limited = limited or hit_budget
        self.cpus_by_owner[owner] = self.cpus_by_owner.get(owner, 0) + used
        return used, limited

    def serve(self, demand: _Demand, budget: float) -> tuple[int, bool]:
        group = self.pool.group(demand.job.refs)
        heap = [_entry(rank, key) for key, members in group.classes.items()
                if (rank := self._rank(demand, key, members)) is not None]
        heapq.heapify(heap)
        queued = {_key(entry) for entry in heap}
        used, cpus = 0, demand.job.request.cpus
        while demand.remaining:
            pilot_id = _best_slot(group, heap, queued)
            if pilot_id is None:
                return used, False
            if used + cpus > budget + 1e-9:  # shares are fractions of the pie
                return used, True
            slot = self.pool.slots[pilot_id]
            self._claim(demand, slot)
            used += cpus
            # The carved slot now sits in another class, which may rank differently.
            key = (group.sid_of[pilot_id], *slot.free)
            if key not in queued:
                rank = self._rank(demand, key, group.classes.get(key))
                if rank is not None:
                    heapq.heappush(heap, _entry(rank, key))
                    queued.add(key)
        return used, False

    def explain(self, demand: _Demand, retiring: int) -> str:
        """Why an autocluster got nothing: the first of these that holds."""
        if not self.pool.slots:
            return "no slots in the pool" + (f" ({retiring} retiring)" if retiring else "")
        classes = self.pool.group(demand.job.refs).empty
        if demand.sites is not None:
            classes = {k: v for k, v in classes.items() if self.pool.site_of[k[0]] in demand.sites}
            if not classes:
                return _no_site_reason(demand, self.pool.slots.values())
        request = demand.job.request
        big_enough = {k: v for k, v in classes.items() if request.fits_in(k[1], k[2], k[3])}
        if not big_enough:
            return _too_big_reason(request, classes)
        matching = [k for k, slots in big_enough.items()
                    if self.evaluator.rank(demand.job, k, slots[0].parsed) is not None]
        if not matching:
            return _requirements_reason(demand, big_enough)
        if demand.share_limited:
            got = self.cpus_by_owner.get(demand.ac.owner, 0)
            return f"fair share: owner {demand.ac.owner} got their share this cycle ({got} cpus)"
        count = sum(len(big_enough[k]) for k in matching)
        verb = "matches" if count == 1 else "match"
        return f"{_slots(count)} {verb} but none has {request} free"

    def _rank(self, demand: _Demand, key: ClassKey, members: dict | None) -> float | None:
        if not members or not demand.job.request.fits_in(key[1], key[2], key[3]):
            return None
        if demand.sites is not None and self.pool.site_of[key[0]] not in demand.sites:
            return None
        representative = self.pool.slots[next(iter(members))].parsed
        return self.evaluator.rank(demand.job, key, representative)

    def _claim(self, demand: _Demand, slot: _Slot) -> None:
        request = demand.job.request
        self.pool.carve(slot, request)
        demand.remaining -= 1
        self.claims_made += 1
        msg = slot.msg
        demand.claims.append(Claim(
            claim_id=new_claim_id(f"{self.claim_prefix}.{self.claims_made}"),
            pilot_id=msg.pilot_id,
            cpus=request.cpus,
            memory_mb=request.memory_mb,
            disk_mb=request.disk_mb,
            entry=msg.entry or slot.parsed.entry,
            site=slot.site,
            provider=msg.provider or slot.parsed.provider,
        ))


# ---------------------------------------------------------------- reasons


def _no_site_reason(demand: _Demand, slots: Iterable[_Slot]) -> str:
    sites = sorted({s.site for s in slots if s.site})
    shown = ", ".join(sites[:4]) + (", …" if len(sites) > 4 else "")
    where = f" (slots are at {shown})" if shown else ""
    return f"DESIRED_Sites {demand.ac.desired_sites}: no slot at those sites{where}"


def _too_big_reason(request: Resources, classes: Mapping[ClassKey, list[_Slot]]) -> str:
    most = Resources(*(max(key[i] for key in classes) for i in (1, 2, 3)))
    return f"requests {request}, more than any slot has (at most {most})"


def _requirements_reason(demand: _Demand, classes: Mapping[ClassKey, list[_Slot]]) -> str:
    """Tell a job that wants none of the slots from slots that do not want the job."""
    wanted = considered = 0
    for (_, cpus, memory, disk), slots in classes.items():
        ad = slots[0].parsed.set_resources(cpus, memory, disk)
        considered += len(slots)
        # a.matches(b) evaluates b's Requirements against a: here the job's.
        if ad.matches(demand.job.ad):
            wanted += len(slots)
    if wanted:
        verb = "satisfies" if wanted == 1 else "satisfy"
        return (f"{wanted} of {_slots(considered)} {verb} its Requirements, "
                "but their own Requirements reject it")
    return f"no slot matches its Requirements ({_slots(considered)} considered)"


def _slots(count: int) -> str:
    return f"{count} slot" if count == 1 else f"{count} slots"


# ---------------------------------------------------------------- helpers


def _latest_ads(slots: Sequence[SlotAdvertised]) -> list[SlotAdvertised]:
    """One ad per pilot (the highest seq), sorted by pilot id so passes are reproducible."""
    latest: dict[str, SlotAdvertised] = {}
    for slot in slots:
        known = latest.get(slot.pilot_id)
        if known is None or slot.seq >= known.seq:
            latest[slot.pilot_id] = slot
    return [latest[k] for k in sorted(latest)]


def _parse_slot(table: AdTable, slot: SlotAdvertised) -> SlotAd | None:
    try:
        return table.slot(slot.pilot_id, slot.ad)
    except classad2.ClassAdException:
        return None  # an unreadable slot ad cannot match anything; the pilot will re-advertise


def _demands(
    demand: Mapping[str, Sequence[AutoCluster]], table: AdTable
) -> tuple[list[_Demand], dict[AcKey, str]]:
    demands, reasons = [], {}
    for schedd in sorted(demand):
        for ac in demand[schedd]:
            if ac.idle <= 0:
                continue
            try:
                job = table.job(ac.ad, ac.owner)
            except classad2.ClassAdException:
                reasons[(schedd, ac.id)] = "its ClassAd does not parse"
                continue
            demands.append(_Demand((schedd, ac.id), ac, job, _sites(ac.desired_sites), ac.idle))
    return demands, reasons


def _by_owner(demands: list[_Demand]) -> dict[str, list[_Demand]]:
    """Each owner's autoclusters in serving order: JobPrio first, then a stable id order."""
    by_owner: dict[str, list[_Demand]] = {}
    for d in sorted(demands, key=lambda d: (-d.job.job_prio, d.key)):
        by_owner.setdefault(d.ac.owner, []).append(d)
    return by_owner


def _result(
    demands: list[_Demand],
    reasons: dict[AcKey, str],
    priorities: dict[str, float],
    run: _Pass,
    schedds: tuple[str, ...],
) -> NegotiationResult:
    return NegotiationResult(
        matches={d.key: d.claims for d in demands if d.claims},
        reasons=reasons,
        owners={d.key: d.ac.owner for d in demands},
        schedds=schedds,
        cpus_by_owner={o: c for o, c in run.cpus_by_owner.items() if c},
        priorities=priorities,
        evaluations=run.evaluator.count,
        slot_classes=len({key for _, key in run.evaluator.cache}),
    )


def _sites(desired: str) -> frozenset[str] | None:
    sites = frozenset(s.strip().casefold() for s in desired.split(",") if s.strip())
    return sites or None


def _entry(rank: float, key: ClassKey) -> tuple[float, int, int, int, int]:
    # Best Rank first; among equals the slot with the least free, so partly used
    # pilots fill up before idle ones are touched (and idle ones can retire).
    sid, cpus, memory, disk = key
    return (-rank, cpus, memory, disk, sid)


def _key(entry: tuple[float, int, int, int, int]) -> ClassKey:
    return (entry[4], entry[1], entry[2], entry[3])


def _best_slot(group: _Group, heap: list, queued: set[ClassKey]) -> str | None:
    while heap:
        key = _key(heap[0])
        members = group.classes.get(key)
        if members:
            return next(iter(members))
        heapq.heappop(heap)  # the class emptied since it was queued
        queued.discard(key)
    return None


def _astuple(r: Resources) -> tuple[int, int, int]:
    return (r.cpus, r.memory_mb, r.disk_mb)


def _closure(
    ad: ClassAd, start: Iterable[str], skip: frozenset[str] = frozenset()
) -> tuple[dict[str, str], set[str]]:
    """What `start` reaches within `ad`: its attributes (name → text), and the names it
    reads from the other ad of a match. Names in `skip` are left out."""
    found: dict[str, str] = {}
    other: set[str] = set()
    todo = [name.lower() for name in start]
    while todo:
        name = todo.pop()
        if name in found or name in skip:
            continue
        found[name], own_refs, other_refs = _describe(ad, name)
        other |= other_refs
        todo.extend(own_refs)
    return found, other


_NONE: frozenset[str] = frozenset()


def _describe(ad: ClassAd, name: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """An attribute's text, and the names it reads from its own ad and from the other."""
    value = ad.get(name)
    if value is None:
        return _ABSENT, _NONE, _NONE
    if isinstance(value, (bool, int, float, str)):
        return "=" + repr(value), _NONE, _NONE  # a literal reads nothing
    expr = ad.lookup(name)
    own, other = _references(ad, expr)
    return "~" + str(expr), own, other


def _references(ad: ClassAd, expr: classad2.ExprTree) -> tuple[frozenset[str], frozenset[str]]:
    """Names `expr` reads from `ad` (MY.x, or x defined in `ad`) and from the other ad
    (TARGET.x, or an unscoped x that `ad` lacks: a match looks it up there)."""
    own, other = set(), set()
    for ref in (*ad.externalRefs(expr), *ad.internalRefs(expr)):
        scope, name = _scope_and_name(ref.lower())
        if not name:
            continue
        if scope == "my" or (scope == "" and name in ad):
            own.add(name)
        else:
            other.add(name)
    return frozenset(own), frozenset(other)


def _scope_and_name(ref: str) -> tuple[str, str]:
    """"target.foo.bar" → ("target", "foo"); "foo" → ("", "foo")."""
    parts = ref.split(".")
    if len(parts) > 1 and parts[0] in ("my", "target"):
        return parts[0], parts[1]
    return "", parts[0]


def _as_number(value: object, default: float) -> float:
    # classad2.Value (Error, Undefined) is an IntEnum: Value.Error == 1, so test it first.
    if isinstance(value, classad2.Value):
        return default
    if isinstance(value, (bool, int, float)):
        return float(value)
    return default


def _number(ad: ClassAd, name: str, default: float) -> float:
    return _as_number(_value(ad, name), default)


def _string(ad: ClassAd, name: str) -> str:
    value = _value(ad, name)
    return value if isinstance(value, str) else ""


def _value(ad: ClassAd, name: str) -> object:
    value = ad.get(name)  # a literal comes back as is, cheaper than evaluating it
    return ad.eval(name) if isinstance(value, (classad2.ExprTree, list)) else value


def _advertised_totals(ad: ClassAd) -> Resources | None:
    cpus, memory, disk = (_number(ad, n, -1) for n in ("Cpus", "Memory", "Disk"))
    if min(cpus, memory, disk) < 0:
        return None
    return Resources(int(cpus), int(memory), int(disk) // 1024)
