"""The pool over time: the fold of PoolView, sampled after every event, plus what the
dashboard shows of the events themselves.

    envelope ──Timeline.apply──▶ PoolView (now) ──▶ Series (a point per change)
                              └─▶ feed (the last N events) and each job's own events

A point is kept only when a count changed, so a series is a step function: a
value holds until the next point (readers draw steps and extend the last one to
now). Points are bounded, and so are the jobs whose events are kept.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import Any

from services.runtime.codec import Envelope, decode_or_none

from .pool import PoolView
from .records import event_time, feed_record

MAX_POINTS = 100_000
MAX_JOBS = 20_000
MAX_EVENTS_PER_JOB = 200
FEED_SIZE = 500


@dataclass(frozen=True)
class Point:
    t: float
    vms_pending: int
    vms_running: int  # VMs (pilots) up: registered and not gone, the paper's "running VMs"
    claimed: int  # slots claimed by jobs
    unclaimed: int
    jobs_idle: int  # waiting in the schedds: not at any entry yet
    jobs_running: dict[str, int] = field(default_factory=dict)  # entry -> running jobs

    @classmethod
    def sample(cls, t: float, view: PoolView) -> Point:
        vms, slots = view.vm_totals(), view.slots()
        return cls(t, vms.get("pending", 0), vms.get("running", 0), slots["claimed"],
                   slots["unclaimed"], view.job_counts()["idle"], view.running_jobs_by_entry())

    def counts(self) -> tuple:
        return (self.vms_pending, self.vms_running, self.claimed, self.unclaimed,
                self.jobs_idle, sorted(self.jobs_running.items()))

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, "vms_pending": self.vms_pending, "vms_running": self.vms_running,
                "claimed": self.claimed, "unclaimed": self.unclaimed,
                "jobs_idle": self.jobs_idle, "jobs_running": dict(self.jobs_running)}


class Series:
    def __init__(self, max_points: int = MAX_POINTS):
        self.points: deque[Point] = deque(maxlen=max_points)

    def record(self, t: float, view: PoolView) -> None:
        point = Point.sample(t, view)
        last = self.points[-1] if self.points else None
        if last is not None and point.counts() == last.counts():
            return
        if last is not None and point.t < last.t:  # two hosts' clocks: never step back
            point = replace(point, t=last.t)
        self.points.append(point)

    def since(self, start: float) -> list[Point]:
        """The points from `start` on, led by the counts that held at `start`."""
        before = [p for p in self.points if p.t < start][-1:]
        return [replace(p, t=start) for p in before] + [p for p in self.points if p.t >= start]


class Timeline:
    def __init__(self, *, feed_size: int = FEED_SIZE, max_points: int = MAX_POINTS,
                 max_jobs: int = MAX_JOBS):
        self.pool = PoolView()
        self.series = Series(max_points)
        self.feed: deque[tuple[dict, Any]] = deque(maxlen=feed_size)  # (record, event)
        self.job_events: OrderedDict[str, list[dict]] = OrderedDict()
        self.max_jobs = max_jobs
        self.seq = 0  # events applied; the feed's record ids

    def apply(self, env: Envelope) -> tuple[dict, Any]:
        """Fold one envelope in; return its feed record and the decoded event (or None)."""
        event = decode_or_none(env)
        self.seq += 1
        record = feed_record(env, event, self.seq)
        if event is not None:
            at = event_time(env, event)
            self.pool.apply(event, at)
            self.series.record(at, self.pool)
            for job_id in _jobs_named(event):
                self._remember(job_id, record)
        self.feed.append((record, event))
        return record, event

    def _remember(self, job_id: str, record: dict) -> None:
        events = self.job_events.get(job_id)
        if events is None:
            events = self.job_events[job_id] = []
            while len(self.job_events) > self.max_jobs:
                self.job_events.popitem(last=False)
        if len(events) < MAX_EVENTS_PER_JOB:
            events.append(record)


def _jobs_named(event: Any) -> list[str]:
    if event.NAME == "job.submitted":
        return list(event.jobs)
    job_id = getattr(event, "job_id", None) if event.NAME.startswith("job.") else None
    return [job_id] if job_id else []
