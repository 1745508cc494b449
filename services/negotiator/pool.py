"""The pool's slots between passes: a lean record per pilot, cut into classes, kept current.

    [SlotAdvertised] ──SlotPool.sync()──▶ SlotRecord per pilot (shape, interned texts, free)
                                          only what changed is read again
    autoclusters' refs ──SlotPool.arrange()──▶ a Partition per set of attribute names read
        Partition: kind (the texts those names reach in the slot, and its site)
                   × free (cpus, MiB, MB disk, custom amounts) ──▶ pilot ids, sorted

Slots of one kind with equal free resources evaluate alike against every
autocluster of the partition, so matching runs once per class and no slot
keeps a ClassAd: a kind keeps one (Kind.representative). Autoclusters that read
few-valued attributes (Arch, GLIDEIN_Site, CloudProvider, ...) share one
partition; one that reads an attribute that names slots one by one (Name,
Machine) gets its own, so it does not split everybody's classes slot by slot.
A slot's custom resources (MachineResources beyond Cpus, Memory, Disk: GPUs,
Boats) are free amounts like cpus: out of its kind, in its class key.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from itertools import islice
from operator import itemgetter

import classad2

from schemas.slot import SlotAdvertised

from . import custom
from .ads import ABSENT, AdReader, Shape
from .custom import Amounts

RESOURCES = frozenset({"cpus", "memory", "disk"})  # set from the free resources at each match
Free = tuple[int, int, int, Amounts]  # cpus, MiB, MB disk, custom amounts by lower-case name
ClassKey = tuple[int, int, int, Amounts, str]  # free cpus, MiB, MB disk, custom, kind text
SEP, END = "\x1f", "\x1e"
WIDE_MIN = 256  # distinct values an attribute needs before it counts as naming slots
_SAMPLE = 4096


class SlotRecord:
    """One pilot's latest ad, read: what matching and claims need, and no ClassAd."""

    __slots__ = ("custom", "free", "msg", "shape", "site", "totals", "usable", "values",
                 "weight", "where")

    def __init__(self, msg: SlotAdvertised, reader: AdReader) -> None:
        self.msg = msg
        try:
            self.shape, self.values = reader.attributes(msg.ad)
        except classad2.ClassAdException:
            self.shape, self.values = None, ()  # an unreadable ad cannot match anything
        self.custom = reader.custom_names(self.shape, self.values) if self.shape else ()
        self.free: Free = self.free_in(msg, reader)
        self.usable = self.shape is not None and msg.state != "retiring"
        self.site = msg.site or self._string("glidein_site", reader)
        self.where = (msg.entry or self._string("glidein_entry_name", reader), self.site,
                      msg.provider or self._string("cloudprovider", reader))
        sizes = (reader.totals(self.shape, self.values) if self.shape else None) \
            or (*self.free[:3], custom.NONE)
        if self.custom:
            sizes = reader.shared((*sizes[:3], self._custom_totals(reader)))
        self.totals = sizes
        # What it counts for in the pool's size (group quotas): all of a usable slot, the
        # busy part of a retiring one.
        self.weight = self.totals[0] if self.usable else max(0, self.totals[0] - self.free[0])

    def free_in(self, msg: SlotAdvertised, reader: AdReader) -> Free:
        """What `msg` says is free."""
        return (msg.free_cpus, msg.free_memory_mb, msg.free_disk_mb,
                self._free_custom(msg, reader) if self.custom else custom.NONE)

    def _free_custom(self, msg: SlotAdvertised, reader: AdReader) -> Amounts:
        """Free custom amounts; one missing from free_resources is read from the ad
        (<Name> is what is free, as Cpus is)."""
        amounts = []
        for name in self.custom:
            found = custom.lookup(msg.free_resources, name)
            if found is None:
                found = reader.literal(self.shape.text(self.values, name.lower()))
            amounts.append((name.lower(), int(found) if type(found) in (int, float) else 0))
        return tuple(amounts)

    def _custom_totals(self, reader: AdReader) -> Amounts:
        """Total<Name> of each custom resource (what is free, where the ad lacks it)."""
        totals = []
        for name, free in self.free[3]:
            total = reader.literal(self.shape.text(self.values, "total" + name))
            totals.append((name, int(total) if type(total) in (int, float) else free))
        return tuple(totals)

    def spelled(self, name: str) -> str:
        """A custom resource's name as this slot spells it (a claim names it so)."""
        return custom.spelling(self.custom, name) or name

    def _string(self, name: str, reader: AdReader) -> str:
        value = reader.literal(self.shape.text(self.values, name)) if self.shape else None
        return value if isinstance(value, str) else ""


