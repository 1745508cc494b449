"""The negotiator: matches autoclusters of idle jobs to partitionable slots.

    schedds ─demand.autoclusters─▶ ┌────────────┐ ─match.offer (to=<schedd>)─▶ schedd
    glideins ─slot.advertised────▶ │ negotiator │ ─match.analysis────────────▶ schedds
    pilot.retiring/exited/lost───▶ └────────────┘ ─negotiation.completed─────▶ events

It negotiates shortly after demand or slots change, and on a timer. The pass
itself is pure (logic.py). Between a match and the pilot's next slot ad, the
resources a claim took are still shown free by the old ad; they are held back
here ("in flight") until the pilot advertises the claim or the hold expires
(the schedd may have had no job left to use it). Until the schedd's next
demand shows the claimed job as running, the claim also counts against its
group's quota and its concurrency limits, so no two passes overrun them.

A slot ad that does not parse, or tells of resources no machine has (negative,
fewer than one cpu, more than 64 TiB of memory, more free than in total), is
dead-lettered with the reason, never matched.

Usage for fair share is read from the demand itself (running jobs × their
cpus, per principal), so the priorities rebuild from the bus after a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import classad2

from schemas.demand import AutoCluster, DemandSnapshot
from schemas.pilot import PilotExited, PilotLost, PilotRetiring
from schemas.slot import Claim, NegotiationCompleted, SlotAdvertised
from services.condor.claims import claim_digest
from services.runtime import tracing
from services.runtime.ackpolicy import PermanentError
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import PoolConfig

from . import custom, logic
from .accounting import Accountant
from .groups import FairSharePolicy

log = logging.getLogger("burst.negotiator")

REACT_DELAY_S = 0.2
IN_FLIGHT_S = 30.0


@dataclass
class InFlight:
    claim: Claim
    at: float
    autocluster: tuple[str, str]  # (schedd, autocluster id)
    advertised: bool = False  # the pilot shows it: only the schedd's demand may not yet


class Negotiator:
    def __init__(self, pool: PoolConfig, bus: Bus):
        self.pool = pool
        self.bus = bus
        self.demand: dict[str, DemandSnapshot] = {}
        self.slots: dict[str, tuple[SlotAdvertised, float]] = {}
        self.in_flight: dict[str, list[InFlight]] = {}  # pilot id -> claims the demand lacks
        self._checked_ads: dict[str, tuple] = {}  # pilot id -> its last ad found believable
        self.table = logic.AdTable(logic.NegotiationConfig(
            policy=FairSharePolicy.from_pool(pool)))
        self.accountant = Accountant(half_life_s=pool.services.negotiator_half_life_s)
        self.run_id = uuid.uuid4().hex[:6]
        self.cycle = 0
        self.last_reasons: dict[str, dict[str, str]] = {}
        self._pending = False
        self.slot_traces: dict[str, str] = {}  # pilot id -> the trace its pilot came up in

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("negotiator", events={
            "demand.autoclusters": self.on_demand,
            "slot.advertised": self.on_slot,
            "pilot.retiring": self.on_retiring,
            "pilot.exited": self.on_gone,
            "pilot.lost": self.on_gone,
        }, prefetch=1000, single_active_consumer=True)]

    def started(self) -> None:
        self.bus.call_every(self.pool.services.negotiator_interval_s, self.negotiate,
                            first_delay_s=1.0)

    def stopping(self) -> None:
        pass

    # --- observed state -----------------------------------------------------------------------

    def on_demand(self, msg: DemandSnapshot, ctx: Context) -> None:
        old = self.demand.get(msg.schedd)
        if old is not None and old.time > msg.time:
            return
        self.demand[msg.schedd] = msg
        # This demand shows as running what its pilots already advertise (the schedd
        # claimed the jobs before it sent them there).
        for pilot_id, flights in self.in_flight.items():
            self.in_flight[pilot_id] = [f for f in flights if not f.advertised
                                        or f.autocluster[0] != msg.schedd]
        if any(ac.idle for ac in msg.autoclusters) or old is None:
            self._soon()

    def on_slot(self, msg: SlotAdvertised, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id):
            return
        checked = (msg.ad, msg.free_cpus, msg.free_memory_mb, msg.free_disk_mb,
                   sorted(msg.free_resources.items()))
        if self._checked_ads.get(msg.pilot_id) != checked:  # heartbeats repeat the last one
            try:
                parsed = classad2.ClassAd(msg.ad)
            except classad2.ClassAdException as exc:
                raise PermanentError(f"slot ad of pilot {msg.pilot_id} does not parse: {exc}"
                                     ) from None
            if problem := logic.slot_problem(msg, parsed):
                raise PermanentError(f"slot ad of pilot {msg.pilot_id}: {problem}")
            if len(self._checked_ads) > 200_000:
                self._checked_ads.clear()
            self._checked_ads[msg.pilot_id] = checked
        old = self.slots.get(msg.pilot_id)
        if old is not None and old[0].seq > msg.seq:
            return
        self.slots[msg.pilot_id] = (msg, time.time())
        if ctx.envelope.headers.get("traceparent"):  # heartbeats come in no trace
            self.slot_traces[msg.pilot_id] = tracing.current_traceparent() or ""
        advertised = set(msg.claims)  # digests: claim ids never travel in events
        for flight in self.in_flight.get(msg.pilot_id, []):
            flight.advertised = flight.advertised or \
                claim_digest(flight.claim.claim_id) in advertised
        if old is None or (old[0].free_cpus, old[0].state, old[0].free_resources) != (
                msg.free_cpus, msg.state, msg.free_resources):
            self._soon()

    def on_retiring(self, msg: PilotRetiring, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id):
            return
        entry = self.slots.get(msg.pilot_id)
        if entry is not None:
            self.slots[msg.pilot_id] = (dataclasses.replace(entry[0], state="retiring"), entry[1])

    def on_gone(self, msg: PilotExited | PilotLost, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id, or_service=True):
            return
        self.slots.pop(msg.pilot_id, None)
        self.in_flight.pop(msg.pilot_id, None)
        self.slot_traces.pop(msg.pilot_id, None)

    def _soon(self) -> None:
        if not self._pending:
            self._pending = True
            self.bus.call_later(REACT_DELAY_S, self.negotiate)

    # --- a pass -------------------------------------------------------------------------------

    def live_slots(self, now: float) -> list[SlotAdvertised]:
        """Fresh slot ads, with the resources of in-flight claims taken out."""
        live = []
        for pilot_id, (msg, seen) in list(self.slots.items()):
            if now - seen > msg.lease_s:
                del self.slots[pilot_id]  # a pilot that stopped advertising is gone
                continue
            flights = [f for f in self.in_flight.get(pilot_id, []) if now - f.at < IN_FLIGHT_S]
            self.in_flight[pilot_id] = flights
            held = [f.claim for f in flights if not f.advertised]
            # The same message while nothing is held: the pass sees the slot unchanged.
            live.append(dataclasses.replace(
                msg,
                free_cpus=msg.free_cpus - sum(c.cpus for c in held),
                free_memory_mb=msg.free_memory_mb - sum(c.memory_mb for c in held),
                free_disk_mb=msg.free_disk_mb - sum(c.disk_mb for c in held),
                free_resources=held_back(msg.free_resources, held)) if held else msg)
        return live

    def claimed(self) -> Counter:
        """Claims per autocluster the schedds' demand may not show as running yet."""
        return Counter(f.autocluster for flights in self.in_flight.values() for f in flights)

    def negotiate(self) -> None:
        self._pending = False
        now = time.time()
        demand = {schedd: snap.autoclusters for schedd, snap in self.demand.items()}
        if not any(ac.idle for acs in demand.values() for ac in acs):
            return
        self.accountant.update(now, running_cpus_by_principal(demand, self.table))
        slots = self.live_slots(now)
        self.cycle += 1
        started = time.perf_counter()
        result = logic.negotiate(demand, slots, self.accountant.priorities(now), table=self.table,
                                 claim_prefix=f"{self.run_id}-{self.cycle}",
                                 claimed=self.claimed())
        duration_ms = (time.perf_counter() - started) * 1000
        for offer in result.offers(self.cycle):
            key = (offer.schedd, offer.autocluster)
            for claim in offer.claims:
                self.in_flight.setdefault(claim.pilot_id, []).append(InFlight(claim, now, key))
            with self._match_span(offer):
                self.bus.send(offer, to=offer.schedd)
        for analysis in result.analyses():
            if self.last_reasons.get(analysis.schedd) != analysis.reasons:
                self.last_reasons[analysis.schedd] = analysis.reasons
                self.bus.emit(analysis)
        if result.match_count:
            log.info("event=negotiated cycle=%d matches=%d slots=%d ms=%.1f", self.cycle,
                     result.match_count, len(slots), duration_ms)
            self.bus.emit(NegotiationCompleted(
                cycle=self.cycle, duration_ms=duration_ms,
                autoclusters=sum(len(acs) for acs in demand.values()), slots=len(slots),
                matches=result.match_count, priorities=dict(result.priorities)))

    def _match_span(self, offer):
        """The match, in the trace of the autocluster's oldest idle job, linked to the traces
        its slots' pilots came up in."""
        snapshot = self.demand.get(offer.schedd)
        parent = next((ac.traceparent for ac in (snapshot.autoclusters if snapshot else ())
                       if ac.id == offer.autocluster), "")
        pilots = sorted({claim.pilot_id for claim in offer.claims})
        return tracing.span("match", parent=parent or None,
                            links=[self.slot_traces.get(p) for p in pilots[:16]],
                            attributes={"burst.autocluster": offer.autocluster,
                                        "burst.claims": len(offer.claims),
                                        "burst.pilots": pilots[:16], "burst.cycle": self.cycle})


def held_back(free: dict[str, int], held: list[Claim]) -> dict[str, int]:
    """Free custom resources less what claims in flight took (any spelling of a name)."""
    left = dict(free)
    for claim in held:
        for name, amount in claim.resources.items():
            known = custom.spelling(left, name)
            if known is not None:
                left[known] -= amount
    return left


def running_cpus_by_principal(demand: dict[str, list[AutoCluster]],
                              table: logic.AdTable) -> dict[str, float]:
    """Cpus each fair-share principal's running jobs hold (AccountingGroup "group.user",
    else the owner): running jobs × their request, ads parsed once."""
    usage: dict[str, float] = {}
    for autoclusters in demand.values():
        for ac in autoclusters:
            if ac.running:
                job = table.job(ac.ad, ac.owner, ac.desired_sites)
                principal = job.charge.principal
                usage[principal] = usage.get(principal, 0.0) + ac.running * job.request.cpus
    return usage

