"""The pool as its events tell it: a fold of the event stream (no collector daemon).

    event log ──▶ PoolView.apply(event, at) … ──▶ entries, pilots and VMs by state,
                                                  slots, jobs by state and entry,
                                                  launch latencies, cost so far

Pure: it takes decoded events in order and keeps only the latest state of each
pilot, entry and job. Counts are kept as running tallies (each change takes the
old state's share out and puts the new one in), because the dashboard samples
them after every event of a day-long log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.condor.classads import classad2

LIVE_PILOT_STATES = ("pending", "idle", "busy", "retiring")
SLOT_STATES = ("idle", "busy", "retiring")  # registered and not gone: its slot counts
JOB_STATES = ("idle", "running", "completed", "held", "removed")
JOB_STATE_BY_EVENT = {
    "job.running": "running", "job.completed": "completed", "job.held": "held",
    "job.released": "idle", "job.removed": "removed", "job.requeued": "idle",
}
VM_STATE_BY_PILOT_STATE = {"pending": "pending", "idle": "running", "busy": "running",
                           "retiring": "running", "exited": "terminated", "lost": "lost"}
# An entry declares its price through its slot ad (`attributes` in its [[entry]] table):
# the factory puts that ad in entry.advertised, so no schema change is needed to show it.
PRICE_ATTRIBUTE = "CloudPricePerHour"


def vm_state(pilot_state: str) -> str:
    return VM_STATE_BY_PILOT_STATE.get(pilot_state, pilot_state)


@dataclass
class PilotView:
    entry: str
    provider: str
    state: str
    claims: int = 0
    free_cpus: int = 0
    launched_at: float = 0.0  # 0: launched before the folded window
    registered_at: float = 0.0
    ended_at: float = 0.0

    def tally(self) -> Counter:
        share = Counter({("pilots", self.entry, self.state): 1,
                         ("vms", self.provider or "unknown", vm_state(self.state)): 1})
        if self.state in SLOT_STATES:
            share["claimed"] += self.claims
            share["unclaimed"] += int(self.free_cpus > 0 and self.state != "retiring")
        return share


@dataclass
class JobView:
    state: str
    owner: str = ""
    entry: str = ""
    pilot: str = ""
    exit_code: int | None = None

    def tally(self) -> Counter:
        share = Counter({("jobs", self.state): 1})
        if self.state == "running":
            share[("running_at", self.entry)] += 1
        return share


@dataclass(frozen=True)
class Launch:
    """How long a pilot took from launch to registration."""

    pilot_id: str
    entry: str
    launched_at: float
    seconds: float


@dataclass
class PoolView:
    entries: dict[str, Any] = field(default_factory=dict)  # name -> EntryAdvertised
    pilots: dict[str, PilotView] = field(default_factory=dict)
    jobs: dict[str, JobView] = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)
    prices: dict[str, float | None] = field(default_factory=dict)  # entry -> per hour
    _tally: Counter = field(default_factory=Counter)
    _priced_ads: dict[str, str] = field(default_factory=dict)  # entry -> the ad parsed

    def apply(self, event: Any, at: float = 0.0) -> None:
        """Fold one event in; `at` is when it happened (default: its own `time` field)."""
        at = at or getattr(event, "time", 0.0)
        name = event.NAME
        if name == "entry.advertised":
            self._apply_entry(event)
        elif name.startswith("pilot.") or name == "slot.advertised":
            before = self._share(self.pilots, event.pilot_id)
            self._apply_pilot(name, event, at)
            self._settle(before, self.pilots.get(event.pilot_id))
        elif name == "job.submitted":
            for job_id in event.jobs:  # an id seen before belongs to a queue started anew
                before = self._share(self.jobs, job_id)
                self.jobs[job_id] = JobView("idle", owner=event.owner)
                self._settle(before, self.jobs[job_id])
        elif name.startswith("job.") and getattr(event, "job_id", None) in self.jobs:
            before = self._share(self.jobs, event.job_id)
            self._apply_job(name, event, self.jobs[event.job_id])
            self._settle(before, self.jobs[event.job_id])

    @staticmethod
    def _share(table: dict, key: str) -> Counter:
        item = table.get(key)
        return item.tally() if item is not None else Counter()

    def _settle(self, before: Counter, after: PilotView | JobView | None) -> None:
        self._tally.subtract(before)
        if after is not None:
            self._tally.update(after.tally())

    def _apply_entry(self, event: Any) -> None:
        self.entries[event.entry] = event
        if self._priced_ads.get(event.entry) != event.ad:  # parse each distinct ad once
            self._priced_ads[event.entry] = event.ad
            self.prices[event.entry] = _price(event.ad)

    def _apply_pilot(self, name: str, event: Any, at: float) -> None:
        pilot = self.pilots.get(event.pilot_id)
        if name == "pilot.launched":
            self.pilots[event.pilot_id] = PilotView(event.entry, event.provider, "pending",
                                                    launched_at=at)
            return
        if pilot is None:
            if name not in ("pilot.registered", "slot.advertised"):
                return
            pilot = self.pilots[event.pilot_id] = PilotView(
                event.entry, getattr(event, "provider", ""), "idle")
        if name == "pilot.registered":
            if pilot.state == "pending":
                pilot.state = "idle"
                if pilot.launched_at and at:
                    self.launches.append(Launch(event.pilot_id, pilot.entry, pilot.launched_at,
                                                max(0.0, at - pilot.launched_at)))
            pilot.registered_at = pilot.registered_at or at
        elif name == "slot.advertised":
            if pilot.state not in ("exited", "lost"):
                pilot.state = event.state
            pilot.claims, pilot.free_cpus = len(event.claims), event.free_cpus
        elif name == "pilot.retiring":
            pilot.state = "retiring"
        elif name in ("pilot.exited", "pilot.lost"):
            pilot.state, pilot.claims = name.split(".")[1], 0
            pilot.ended_at = at

    @staticmethod
    def _apply_job(name: str, event: Any, job: JobView) -> None:
        if name in ("job.matched", "job.running"):
            job.entry, job.pilot = event.entry or job.entry, event.pilot_id
        if name == "job.completed":
            job.exit_code = event.exit_code
            job.entry = event.entry or job.entry
        if name in JOB_STATE_BY_EVENT:
            job.state = JOB_STATE_BY_EVENT[name]

    # --- counts (from the tallies) ------------------------------------------------------------

    def _counts(self, kind: str, first: str | None = None) -> dict[str, int]:
        """{last key part: count} of one kind of tally, optionally under one first part."""
        out: dict[str, int] = {}
        for key, n in self._tally.items():
            if n > 0 and isinstance(key, tuple) and key[0] == kind and \
                    (first is None or key[1] == first):
                out[key[-1]] = out.get(key[-1], 0) + n
        return out

    def pilot_counts(self, entry: str) -> dict[str, int]:
        return self._counts("pilots", entry)

    def slots(self) -> dict[str, int]:
        return {"claimed": max(0, self._tally["claimed"]),
                "unclaimed": max(0, self._tally["unclaimed"])}

    def job_counts(self) -> dict[str, int]:
        return {**dict.fromkeys(JOB_STATES, 0), **self._counts("jobs")}

    def running_jobs_by_entry(self) -> dict[str, int]:
        return self._counts("running_at")

    def vms(self) -> dict[str, dict[str, int]]:
        providers = {key[1] for key, n in self._tally.items()
                     if n > 0 and isinstance(key, tuple) and key[0] == "vms"}
        return {provider: self._counts("vms", provider) for provider in sorted(providers)}

    def vm_totals(self) -> dict[str, int]:
        """VMs (pilots) by state over every provider: pending, running, terminated, lost."""
        return self._counts("vms")

    # --- the shapes `burst status --json` prints ----------------------------------------------

    def entry_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, e in sorted(self.entries.items()):
            rows.append({"name": name, "site": e.site, "driver": e.driver,
                         "provider": e.provider, "endpoint": e.endpoint,
                         "trust_domain": e.trust_domain, "pilots": self.pilot_counts(name)})
        return rows

    def status(self) -> dict[str, Any]:
        """What `burst status --json` prints, less the services (not an event matter)."""
        return {"entries": self.entry_rows(), "jobs": self.job_counts(), "slots": self.slots(),
                "vms": self.vms()}

    # --- money --------------------------------------------------------------------------------

    def cost(self, now: float) -> dict[str, float | None]:
        """Per entry: what its pilots cost so far (hours up × price), None where no price is
        known. A pilot launched before the folded window counts from its registration."""
        totals: dict[str, float | None] = {}
        for name in self.entries:
            totals[name] = 0.0 if self.prices.get(name) is not None else None
        for pilot in self.pilots.values():
            price = self.prices.get(pilot.entry)
            start = pilot.launched_at or pilot.registered_at
            if price is None or not start:
                continue
            hours = max(0.0, (pilot.ended_at or now) - start) / 3600.0
            totals[pilot.entry] = (totals.get(pilot.entry) or 0.0) + hours * price
        return totals


def _price(ad_text: str) -> float | None:
    try:
        value = classad2.ClassAd(ad_text).get(PRICE_ATTRIBUTE)
    except classad2.ClassAdException:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
