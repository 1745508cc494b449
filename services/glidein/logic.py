"""The pilot's pure decisions: which claims it takes and when it leaves.

    claim.activate ──why_refuse_claim()──▶ None: run it | "why not": a rejected report

    totals (context) ─▶ PartitionableSlot ──claim(id, cpus, MiB, MB, {GPUs: n})──▶ free shrinks
                                          ◀─release(id)──────────────────────── free grows

    uptime >= max_lifetime_s ─────────────────────▶ "lifetime reached"  (drain: jobs finish)
    no claim for idle_timeout_s (since start or
    since the last job ended) ────────────────────▶ "idle for N s"
    pilot.retire(only_if_idle) while busy ────────▶ refused: a busy pilot is never retired

Each claim carves a job's request out of the partitionable slot, as in
HTCondor, custom resources (GPUs, Boats, ...) included; the slot ad advertises
what is left (services/condor/slot.py).
Retiring never kills a running job; only SIGTERM (factory, `burst down`) does.
No clock, no I/O: callers pass the times.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.slot import ClaimActivate
from services.condor.pilot import PilotContext
from services.condor.slot import Resources


class SlotError(ValueError):
    """A claim that cannot be carved out of the slot; the message says why."""


class PartitionableSlot:
    def __init__(self, totals: Resources):
        self.totals = totals
        self.claims: dict[str, Resources] = {}

    @classmethod
    def for_context(cls, ctx: PilotContext) -> PartitionableSlot:
        return cls(Resources(ctx.cpus, ctx.memory_mb, ctx.disk_mb, dict(ctx.resources)))

    @property
    def free(self) -> Resources:
        free = self.totals
        for used in self.claims.values():
            free = free - used
        return free

    @property
    def busy(self) -> bool:
        return bool(self.claims)

    def request(self, cpus: int, memory_mb: int, disk_mb: int,
                custom: Mapping[str, int] | None = None) -> Resources:
        """A claim's request, custom resources under the slot's own names (ClassAd names
        are case-insensitive: a job's request_boats is the slot's Boats). One the slot does
        not have is not its to hand out, as an HTCondor startd ignores a request for a
        resource it does not define (a job's Requirements keep it off slots without)."""
        named = {}
        for name, amount in (custom or {}).items():
            known = next((n for n in self.totals.custom if n.lower() == name.lower()), None)
            if known is not None:
                named[known] = named.get(known, 0) + amount
        return Resources(cpus, memory_mb, disk_mb, named)

    def why_not(self, cpus: int, memory_mb: int, disk_mb: int,
                custom: Mapping[str, int] | None = None) -> str | None:
        """None if the request fits; else the reason, for a rejected claim."""
        wanted = self.request(cpus, memory_mb, disk_mb, custom)
        if min(cpus, memory_mb, disk_mb, *wanted.custom.values()) < 0 or cpus < 1:
            return f"bad request: {wanted}"
        if not wanted.fits_in(self.free):
            return f"request of {wanted} does not fit in the free {self.free}"
        return None

    def claim(self, claim_id: str, cpus: int, memory_mb: int, disk_mb: int,
              custom: Mapping[str, int] | None = None) -> Resources:
        if claim_id in self.claims:
            raise SlotError(f"claim {claim_id} is already active")
        reason = self.why_not(cpus, memory_mb, disk_mb, custom)
        if reason:
            raise SlotError(reason)
        self.claims[claim_id] = self.request(cpus, memory_mb, disk_mb, custom)
        return self.claims[claim_id]

    def release(self, claim_id: str) -> Resources | None:
        return self.claims.pop(claim_id, None)


def why_refuse_claim(msg: ClaimActivate, *, pilot_id: str, slot: PartitionableSlot,
                     retire_reason: str, shutting_down: bool) -> str | None:
    """None if the pilot takes the claim; else why not, for the schedd's requeue."""
    if msg.pilot_id != pilot_id:
        return f"claim is for pilot {msg.pilot_id}, this is {pilot_id}"
    if shutting_down:
        return "pilot is shutting down"
    if retire_reason:
        return f"pilot is retiring ({retire_reason})"
    return slot.why_not(msg.cpus, msg.memory_mb, msg.disk_mb, msg.resources)


def why_retire(*, now: float, started_at: float, idle_since: float, busy: bool,
               idle_timeout_s: float, max_lifetime_s: float) -> str | None:
    """The reason to start retiring now, or None to carry on."""
    if now - started_at >= max_lifetime_s:
        return "lifetime reached"
    if not busy and now - idle_since >= idle_timeout_s:
        return f"idle for {now - idle_since:.0f} s"
    return None


def may_retire_on_request(*, only_if_idle: bool, busy: bool) -> bool:
    return not (only_if_idle and busy)
