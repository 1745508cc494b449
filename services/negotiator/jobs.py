"""An autocluster's job ad, parsed once, with what matching and fair share need from it.

    AutoCluster.ad ──JobAd.parse()──▶ ClassAd, request (custom resources too: every
                                      Request<Name> beyond cpus, memory and disk), the
                                      slot attributes its Requirements/Rank read, its
                                      charge (principal, accounting group, concurrency
                                      limits), and the evaluations made for it so far
                                      (kept across passes)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import classad2
from classad2 import ClassAd

from .custom import NONE, STANDARD, Amounts, covers, whole
from .groups import Charge, FairSharePolicy

RESOURCES = frozenset({"cpus", "memory", "disk"})
_ABSENT = "\x00"
_CACHE_LIMIT = 200_000  # evaluations kept per job ad before they are dropped and redone


@dataclass(frozen=True)
class Resources:
    """What a job takes from a slot; iterating gives cpus, MiB and MB disk."""

    cpus: int
    memory_mb: int
    disk_mb: int
    custom: Amounts = ()  # (name as the job spells it, amount), sorted by lower-case name

    @property
    def wanted(self) -> Amounts:
        """The custom amounts by lower-case name, as slots' amounts are kept (custom.py)."""
        return tuple((name.lower(), amount) for name, amount in self.custom)

    def fits_in(self, cpus: int, memory_mb: int, disk_mb: int,
                free: Amounts = NONE) -> bool:
        return self.cpus <= cpus and self.memory_mb <= memory_mb and \
            self.disk_mb <= disk_mb and covers(free, self.wanted)

    def __iter__(self):
        return iter((self.cpus, self.memory_mb, self.disk_mb))

    def __str__(self) -> str:
        extra = "".join(f", {amount} {name}" for name, amount in self.custom)
        return f"{self.cpus} cpus, {self.memory_mb} MiB, {self.disk_mb} MB disk{extra}"


@dataclass(eq=False)
class JobAd:
    ad: ClassAd
    refs: tuple[str, ...]  # sorted lower-case slot attributes its Requirements/Rank may read
    request: Resources
    job_prio: int
    has_rank: bool
    charge: Charge
    sites: frozenset[str] | None  # casefolded DESIRED_Sites, None when unset
    wants: Amounts  # request.wanted: custom resources by lower-case name, () for most jobs
    # (what it sees of a kind, free cpus, MiB, MB disk) -> matched / its Rank there
    matches: dict = field(default_factory=dict)
    ranks: dict = field(default_factory=dict)
    site_ok: dict = field(default_factory=dict)
    wanted: dict = field(default_factory=dict)  # its Requirements alone, for reasons
    _rank: classad2.ExprTree | None = None

    @classmethod
    def parse(cls, text: str, owner: str, desired_sites: str, config) -> JobAd:
        ad = ClassAd(text)
        if "Owner" not in ad:
            # Slots' START expressions commonly read TARGET.Owner; the schedd may leave it out.
            ad["Owner"] = owner
        cpus = number(ad, "RequestCpus", config.default_request_cpus)
        memory_mb = number(ad, "RequestMemory", config.default_request_memory_mb)
        disk_kib = number(ad, "RequestDisk", config.default_request_disk_kib)
        request = Resources(
            cpus=max(1, math.ceil(cpus)),  # a 0-cpu request would fit a slot forever
            memory_mb=max(0, math.ceil(memory_mb)),
            disk_mb=max(0, math.ceil(disk_kib / 1024)),
            custom=custom_requests(ad),
        )
        _, slot_refs = closure(ad, ("requirements", "rank"))
        policy: FairSharePolicy = config.policy
        charge = policy.charge_of(value(ad, "AccountingGroup"), owner,
                                  value(ad, "ConcurrencyLimits"))
        sites = frozenset(s.strip().casefold() for s in desired_sites.split(",") if s.strip())
        # Free resources are part of every slot class key already.
        return cls(ad, tuple(sorted(slot_refs - RESOURCES)), request,
                   int(number(ad, "JobPrio", 0)), "Rank" in ad, charge, sites or None,
                   request.wanted)

    def rank(self, slot: ClassAd) -> float:
        if not self.has_rank:
            return 0.0
        if self._rank is None:
            self._rank = self.ad.lookup("Rank")
        return as_number(self._rank.eval(scope=self.ad, target=slot), 0.0)

    def trim(self) -> None:
        """Evaluations of classes long gone: start over rather than grow without end."""
        if len(self.matches) + len(self.ranks) > _CACHE_LIMIT:
            self.matches.clear()
            self.ranks.clear()
            self.site_ok.clear()
            self.wanted.clear()


def custom_requests(ad: ClassAd) -> Amounts:
    """Request<Name> beyond cpus, memory and disk (request_gpus, request_<name>): whole
    amounts above 0, rounded up; a request that is no number (a string to match) is none."""
    found = []
    for attr in ad:
        name = attr[len("Request"):]
        if attr[:len("Request")].lower() == "request" and name \
                and name.lower() not in STANDARD:
            amount = whole(as_number(value(ad, attr), 0.0))
            if amount is not None:
                found.append((name, amount))
    return tuple(sorted(found, key=lambda item: item[0].lower()))


def closure(ad: ClassAd, start: Iterable[str], skip: frozenset[str] = frozenset()
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
    found = ad.get(name)
    if found is None:
        return _ABSENT, _NONE, _NONE
    if isinstance(found, (bool, int, float, str)):
        return "=" + repr(found), _NONE, _NONE  # a literal reads nothing
    expr = ad.lookup(name)
    own, other = _references(ad, expr)
    return "~" + str(expr), own, other


def _references(ad: ClassAd, expr: classad2.ExprTree) -> tuple[frozenset[str], frozenset[str]]:
    """Names `expr` reads from `ad` (MY.x, or x defined in `ad`) and from the other ad
    (TARGET.x, or an unscoped x that `ad` lacks: a match looks it up there)."""
    own, other = set(), set()
    for ref in (*ad.externalRefs(expr), *ad.internalRefs(expr)):
        parts = ref.lower().split(".")
        scope, name = (parts[0], parts[1]) if len(parts) > 1 and parts[0] in ("my", "target") \
            else ("", parts[0])
        if not name:
            continue
        if scope == "my" or (scope == "" and name in ad):
            own.add(name)
        else:
            other.add(name)
    return frozenset(own), frozenset(other)


def as_number(found: object, default: float) -> float:
    # classad2.Value (Error, Undefined) is an IntEnum: Value.Error == 1, so test it first.
    if isinstance(found, classad2.Value):
        return default
    if isinstance(found, (bool, int, float)):
        return float(found)
    return default


def number(ad: ClassAd, name: str, default: float) -> float:
    return as_number(value(ad, name), default)


def value(ad: ClassAd, name: str) -> object:
    found = ad.get(name)  # a literal comes back as is, cheaper than evaluating it
    return ad.eval(name) if isinstance(found, (classad2.ExprTree, list)) else found
