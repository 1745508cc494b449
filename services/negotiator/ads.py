"""Slot ad texts read lean: attribute texts split out and interned, what expressions read.

    slot.ad text ──attributes()──▶ Shape (attribute names, shared by every ad of that layout)
                                   + value texts (interned: 100k pilots of 40 entries share them)
    value text ──reads()──▶ ((scope, name), ...)   parsed by classad2 once per distinct text

classad2 parses a slot ad in ~15 µs and keeps a C++ object per ad; matching
needs neither for most of a pool's slots, only one representative per class
of slots. Most ads are flat `[a = b; c = d]` with no `;` inside their strings:
those are split with str methods (C loops). Anything else (nested ads,
escapes, comments, quoted names) goes through classad2 and comes back as the
same (names, texts). An ad classad2 refuses raises `classad2.ClassAdException`.
"""

from __future__ import annotations

import re
import sys
from operator import itemgetter

import classad2

from .custom import names_of

ABSENT = "\x00"  # the text of an attribute an ad does not define: a match reads it elsewhere

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_CONSTANTS = frozenset({"true", "false", "undefined", "error"})
_NO_READS: tuple[tuple[str, str], ...] = ()


class Shape:
    """The attribute names of an ad, in order; one object for all ads written alike."""

    __slots__ = ("index", "names", "nodes", "totals")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.index = {name.lower(): i for i, name in enumerate(names)}  # the last one wins
        self.nodes: dict = {}  # per projection (pool.py): its memo for ads of this shape
        self.totals = self.getter(("totalcpus", "totalmemory", "totaldisk", "cpus", "memory",
                                   "disk"))

    def getter(self, names: tuple[str, ...]):
        """values -> the texts of `names` (ABSENT where this shape lacks one)."""
        positions = [self.index.get(name) for name in names]
        if None not in positions and len(positions) > 1:
            return itemgetter(*positions)
        return lambda values: tuple(ABSENT if i is None else values[i] for i in positions)

    def text(self, values: tuple[str, ...], name: str) -> str:
        i = self.index.get(name)
        return ABSENT if i is None else values[i]


