"""The collector view, rebuilt by folding the event stream (no collector daemon).

    event log ──▶ PoolView.apply(event) … ──▶ entries, pilots by state, slots, jobs, vms

Pure: it takes decoded events in order and keeps only the latest state of
each pilot, entry and job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LIVE_PILOT_STATES = ("pending", "idle", "busy", "retiring")
JOB_STATE_BY_EVENT = {
    "job.running": "running", "job.completed": "completed", "job.held": "held",
    "job.released": "idle", "job.removed": "removed", "job.requeued": "idle",
}


@dataclass
class PilotView:
    entry: str
    provider: str
    state: str
    claims: int = 0
    free_cpus: int = 0


@dataclass
class PoolView:
    entries: dict[str, Any] = field(default_factory=dict)  # name -> EntryAdvertised
    pilots: dict[str, PilotView] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> state

    def apply(self, event: Any) -> None:
        name = event.NAME
        if name == "entry.advertised":
            self.entries[event.entry] = event
        elif name.startswith("pilot.") or name == "slot.advertised":
            self._apply_pilot(name, event)
        elif name == "job.submitted":
            for job_id in event.jobs:
                self.jobs[job_id] = "idle"
        elif name in JOB_STATE_BY_EVENT and event.job_id in self.jobs:
            self.jobs[event.job_id] = JOB_STATE_BY_EVENT[name]

    def _apply_pilot(self, name: str, event: Any) -> None:
        pilot = self.pilots.get(event.pilot_id)
        if name == "pilot.launched":
            self.pilots[event.pilot_id] = PilotView(event.entry, event.provider, "pending")
            return
        if pilot is None:
            if name in ("pilot.registered", "slot.advertised"):
                pilot = self.pilots[event.pilot_id] = PilotView(
                    event.entry, getattr(event, "provider", ""), "idle")
            else:
                return
        if name == "pilot.registered":
            pilot.state = "idle" if pilot.state == "pending" else pilot.state
        elif name == "slot.advertised":
            if pilot.state not in ("exited", "lost"):
                pilot.state = event.state
            pilot.claims, pilot.free_cpus = len(event.claims), event.free_cpus
        elif name == "pilot.retiring":
            pilot.state = "retiring"
        elif name == "pilot.exited":
            pilot.state, pilot.claims = "exited", 0
        elif name == "pilot.lost":
            pilot.state, pilot.claims = "lost", 0

    # --- the shapes `burst status --json` prints --------------------------------------------

    def pilot_counts(self, entry: str) -> dict[str, int]:
        return dict(Counter(p.state for p in self.pilots.values() if p.entry == entry))

    def slots(self) -> dict[str, int]:
        live = [p for p in self.pilots.values() if p.state in ("idle", "busy", "retiring")]
        return {"claimed": sum(p.claims for p in live),
                "unclaimed": sum(1 for p in live if p.free_cpus > 0 and p.state != "retiring")}

    def job_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("idle", "running", "completed", "held", "removed"), 0)
        counts.update(Counter(self.jobs.values()))
        return counts

    def vms(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for pilot in self.pilots.values():
            out.setdefault(pilot.provider or "unknown", Counter())[_vm_state(pilot.state)] += 1
        return {provider: dict(counts) for provider, counts in out.items()}

    def entry_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, e in sorted(self.entries.items()):
            rows.append({"name": name, "site": e.site, "driver": e.driver,
                         "provider": e.provider, "endpoint": e.endpoint,
                         "trust_domain": e.trust_domain, "pilots": self.pilot_counts(name)})
        return rows


def _vm_state(pilot_state: str) -> str:
    return {"pending": "pending", "idle": "running", "busy": "running",
            "retiring": "running", "exited": "terminated", "lost": "lost"}.get(pilot_state,
                                                                                pilot_state)
