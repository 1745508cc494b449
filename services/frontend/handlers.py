"""The frontend: watches demand and entries, asks factories for pilots.

    schedds ─demand.autoclusters─▶ ┌──────────┐ ─glidein.request (to=<entry>)─▶ factory
    factories ─entry.advertised──▶ │ frontend │ ─match.analysis──────────────▶ schedds
                                   └──────────┘
    every cycle, and soon after demand changes: plan_group() per group

The request math is pure (logic.py). This module only keeps the latest view
of each schedd's demand and each entry, and publishes what the plan says.
Requests are sent every cycle even when unchanged: factories forget requests
that are not renewed, so a frontend that stops stops provisioning.
"""

from __future__ import annotations

import logging
import time

from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.provisioning import EntryAdvertised
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import PoolConfig

from . import logic

log = logging.getLogger("burst.frontend")

ENTRY_STALE_S = 180.0
DEMAND_STALE_S = 120.0
REACT_DELAY_S = 0.5  # batch bursts of demand changes into one cycle


class Frontend:
    def __init__(self, name: str, pool: PoolConfig, bus: Bus):
        self.name = name
        self.pool = pool
        self.bus = bus
        self.policies = [logic.GroupPolicy.from_config(g) for g in pool.groups]
        self.demand: dict[str, tuple[DemandSnapshot, float]] = {}
        self.entries: dict[str, tuple[EntryAdvertised, float]] = {}
        self.previous: dict[str, dict[str, logic.EntryRequest]] = {}
        self.last_analysis: dict[tuple[str, str], dict[str, str]] = {}
        self.matcher = logic.Matcher()
        self.seq = 0
        self._cycle_pending = False

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(f"frontend.{self.name}", events={
            "demand.autoclusters": self.on_demand,
            "entry.advertised": self.on_entry,
        }, expires_s=3600.0)]

    def started(self) -> None:
        self.bus.call_every(self.pool.services.frontend_interval_s, self.cycle,
                            first_delay_s=1.0)

    def stopping(self) -> None:
        pass

    def on_demand(self, msg: DemandSnapshot, ctx: Context) -> None:
        previous = self.demand.get(msg.schedd)
        if previous is not None and previous[0].seq > msg.seq and previous[0].time > msg.time:
            return  # an older snapshot arriving late
        changed = previous is None or _idle(previous[0]) != _idle(msg)
        self.demand[msg.schedd] = (msg, time.time())
        if changed:
            self._cycle_soon()

    def on_entry(self, msg: EntryAdvertised, ctx: Context) -> None:
        known = msg.entry in self.entries
        self.entries[msg.entry] = (msg, time.time())
        if not known:
            self._cycle_soon()

    def _cycle_soon(self) -> None:
        if not self._cycle_pending:
            self._cycle_pending = True
            self.bus.call_later(REACT_DELAY_S, self.cycle)

    def cycle(self) -> None:
        self._cycle_pending = False
        now = time.time()
        entries = [msg for msg, seen in self.entries.values() if now - seen < ENTRY_STALE_S]
        demand = {schedd: list(msg.autoclusters) for schedd, (msg, seen) in self.demand.items()
                  if now - seen < DEMAND_STALE_S}
        if not entries:
            return
        infos = [logic.EntryInfo.from_advertised(e) for e in entries]
        for policy in self.policies:
            self._plan(policy, demand, entries, infos, now)

    def _plan(self, policy: logic.GroupPolicy, demand: dict[str, list[AutoCluster]],
              entries: list[EntryAdvertised], infos: list[logic.EntryInfo], now: float) -> None:
        client = f"{self.name}.{policy.name}"
        # A factory that predates per-client counts only sends totals: use them then.
        pilots = {e.entry: logic.PilotCounts.from_states(e.clients.get(client, {})
                                                         if e.clients else e.pilots)
                  for e in entries}
        plan = logic.plan_group(policy, demand, infos, pilots, self.previous.get(policy.name),
                                self.matcher)
        self.previous[policy.name] = plan.requests
        self.seq += 1
        for entry, request in sorted(plan.requests.items()):
            message = logic.glidein_request(self.name, policy, request, seq=self.seq, now=now)
            self.bus.send(message, to=entry)
            if request.new_pilots or request.remove_excess != "NO":
                log.info("event=request entry=%s group=%s idle_target=%d max=%d remove=%s "
                         "reason=%r", entry, policy.name, request.idle_target,
                         request.max_glideins, request.remove_excess, request.reason)
        self._publish_analysis(policy, demand, plan)

    def _publish_analysis(self, policy: logic.GroupPolicy, demand: dict[str, list[AutoCluster]],
                          plan: logic.GroupPlan) -> None:
        source = f"frontend:{policy.name}"
        for schedd in demand:
            reasons = dict(plan.unmatched.get(schedd, {}))
            if self.last_analysis.get((source, schedd)) != reasons:
                self.last_analysis[(source, schedd)] = reasons
                self.bus.emit(MatchAnalysis(source=source, schedd=schedd, reasons=reasons))


def _idle(snapshot: DemandSnapshot) -> dict[str, int]:
    return {ac.id: ac.idle for ac in snapshot.autoclusters}
