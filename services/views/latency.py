"""How long each step of the flow took, folded from the event stream (pure).

    job.submitted ─────────────────────────────────────────────┐ per job
    pilot.launched (requested_at: the frontend's request) ──┐  │
    pilot.registered ───────────────────────────────────────┤  │
    job.running (its pilot) ────────────────────────────────┴──┤
    job.completed ─────────────────────────────────────────────┘
        ──▶ (step, seconds), one per step as soon as both of its ends are known

Steps, in flow order (the web service observes them into histograms on /metrics):

    submitted_to_requested   a job's submission → the request for the pilot that first ran it
    requested_to_launched    a pilot's request → its launch                       (per pilot)
    launched_to_registered   a pilot's launch → its registration: boot time      (per pilot)
    registered_to_running    that pilot's registration → the job starting on it
    submitted_to_running     a job's wait in the queue, whatever served it
    running_to_completed     a job's run
    submitted_to_completed   a job's whole stay

The first and fourth are observed only for a job whose pilot was requested after it was
submitted (a job that waited for provisioning); a job that found a pilot ready shows only
in the job steps. Memory is bounded: a job or pilot is forgotten when it ends, and the
oldest are dropped beyond MAX_TRACKED.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

STEPS = ("submitted_to_requested", "requested_to_launched", "launched_to_registered",
         "registered_to_running", "submitted_to_running", "running_to_completed",
         "submitted_to_completed")
MAX_TRACKED = 100_000


@dataclass
class _Pilot:
    requested_at: float = 0.0
    launched_at: float = 0.0
    registered_at: float = 0.0
    served: bool = False  # its first job was counted for the provisioning steps


@dataclass
class _Job:
    submitted_at: float
    running_at: float = 0.0


class FlowLatency:
    def __init__(self, max_tracked: int = MAX_TRACKED):
        self.max_tracked = max_tracked
        self.jobs: OrderedDict[str, _Job] = OrderedDict()
        self.pilots: OrderedDict[str, _Pilot] = OrderedDict()

    def apply(self, event: Any, at: float) -> list[tuple[str, float]]:
        """Fold one event in (at: when it happened); the steps it completes."""
        name = event.NAME
        if name == "job.submitted":
            for job_id in event.jobs:
                self._keep(self.jobs, job_id, _Job(at))
        elif name == "pilot.launched":
            requested = getattr(event, "requested_at", 0.0)
            self._keep(self.pilots, event.pilot_id, _Pilot(requested, at))
            if requested and at >= requested:
                return [("requested_to_launched", at - requested)]
        elif name == "pilot.registered":
            pilot = self.pilots.get(event.pilot_id)
            if pilot is not None and not pilot.registered_at:
                pilot.registered_at = at
                return [("launched_to_registered", max(0.0, at - pilot.launched_at))]
        elif name in ("pilot.exited", "pilot.lost"):
            self.pilots.pop(event.pilot_id, None)
        elif name == "job.running":
            return self._running(event, at)
        elif name == "job.completed":
            job = self.jobs.pop(event.job_id, None)
            if job is not None:
                steps = [("submitted_to_completed", max(0.0, at - job.submitted_at))]
                if job.running_at:
                    steps.append(("running_to_completed", max(0.0, at - job.running_at)))
                return steps
        elif name == "job.removed":
            self.jobs.pop(event.job_id, None)
        return []

    def _running(self, event: Any, at: float) -> list[tuple[str, float]]:
        job = self.jobs.get(event.job_id)
        if job is None or job.running_at:  # a requeued job's second start counts once
            return []
        job.running_at = at
        steps = [("submitted_to_running", max(0.0, at - job.submitted_at))]
        pilot = self.pilots.get(event.pilot_id)
        if pilot is not None and not pilot.served and pilot.requested_at >= job.submitted_at \
                and pilot.registered_at:
            pilot.served = True
            steps = [("submitted_to_requested", pilot.requested_at - job.submitted_at),
                     ("registered_to_running", max(0.0, at - pilot.registered_at)), *steps]
        return steps

    def _keep(self, table: OrderedDict, key: str, value: Any) -> None:
        table[key] = value
        while len(table) > self.max_tracked:
            table.popitem(last=False)
