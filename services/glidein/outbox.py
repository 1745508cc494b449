"""Job reports on their way to the schedds: on disk until the broker has confirmed them.

    put(report) ──▶ records (fsynced) ──▶ send_many(message_ids=[id]) ──confirm──▶ deleted
                                             │ BrokerUnavailable, nack, no confirm in time
                                             ▼
                    every retry_s: resend what is unconfirmed, under the SAME message id

The schedd handles a message id once (its processed table), so a report sent
twice (confirm lost, pilot restarted) changes its job once. A final report
(exited, held, rejected) replaces the claim's running report in the same
commit: the schedd only needs the last word. Everything runs on the bus's I/O
thread; nothing here waits for the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from services.condor.pilotdir import JobRecord, OutboxEntry, PilotRecords
from services.runtime import codec
from services.runtime.bus import BrokerUnavailable, Bus

log = logging.getLogger("burst.glidein.outbox")


class Outbox:
    def __init__(self, bus: Bus, records: PilotRecords, *, retry_s: float = 2.0,
                 confirm_timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.bus = bus
        self.records = records
        self.retry_s = retry_s
        self.confirm_timeout_s = confirm_timeout_s  # unconfirmed this long: published again
        self.clock = clock
        self._inflight: dict[str, float] = {}  # message id -> when last published
        self._failing: set[str] = set()  # logged once until it goes through

    def start(self) -> None:
        """Send what a previous life of the pilot left unconfirmed, then keep retrying."""
        left = self.records.reports()
        if left:
            log.info("event=outbox_resend entries=%d", len(left))
        self.resend()
        self.bus.call_every(self.retry_s, self.resend, first_delay_s=self.retry_s)

    def put(self, report: Any, schedd: str, *, final: bool,
            running: JobRecord | None = None) -> None:
        """Record a report (with the job's process when it starts), then publish it."""
        entry = OutboxEntry(codec.new_message_id(), schedd, report, final)
        self.records.add_report(entry, running=running)
        self._publish(entry)

    def resend(self) -> None:
        now = self.clock()
        entries = self.records.reports()
        self._failing &= {entry.message_id for entry in entries}  # superseded ones go
        for entry in entries:
            sent = self._inflight.get(entry.message_id)
            if sent is None or now - sent >= self.confirm_timeout_s:
                self._publish(entry)

    @property
    def empty(self) -> bool:
        return not self.records.reports()

    def _publish(self, entry: OutboxEntry) -> None:
        self._inflight[entry.message_id] = self.clock()
        try:
            fut = self.bus.send_many([entry.report], to=entry.schedd,
                                     message_ids=[entry.message_id])
        except BrokerUnavailable as exc:  # not even handed to the connection: next round
            self._settled(entry, _failed(exc))
            return
        # The future may resolve on any thread: its outcome is handled on the I/O thread.
        fut.add_done_callback(
            lambda done: self.bus.call_soon_threadsafe(partial(self._settled, entry, done)))

    def _settled(self, entry: OutboxEntry, fut: Future) -> None:
        self._inflight.pop(entry.message_id, None)
        exc = fut.exception()
        report = entry.report
        if exc is None:
            self.records.remove_report(entry.message_id)
            if self._failing:
                self._failing.discard(entry.message_id)
                log.info("event=report_delivered job=%s state=%s message_id=%s", report.job_id,
                         report.state, entry.message_id)
            return
        if entry.message_id not in self._failing:
            self._failing.add(entry.message_id)
            log.warning("event=report_unconfirmed job=%s state=%s message_id=%s reason=%r "
                        "action=kept_for_resend", report.job_id, report.state, entry.message_id,
                        str(exc))


def _failed(exc: BaseException) -> Future:
    fut: Future = Future()
    fut.set_exception(exc)
    return fut