class AdReader:
    """Splits slot ads into (Shape, texts); keeps the shapes and what each text reads.

    Pilots of one entry write most `name = value` items alike, so items are read
    through a memo: a pool of 100k slots reads each distinct item once.
    """

    def __init__(self) -> None:
        self._shapes: dict[tuple[str, ...], Shape] = {}
        self._reads: dict[str, tuple[tuple[str, str], ...]] = {}
        self._items: dict[str, tuple[str, str] | None] = {}
        self._misses: dict[str, int] = {}  # per attribute name: items the memo lacked
        self._names: dict[str, str] = {}  # "  Name " -> "Name": the text before an "="
        self._ads = 0
        self._literals: dict[str, object] = {}
        self._totals: dict[tuple[str, ...], tuple[int, int, int, tuple] | None] = {}
        self._custom: dict[str, tuple[str, ...]] = {}
        self._shared: dict[tuple, tuple] = {}

    def attributes(self, text: str) -> tuple[Shape, tuple[str, ...]]:
        names, values = self._split(text) or _split_by_classad2(text)
        shape = self._shapes.get(names)
        if shape is None:
            shape = self._shapes[names] = Shape(names)
        return shape, values

    def shapes(self) -> list[Shape]:
        return list(self._shapes.values())

    def reads(self, text: str) -> tuple[tuple[str, str], ...]:
        """(scope, lower-case name) of every attribute `text` reads; scope is "my",
        "target" or "" (an unscoped name: the own ad if it has it, else the other)."""
        found = self._reads.get(text)
        if found is None:
            if len(self._reads) > _MEMO_LIMIT:  # texts of pilots long gone
                self._reads.clear()
            found = self._reads[text] = _NO_READS if is_literal(text) else _parse_reads(text)
        return found

    def literal(self, text: str) -> object:
        found = self._literals.get(text, _MISSING)
        if found is _MISSING:
            if len(self._literals) > _MEMO_LIMIT:
                self._literals.clear()
            found = self._literals[text] = literal_value(text)
        return found

    def totals(self, shape: Shape, values: tuple[str, ...]) -> tuple[int, int, int, tuple] | None:
        """A slot's size: cpus, MiB and MB of disk (advertised in KiB), and no custom
        resources (the caller adds them), or None. A partitionable slot advertises it as
        TotalCpus/TotalMemory/TotalDisk (its Cpus, Memory and Disk are what is free)."""
        texts = shape.totals(values)
        found = self._totals.get(texts, _MISSING)
        if found is _MISSING:
            if len(self._totals) > _MEMO_LIMIT:
                self._totals.clear()
            numbers = [self.literal(total if total is not ABSENT else now)
                       for total, now in zip(texts[:3], texts[3:], strict=True)]
            found = None
            if all(isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 0
                   for n in numbers):
                found = (int(numbers[0]), int(numbers[1]), int(numbers[2]) // 1024, ())
            self._totals[texts] = found
        return found

    def shared(self, value: tuple) -> tuple:
        """One object for equal tuples (slot sizes: most pilots of an entry are alike)."""
        found = self._shared.get(value)
        if found is None:
            if len(self._shared) > _MEMO_LIMIT:
                self._shared.clear()
            found = self._shared[value] = value
        return found

    def custom_names(self, shape: Shape, values: tuple[str, ...]) -> tuple[str, ...]:
        """The custom resources a slot has (GPUs, Boats): the names in its MachineResources
        beyond Cpus, Memory and Disk, as spelled there, sorted by lower-case name."""
        text = shape.text(values, "machineresources")
        if text is ABSENT:
            return ()
        found = self._custom.get(text)
        if found is None:
            if len(self._custom) > _MEMO_LIMIT:
                self._custom.clear()
            found = self._custom[text] = names_of(self.literal(text))
        return found

    def _split(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Flat ads only, split by str methods; None where classad2 must read it."""
        start, end = text.find("["), text.rfind("]")
        if start < 0 or end < start or "\\" in text or text[:start].strip() \
                or text[end + 1:].strip():
            return None
        parts = text[start + 1:end].split(";")
        self._ads += 1
        items = list(map(self._items.get, parts))
        i = _index(items, None, 0)
        while i >= 0:  # items not seen before; list.index finds them without a Python loop
            items[i] = self._learn(parts[i])
            i = _index(items, None, i + 1)
        if items and items[-1] is _BLANK:
            items.pop()  # a trailing ";"
        if not items or _index(items, _BLANK, 0) >= 0 or _index(items, _BAD, 0) >= 0:
            return None
        return tuple(map(_first, items)), tuple(map(_second, items))

    def _learn(self, part: str) -> tuple[str, str] | object:
        """Read an item the memo lacks; remember it unless its attribute tells slots apart
        (Name, CloudInstanceID, ...: new in most ads), which would only fill the memo."""
        at = part.find("=")
        if at < 0:
            if part.strip():
                return _BAD  # no "=": classad2 says what is wrong
            self._remember(part, _BLANK)
            return _BLANK
        head = part[:at]
        name = self._names.get(head)
        if name is None:
            name = head.strip()
            if not name.isidentifier():
                return _BAD  # a quoted name, or a comment before it
            if len(self._names) > _MEMO_LIMIT:
                self._names.clear()
            name = self._names[head] = sys.intern(name)
        value = part[at + 1:].strip()
        if not value or not _plain(value):
            return _BAD
        item = (name, value)
        misses = self._misses[name] = self._misses.get(name, 0) + 1
        if self._ads < _WARMUP or misses * 2 < self._ads:
            self._remember(part, item)
        return item

    def _remember(self, part: str, item: tuple[str, str] | object) -> None:
        if len(self._items) > _MEMO_LIMIT:
            self._items.clear()
        self._items[part] = item


def _index(items: list, wanted: object, start: int) -> int:
    try:
        return items.index(wanted, start)
    except ValueError:
        return -1


_MEMO_LIMIT = 400_000
_WARMUP = 64  # ads read before attributes new in most ads stop being remembered
_MISSING = object()
_BLANK = object()  # an empty item (after a trailing ";"); plain objects compare fast
_BAD = object()  # an item classad2 must judge
_first, _second = itemgetter(0), itemgetter(1)


def _plain(value: str) -> bool:
    """Whether a value text is safe to take as split: its strings hold no ";" (an odd
    count of quotes: a string ran over one), and outside them no nested ad, quoted name
    or comment (classad2's business)."""
    outside = value
    if '"' in value:
        pieces = value.split('"')
        if len(pieces) % 2 == 0:
            return False
        outside = "".join(pieces[0::2])
    return not ("[" in outside or "]" in outside or "'" in outside
                or ("/" in outside and ("//" in outside or "/*" in outside)))


def is_literal(text: str) -> bool:
    if text[:1] == '"':
        return text.count('"') == 2 and text[-1] == '"' and "\\" not in text
    return text.lower() in _CONSTANTS or _NUMBER.fullmatch(text) is not None


def literal_value(text: str) -> object:
    """The value of an attribute text: numbers and plain strings without classad2."""
    if text is ABSENT:
        return None
    if text[:1] == '"' and is_literal(text):
        return text[1:-1]
    if _NUMBER.fullmatch(text):
        return int(text) if _INTEGER.fullmatch(text) else float(text)
    try:
        value = classad2.ExprTree(text).eval()
    except classad2.ClassAdException:
        return None
    return None if isinstance(value, classad2.Value) else value


def _parse_reads(text: str) -> tuple[tuple[str, str], ...]:
    expr = classad2.ExprTree(text)
    found = []
    for ref in classad2.ClassAd().externalRefs(expr):  # an empty ad: every name is external
        parts = ref.lower().split(".")
        if len(parts) > 1 and parts[0] in ("my", "target"):
            found.append((parts[0], parts[1]))
        elif parts[0]:
            found.append(("", parts[0]))
    return tuple(sorted(set(found)))


def _split_by_classad2(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ad = classad2.ClassAd(text)
    names = tuple(ad.keys())
    return names, tuple(sys.intern(str(ad.lookup(name)).strip()) for name in names)
