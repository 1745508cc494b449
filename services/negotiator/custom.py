"""Custom resources (GPUs, Boats, ...) as a pass counts them: amounts by lower-case name.

    slot: MachineResources "Cpus Memory Disk Boats", free_resources {"Boats": 2}
                                                        ─▶ free (("boats", 2),)
    job:  Requestboats = 1 (condor_submit's request_boats) ─▶ wants (("boats", 1),)

ClassAd names are case-insensitive, so a job's `request_boats` asks for the slot's
`Boats`: both sides are keyed by the lower-case name, sorted, so equal amounts are
equal tuples (a slot's free amounts are part of its class key, pool.py). A slot
lacking a resource has none of it. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Collection

Amounts = tuple[tuple[str, int], ...]
NONE: Amounts = ()

# Resources every slot has and the pass counts apart (Swap: HTCondor lists it, nobody asks).
STANDARD = frozenset({"cpus", "memory", "disk", "swap"})


def covers(free: Amounts, wanted: Amounts, times: int = 1) -> bool:
    """Whether `free` holds `times` × `wanted`."""
    have = dict(free)
    return all(have.get(name, 0) >= amount * times for name, amount in wanted)


def minus(free: Amounts, wanted: Amounts, times: int = 1) -> Amounts:
    """`free` after `times` × `wanted` were carved out of it."""
    if not wanted:
        return free
    taken = dict(wanted)
    return tuple((name, have - taken.get(name, 0) * times) for name, have in free)


def amount_of(amounts: Amounts, name: str) -> int:
    return next((have for known, have in amounts if known == name), 0)


def names_of(machine_resources: object) -> tuple[str, ...]:
    """The custom resources a MachineResources string names, as spelled there, sorted by
    lower-case name (HTCondor separates them with spaces; commas are taken too)."""
    if not isinstance(machine_resources, str):
        return ()
    found: dict[str, str] = {}
    for name in machine_resources.replace(",", " ").split():
        if name.lower() not in STANDARD:
            found.setdefault(name.lower(), name)
    return tuple(found[key] for key in sorted(found))


def spelling(names: Collection[str], name: str) -> str | None:
    """How `names` spell `name` (ClassAd names are case-insensitive), or None."""
    if name in names:
        return name
    lower = name.lower()
    return next((known for known in names if known.lower() == lower), None)


def lookup(amounts: dict[str, int], name: str) -> int | None:
    """`name`'s amount in a dict keyed by any spelling of it, or None."""
    known = spelling(amounts, name)
    return None if known is None else amounts[known]


def whole(value: object) -> int | None:
    """A request's amount: a number above 0, rounded up; None for anything else."""
    if type(value) not in (int, float):  # not bool, nor classad2.Value (an IntEnum)
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return math.ceil(value)
