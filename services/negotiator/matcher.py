"""Jobs of one autocluster onto classes of slots, many at a time.

    Matcher.take(job, cap) ─▶ best class first ─▶ a run of claims per class:
                               "the first q slots take k jobs each"

For a job, a slot's place in line is (best Rank, least free cpus/MiB/disk/custom
resources, the slot as the job sees it (Kind.seen_by), pilot id): partly used pilots fill
up before idle ones are touched, and equal slots go in pilot order, so the
result depends on the pool alone, never on how it was cut into classes or on
earlier passes. Slots equal up to their pilot id form a class; the matcher
walks classes with a heap and, in one step, gives each slot of the best
class every job it would get one by one: a slot carved by a job moves to a
class with less free that ranks the same or better, so it stays first in line
until a job no longer fits, no longer matches or ranks lower there (the same
k for every slot of the class). Claims are runs of (pilots, jobs each).

Evaluations are cached on the JobAd per (what the job sees of a kind, free
resources): across passes, a class seen before costs a dict lookup.
"""

from __future__ import annotations

import bisect
import heapq
from itertools import chain

from classad2 import ClassAd

from .custom import Amounts, covers, minus
from .pool import ClassKey, Free, Partition

Run = tuple[list[str], int, int]  # pilots, jobs each, the number of the run's first claim
# (kind as the job sees it, free cpus, MiB, MB disk, custom amounts)
VKey = tuple[str, int, int, int, Amounts]
_UNSEEN = object()