class Kind:
    """What a partition's autoclusters can see of a slot: its texts by name, and its site."""

    __slots__ = ("attrs", "coarse", "site", "skip", "text")

    def __init__(self, text: str, site: str, attrs: dict[str, str],
                 skip: frozenset[str] = RESOURCES) -> None:
        self.text = text
        self.site = site
        self.attrs = attrs  # lower-case name -> text, ABSENT where the slot lacks it
        # Its resources, cpus to custom ones: free amounts, in the class key instead. Slots
        # of one kind text may differ here only in names neither side reads.
        self.skip = skip
        self.coarse: dict[tuple[str, ...], str] = {}

    def seen_by(self, refs: tuple[str, ...], reader: AdReader) -> str:
        """The part of this kind an autocluster reading `refs` can see, as canonical text:
        slots equal in it (and in free resources) are equal to that autocluster."""
        text = self.coarse.get(refs)
        if text is None:
            found: dict[str, str] = {}
            todo = ["requirements", *refs]
            while todo:
                name = todo.pop()
                if name in found or name in self.skip:
                    continue
                found[name] = own = self.attrs.get(name, ABSENT)
                if own is not ABSENT:
                    todo.extend(n for scope, n in reader.reads(own)
                                if scope == "my" or (scope == "" and self.attrs.get(n, ABSENT)
                                                     is not ABSENT))
            text = self.coarse[refs] = canonical(self.site, found)
        return text


def canonical(site: str, attrs: dict[str, str]) -> str:
    return site + END + END.join(f"{name}{SEP}{attrs[name]}" for name in sorted(attrs))


def attributes_of(text: str) -> dict[str, str]:
    """canonical()'s attributes back, to build a representative ad."""
    _, _, rest = text.partition(END)
    pairs = (item.split(SEP, 1) for item in rest.split(END) if item)
    return {name: value for name, value in pairs if value != ABSENT}


class _Node:
    """A step of a projection over ads of one shape: the names read at this step; `seen`
    starts with the names never read (the slot's resources: `skip`)."""

    __slots__ = ("get", "next", "seen", "skip")

    def __init__(self, shape: Shape, names: Iterable[str], seen: frozenset[str],
                 skip: frozenset[str]) -> None:
        names = sorted(names)
        self.seen = seen | frozenset(names)
        self.skip = skip
        self.get = _getter([shape.index[n] for n in names if n in shape.index])
        self.next: dict[tuple[str, ...], _Node | _Leaf] = {}


class _Leaf:
    """The end of a projection's walk: every name it read; the kind per site."""

    __slots__ = ("kinds", "seen", "skip")

    def __init__(self, seen: frozenset[str], skip: frozenset[str]) -> None:
        self.seen = seen - skip
        self.skip = skip
        self.kinds: dict[str, Kind] = {}


def _getter(positions: list[int]):
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        i = positions[0]
        return lambda values: (values[i],)
    return lambda values: ()


class Projection:
    """A slot's kind for a set of names: walked per shape with memos, so slots written
    alike cost a few tuple lookups, however many attributes their expressions chain.
    A walk never reads the slot's resources (they start as seen, and leave at the end)."""

    def __init__(self, names: frozenset[str], reader: AdReader) -> None:
        self.start = names | {"requirements"}
        self.reader = reader
        self.kinds: dict[str, Kind] = {}

    def kind(self, shape: Shape, values: tuple[str, ...], site: str,
             resources: tuple[str, ...] = ()) -> Kind:
        """`resources`: the slot's custom ones (SlotRecord.custom)."""
        root = (self, resources) if resources else self
        node = shape.nodes.get(root)
        if node is None:
            skip = RESOURCES.union(name.lower() for name in resources)
            node = shape.nodes[root] = _Node(shape, self.start - skip, skip, skip)
        while True:
            texts = node.get(values)
            step = node.next.get(texts)
            if step is None:
                step = node.next[texts] = self._step(shape, node, texts)
            if type(step) is _Leaf:
                break
            node = step
        kind = step.kinds.get(site)
        if kind is None:
            attrs = {name: shape.text(values, name) for name in step.seen}
            text = canonical(site, attrs)
            kind = self.kinds.get(text)
            if kind is None:
                kind = self.kinds[text] = Kind(text, site, attrs, step.skip)
            step.kinds[site] = kind
        return kind

    def _step(self, shape: Shape, node: _Node, texts: tuple[str, ...]) -> _Node | _Leaf:
        new = set()
        for text in texts:
            for scope, name in self.reader.reads(text):
                if name not in node.seen and (
                        scope == "my" or (scope == "" and name in shape.index)):
                    new.add(name)
        if new:
            return _Node(shape, new, node.seen, node.skip)
        return _Leaf(node.seen, node.skip)

    def forget(self, shapes: Iterable[Shape]) -> None:
        for shape in shapes:
            for root in [r for r in shape.nodes if r is self or (type(r) is tuple
                                                                and r[0] is self)]:
                del shape.nodes[root]


