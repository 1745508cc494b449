"""Waiting in tests: on what handlers saw (Inbox) or on a condition, always with a deadline."""

from __future__ import annotations

import threading
import time


class Inbox:
    """Collects what handlers saw; wait_for() blocks until a predicate of the inbox holds."""

    def __init__(self):
        self.items: list = []
        self._cond = threading.Condition()

    def add(self, item) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(list(self.items))

    def of(self, kind) -> list:
        with self._cond:
            return [item for item in self.items if isinstance(item, kind)]

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "messages") -> list:
        """Wait until predicate(inbox) is true; return everything seen so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; saw {self.items!r}")
                self._cond.wait(remaining)
            return list(self.items)

    def wait_for_item(self, match, timeout: float = 20.0, what: str = "a message") -> list:
        """Wait until some item matches; return the matching items."""
        found: list = []

        def any_match(inbox: Inbox) -> bool:
            found[:] = [item for item in inbox.items if match(item)]
            return bool(found)

        self.wait_for(any_match, timeout, what)
        return found


def wait_until(predicate, timeout: float = 10.0, what: str = "condition", poll_s: float = 0.02):
    """Poll predicate() until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll_s)


def processes_where(variable: str, match) -> list:
    """Live processes whose environment `variable` satisfies match(value): a pilot's jobs
    (BURST_PILOT_ID), a VM's glidein (BURST_PILOT_WORK_DIR under the cloud's VM disks)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and match(proc.environ().get(variable, "")):
                found.append(proc)
        except psutil.Error:
            continue
    return found
