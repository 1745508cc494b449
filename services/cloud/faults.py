"""Fault injection per entry, for tests and drills: `faults = { ... }` on an [[entry]].

    launch_errors = N        the next N RunInstances naming the entry fail with
    launch_error = "CODE"      this code (default InsufficientInstanceCapacity, HTTP 500;
                               any other code answers HTTP 400, e.g. "Unsupported")
    throttle = N             the next N RunInstances/DescribeInstances naming the entry
                               answer RequestLimitExceeded (HTTP 503)
    never_boot = N           the entry's next N instances stay pending for ever
    vanish = N               the entry's next N instances to boot disappear (terminated by
    vanish_after_s = S         the cloud, glidein and jobs killed) S seconds after booting

A request names an entry by its burst:entry tag (RunInstances) or tag filter
(DescribeInstances); counts are used up as faults happen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from services.runtime.config import ConfigError, EntryConfig

COUNTS = ("launch_errors", "throttle", "never_boot", "vanish")
TYPES = {**dict.fromkeys(COUNTS, (int,)), "launch_error": (str,),
         "vanish_after_s": (int, float)}


@dataclass(frozen=True)
class Faults:
    launch_errors: int = 0
    launch_error: str = "InsufficientInstanceCapacity"
    throttle: int = 0
    never_boot: int = 0
    vanish: int = 0
    vanish_after_s: float = 1.0

    @classmethod
    def of(cls, entry: EntryConfig) -> Faults:
        for name, value in entry.faults.items():
            where = f"entry {entry.name}: faults.{name}"
            if name not in TYPES:
                raise ConfigError(f"{where}: unknown; known: {', '.join(TYPES)}")
            if isinstance(value, bool) or not isinstance(value, TYPES[name]):
                raise ConfigError(f"{where}: expected {TYPES[name][-1].__name__}, got {value!r}")
        return cls(**entry.faults)


class FaultBudget:
    """What is left of every entry's faults; take() uses one up (any thread)."""

    def __init__(self, entries: Iterable[EntryConfig]):
        self.faults = {e.name: Faults.of(e) for e in entries}
        self.left = {(name, kind): getattr(f, kind) for name, f in self.faults.items()
                     for kind in COUNTS}
        self.lock = threading.Lock()

    def take(self, entry: str, kind: str) -> bool:
        with self.lock:
            if self.left.get((entry, kind), 0) <= 0:
                return False
            self.left[(entry, kind)] -= 1
            return True

    def of(self, entry: str) -> Faults:
        return self.faults.get(entry, Faults())