class Partition:
    """The usable slots as the autoclusters reading `names` see them: classes of pilots."""

    def __init__(self, names: frozenset[str], reader: AdReader) -> None:
        self.names = names
        self.projection = Projection(names, reader)
        self.kind_of: dict[str, Kind] = {}
        self.classes: dict[ClassKey, list[str]] = {}  # pilot ids sorted; free cpus > 0 only
        self.totals: dict[tuple[str, int, int, int, Amounts], int] = {}  # (kind, totals) -> slots
        self._views: dict[tuple[str, ...], dict[str, str]] = {}

    def add(self, pilot_id: str, rec: SlotRecord, keep_sorted: bool = True) -> None:
        try:
            kind = self.projection.kind(rec.shape, rec.values, rec.site, rec.custom)
        except classad2.ClassAdException:
            return  # an expression these autoclusters reach does not parse: no match here
        self.kind_of[pilot_id] = kind
        if not keep_sorted:
            if rec.free[0] > 0:
                self.classes.setdefault((*rec.free, kind.text), []).append(pilot_id)
        else:
            self.file(pilot_id, kind.text, rec.free)
        key = (kind.text, *rec.totals)
        self.totals[key] = self.totals.get(key, 0) + 1

    def fill(self, slots: Iterable[tuple[str, SlotRecord]]) -> None:
        """add() for a whole pool at once: classes sorted once at the end."""
        for pilot_id, rec in slots:
            self.add(pilot_id, rec, keep_sorted=False)
        for members in self.classes.values():
            members.sort()

    def remove(self, pilot_id: str, rec: SlotRecord) -> None:
        kind = self.kind_of.pop(pilot_id, None)
        if kind is None:
            return
        self.unfile(pilot_id, kind.text, rec.free)
        key = (kind.text, *rec.totals)
        self.totals[key] -= 1
        if not self.totals[key]:
            del self.totals[key]

    def refree(self, pilot_id: str, old: Free, new: Free) -> None:
        kind = self.kind_of.get(pilot_id)
        if kind is not None:
            self.unfile(pilot_id, kind.text, old)
            self.file(pilot_id, kind.text, new)

    def file(self, pilot_id: str, kind: str, free: Free) -> None:
        if free[0] > 0:
            bisect.insort(self.classes.setdefault((*free, kind), []), pilot_id)

    def unfile(self, pilot_id: str, kind: str, free: Free) -> None:
        if free[0] > 0:
            key = (*free, kind)
            members = self.classes[key]
            del members[bisect.bisect_left(members, pilot_id)]
            if not members:
                del self.classes[key]

    def kind(self, text: str) -> Kind:
        return self.projection.kinds[text]

    def view(self, refs: tuple[str, ...]) -> dict[str, str]:
        """kind text -> what autoclusters reading `refs` see of it; filled by see()."""
        found = self._views.get(refs)
        if found is None:
            found = self._views[refs] = {}
        return found

    def see(self, view: dict[str, str], refs: tuple[str, ...], kind: str) -> str:
        seen = view[kind] = self.kind(kind).seen_by(refs, self.projection.reader)
        return seen