class Matcher:
    """One pass's working copy of the partitions, carved as claims are made."""

    def __init__(self, table, layout: dict[tuple[str, ...], Partition], match_fn,
                 floors: dict[Partition, Free]) -> None:
        self.table = table
        self.records = table.pool.records
        self.layout = layout
        self.match_fn = match_fn
        self.floors = floors  # the smallest request in each partition: less free is no use
        self.partitions = len(set(layout.values()))
        self.work: dict[Partition, dict[ClassKey, list[str]]] = {}
        self.carved: dict[str, Free] = {}  # pilot -> free now, for slots carved this pass
        self.free_cpus = table.pool.free_cpus
        self.evaluations = 0
        self.claims = 0  # claims made so far: the next claim's number in the pass

    # --- taking jobs ----------------------------------------------------------------------------

    def take(self, job, cap: int, runs: list[Run]) -> int:
        """Up to `cap` jobs of `job` onto the best classes; the runs of claims go to `runs`."""
        part = self.layout[job.refs]
        work = self.work_of(part)
        view = part.view(job.refs)
        rc, rm, rd = job.request
        wants = job.wants
        virtual: dict[VKey, list[str]] = {}
        heap = []
        seen_of: dict[str, str | None] = {}  # kind -> what the job sees, None: not its site
        for c, m, d, x, kind in work:  # the hot loop of a pass: a few dict lookups per class
            if c < rc or m < rm or d < rd or (wants and not covers(x, wants)):
                continue
            seen = seen_of.get(kind, _UNSEEN)
            if seen is _UNSEEN:
                seen = view.get(kind) or part.see(view, job.refs, kind)
                seen = seen_of[kind] = seen if self._site_ok(job, seen) else None
            if seen is None:
                continue
            vkey = (seen, c, m, d, x)
            kinds = virtual.get(vkey)
            if kinds is None:
                virtual[vkey] = [kind]
                heap.append((-self.rank(job, vkey) if job.has_rank else 0.0, c, m, d, x, seen))
            else:
                kinds.append(kind)
        heapq.heapify(heap)
        queued = set(virtual)
        taken = 0
        while taken < cap and heap:
            neg_rank, c, m, d, x, seen = heapq.heappop(heap)
            vkey = (seen, c, m, d, x)
            queued.discard(vkey)
            lists = [(kind, found) for kind in virtual[vkey]
                     if (found := work.get((c, m, d, x, kind)))]
            if lists and self.matches(job, vkey):
                step = self._take_class(job, part, work, vkey, -neg_rank, lists, cap - taken, runs)
                taken += step.jobs
                for dest, kinds in step.landed:
                    self._requeue(job, virtual, heap, queued, dest, kinds)
        return taken

    def available(self, job) -> bool:
        """Whether some slot would still take a job of `job` now (a share stopped it).
        Classes it matched before are looked at first: most answers cost no evaluation."""
        part = self.layout[job.refs]
        view = part.view(job.refs)
        rc, rm, rd = job.request
        wants = job.wants
        unknown = []
        for c, m, d, x, kind in self.work_of(part):
            if c >= rc and m >= rm and d >= rd and (not wants or covers(x, wants)):
                seen = view.get(kind) or part.see(view, job.refs, kind)
                if self._site_ok(job, seen):
                    verdict = job.matches.get((seen, c, m, d, x))
                    if verdict:
                        return True
                    if verdict is None:
                        unknown.append((seen, c, m, d, x))
        return any(self.matches(job, vkey) for vkey in unknown)

    def _take_class(self, job, part, work, vkey: VKey, rank: float, lists, left: int,
                    runs: list[Run]) -> _Step:
        free = vkey[1:]
        per = self._chain(job, vkey, rank, left)
        members = sum(len(found) for _, found in lists)
        full = min(members, left // per)
        partial = left - full * per if full < members else 0
        batches, order = _first(lists, full + (partial > 0))
        step = _Step(full * per + partial)
        if partial:
            last = order.pop()
            for kind, batch in batches:
                if batch and batch[-1] == last:
                    batch.pop()
                    self._carve(part, work, free, kind, [last], partial, job, step)
                    break
        for kind, batch in batches:
            if batch:
                self._carve(part, work, free, kind, batch, per, job, step)
        for key in [(*free, kind) for kind, _ in lists]:
            if not work.get(key, True):
                del work[key]
        if order:
            runs.append((order, per, self.claims))
            self.claims += len(order) * per
        if partial:
            runs.append(([last], partial, self.claims))
            self.claims += partial
        self.free_cpus -= step.jobs * job.request.cpus
        return step

    def _chain(self, job, vkey: VKey, rank: float, limit: int) -> int:
        """Jobs a slot of the class takes in a row: while the next one still fits, matches
        and ranks no lower (the carved slot is then first in line again)."""
        seen, c, m, d, x = vkey
        rc, rm, rd = job.request
        wants = job.wants
        per = 1
        while per < limit:
            c, m, d, x = c - rc, m - rm, d - rd, minus(x, wants)
            after = (seen, c, m, d, x)
            if c < rc or m < rm or d < rd or (wants and not covers(x, wants)) \
                    or not self.matches(job, after) or self.rank(job, after) < rank:
                break
            per += 1
        return per

    def _carve(self, part, work, free: Free, kind, pilots: list[str], jobs: int, job,
               step: _Step) -> None:
        c, m, d, x = free
        rc, rm, rd = job.request
        new = (c - jobs * rc, m - jobs * rm, d - jobs * rd, minus(x, job.wants, jobs))
        _file(work, (*new, kind), pilots, self.floors[part])
        if self.partitions > 1:  # the others see it when they are copied, or now
            self.carved.update(dict.fromkeys(pilots, new))
            for other, other_work in self.work.items():
                if other is not part:
                    self._echo(other, other_work, pilots, free, new)
        step.landed.append(((*new, kind), kind))

    def _requeue(self, job, virtual, heap, queued, dest: ClassKey, kind: str) -> None:
        """Slots carved into `dest` may still suit the job (ranking lower): back in line."""
        c, m, d, x = dest[0], dest[1], dest[2], dest[3]
        part = self.layout[job.refs]
        view = part.view(job.refs)
        seen = view.get(kind) or part.see(view, job.refs, kind)
        rc, rm, rd = job.request
        if c < rc or m < rm or d < rd or (job.wants and not covers(x, job.wants)):
            return
        vkey = (seen, c, m, d, x)
        kinds = virtual.setdefault(vkey, [])
        if kind not in kinds:
            kinds.append(kind)
        if vkey not in queued:
            queued.add(vkey)
            heapq.heappush(heap, (-self.rank(job, vkey), c, m, d, x, seen))

    # --- the working copy -----------------------------------------------------------------------

    def work_of(self, part: Partition) -> dict[ClassKey, list[str]]:
        """The partition's classes as this pass has carved them so far (copied on first use)."""
        work = self.work.get(part)
        if work is None:
            floor = self.floors[part]
            work = {key: members[:] for key, members in part.classes.items()
                    if key[0] >= floor[0] and key[1] >= floor[1] and key[2] >= floor[2]}
            for pilot, new in self.carved.items():
                self._echo(part, work, [pilot], self.records[pilot].free, new)
            self.work[part] = work
        return work

    def _echo(self, part: Partition, work, pilots: list[str], old: Free, new: Free) -> None:
        """Slots carved in another partition move here too."""
        floor = self.floors[part]
        for pilot in pilots:
            kind = part.kind_of.get(pilot)
            if kind is None:
                continue
            members = work.get((*old, kind.text))
            if members:
                i = bisect.bisect_left(members, pilot)
                if i < len(members) and members[i] == pilot:
                    del members[i]
                    if not members:
                        del work[(*old, kind.text)]
            _file(work, (*new, kind.text), [pilot], floor)

    # --- evaluations ----------------------------------------------------------------------------

    def matches(self, job, vkey: VKey) -> bool:
        found = job.matches.get(vkey)
        if found is None:
            ad = self.slot_ad(vkey)
            self.evaluations += 1
            found = job.matches[vkey] = ad is not None and self.match_fn(job.ad, ad) is True
        return found

    def rank(self, job, vkey: VKey) -> float:
        if not job.has_rank:
            return 0.0
        found = job.ranks.get(vkey)
        if found is None:
            ad = self.slot_ad(vkey)
            found = job.ranks[vkey] = job.rank(ad) if ad is not None else 0.0
        return found

    def slot_ad(self, vkey: VKey) -> ClassAd | None:
        return self.table.slot_ad(vkey)

    def _site_ok(self, job, seen: str) -> bool:
        if job.sites is None:
            return True
        found = job.site_ok.get(seen)
        if found is None:
            found = job.site_ok[seen] = seen.partition("\x1e")[0].casefold() in job.sites
        return found


class _Step:
    __slots__ = ("jobs", "landed")

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.landed: list[tuple[ClassKey, str]] = []  # (class, kind) slots were carved into


def _first(lists: list[tuple[str, list[str]]], count: int):
    """The `count` lowest pilot ids of the class, cut from its lists: (kind, ids) batches,
    and all of them in order."""
    if count <= 0:
        return [], []
    if len(lists) == 1:
        kind, members = lists[0]
        batch = members[:count]
        del members[:count]
        return [(kind, batch)], batch[:]
    order = sorted(chain.from_iterable(members[:count] for _, members in lists))[:count]
    last = order[-1]
    batches = []
    for kind, members in lists:
        cut = bisect.bisect_right(members, last)
        if cut:
            batches.append((kind, members[:cut]))
            del members[:cut]
    return batches, order


def _file(work, key: ClassKey, pilots: list[str], floor: Free) -> None:
    """Put carved slots in their new class, kept in pilot order; a class too small for any
    job of the partition is left out (no job could use it this pass)."""
    if key[0] < max(floor[0], 1) or key[1] < floor[1] or key[2] < floor[2]:
        return
    members = work.get(key)
    if members is None:
        work[key] = pilots[:]
    elif members[-1] < pilots[0]:
        members.extend(pilots)
    else:
        members.extend(pilots)
        members.sort()