class SlotPool:
    """Every pilot's latest ad, read once, and the partitions the demand needs."""

    def __init__(self) -> None:
        self.reader = AdReader()
        self.records: dict[str, SlotRecord] = {}
        self.partitions: dict[frozenset[str], Partition] = {}
        self.main: Partition | None = None
        self.parsed = 0  # ad texts read so far
        self.free_cpus = 0  # free cpus of the usable slots
        self.pool_cpus = 0  # the pool's size for group quotas
        self.usable = 0  # slots that can take claims
        self.retiring = 0
        self._wide: dict[str, bool] = {}
        self._wide_at = 0

    def sync(self, slots: Sequence[SlotAdvertised]) -> None:
        """Take the pass's slot ads: one per pilot (the highest seq); pilots not listed
        are gone. Costs a lookup per unchanged ad."""
        fresh = {msg.pilot_id: msg for msg in slots}
        if len(fresh) < len(slots):  # a pilot listed twice: its highest seq counts
            fresh = {}
            for msg in slots:
                known = fresh.get(msg.pilot_id)
                if known is None or msg.seq >= known.seq:
                    fresh[msg.pilot_id] = msg
        for pilot_id in self.records.keys() - fresh.keys():
            self._leave(pilot_id, self.records.pop(pilot_id))
        for pilot_id, msg in fresh.items():
            rec = self.records.get(pilot_id)
            if rec is None or rec.msg is not msg:
                self._update(pilot_id, rec, msg)

    def arrange(self, wanted: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], Partition]:
        """The partition each set of names read is matched in; built where missing."""
        wanted = set(wanted)
        wide = {refs for refs in wanted if any(map(self._is_wide, refs))}
        needed = frozenset().union(*(wanted - wide))
        main = self.main
        if main is None or not needed <= main.names:
            keep = main.names if main is not None and len(main.names - needed) < 16 else ()
            main = self.main = self._build(needed | frozenset(keep))
        layout = dict.fromkeys(wanted - wide, main)
        for refs in wide:
            layout[refs] = self.partitions.get(frozenset(refs)) or self._build(frozenset(refs))
        kept = {main.names: main, **{p.names: p for p in layout.values()}}
        for names, gone in self.partitions.items():
            if names not in kept:
                gone.projection.forget(self.reader.shapes())
        self.partitions = kept
        return layout

    def _build(self, names: frozenset[str]) -> Partition:
        part = Partition(names, self.reader)
        part.fill((pilot_id, rec) for pilot_id, rec in self.records.items() if rec.usable)
        return part

    def _is_wide(self, name: str) -> bool:
        """Whether an attribute tells many slots apart (judged on a sample: it only decides
        how the pool is cut, never what a pass decides)."""
        if len(self.records) > 2 * self._wide_at:
            self._wide, self._wide_at = {}, len(self.records)
        wide = self._wide.get(name)
        if wide is None:
            sample = [rec for rec in islice(self.records.values(), _SAMPLE) if rec.usable]
            texts = {rec.shape.text(rec.values, name) for rec in sample}
            wide = self._wide[name] = len(texts) > max(WIDE_MIN, len(sample) // 16)
        return wide

    def _update(self, pilot_id: str, rec: SlotRecord | None, msg: SlotAdvertised) -> None:
        if rec is not None and rec.msg.ad == msg.ad and rec.msg.site == msg.site \
                and (rec.msg.state == "retiring") == (msg.state == "retiring") \
                and (rec.msg.entry, rec.msg.provider) == (msg.entry, msg.provider):
            self._refree(pilot_id, rec, msg)
            return
        if rec is not None:
            self._leave(pilot_id, rec)
        rec = self.records[pilot_id] = SlotRecord(msg, self.reader)
        self.parsed += 1
        self._join(pilot_id, rec)

    def _refree(self, pilot_id: str, rec: SlotRecord, msg: SlotAdvertised) -> None:
        """The same ad with other free resources: the slot moves to another class."""
        old, new = rec.free, rec.free_in(msg, self.reader)
        rec.msg = msg
        if old == new:
            return
        self._count(rec, -1)
        rec.free = new
        if not rec.usable:
            rec.weight = max(0, rec.totals[0] - new[0])
        self._count(rec, +1)
        if rec.usable:
            for part in self.partitions.values():
                part.refree(pilot_id, old, new)

    def _join(self, pilot_id: str, rec: SlotRecord) -> None:
        self._count(rec, +1)
        if rec.usable:
            for part in self.partitions.values():
                part.add(pilot_id, rec)

    def _leave(self, pilot_id: str, rec: SlotRecord) -> None:
        self._count(rec, -1)
        if rec.usable:
            for part in self.partitions.values():
                part.remove(pilot_id, rec)

    def _count(self, rec: SlotRecord, sign: int) -> None:
        self.pool_cpus += sign * rec.weight
        if rec.usable:
            self.free_cpus += sign * max(0, rec.free[0])
            self.usable += sign
        else:
            self.retiring += sign * (rec.msg.state == "retiring")
