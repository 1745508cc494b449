"""The frontend: watches demand and entries, asks factories for pilots.

    schedds ─demand.autoclusters─▶ ┌──────────┐ ─glidein.request (to=<entry>)─▶ factory
    factories ─entry.advertised──▶ │ frontend │ ─match.analysis──────────────▶ schedds
                                   └──────────┘
    every cycle, and soon after demand changes: plan_group() per group

The request math is pure (logic.py). This module only keeps the latest view
of each schedd's demand and each entry, and publishes what the plan says.
Requests are sent every cycle even when unchanged: factories forget requests
that are not renewed, so a frontend that stops stops provisioning.

Credentials: each cycle, a group's references (env:NAME, file:PATH) for the
trust domains of entries that need a secret are read, and the secret is
sealed to the public key of every factory advertising the entry
(services/runtime/sealing.py): the request carries only those boxes. A
reference that does not read keeps the group's pilots off those entries, and
says why in the match analysis.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import AbstractContextManager, nullcontext

from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.provisioning import EntryAdvertised
from services.runtime import credentials, sealing, tracing
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import PoolConfig
from services.runtime.security import AuthError

from . import logic

log = logging.getLogger("burst.frontend")

ENTRY_STALE_S = 180.0
DEMAND_STALE_S = 120.0
REACT_DELAY_S = 0.5  # batch bursts of demand changes into one cycle
MAX_LINKS = 16  # a decision's span links to at most this many other autoclusters' traces


class Frontend:
    def __init__(self, name: str, pool: PoolConfig, bus: Bus):
        self.name = name
        self.pool = pool
        self.bus = bus
        self.policies = [logic.GroupPolicy.from_config(g) for g in pool.groups]
        self.references = {g.name: dict(g.credentials) for g in pool.groups}
        self.unreadable: dict[tuple[str, str], str] = {}  # (group, domain) -> why, last said
        # entry -> factory -> (its public key, when last advertised)
        self.factory_keys: dict[str, dict[str, tuple[str, float]]] = {}
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
        if msg.sealing_key:  # every factory advertises every entry: remember each one's key
            self.factory_keys.setdefault(msg.entry, {})[msg.factory] = (msg.sealing_key,
                                                                        time.time())
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
        secrets, unusable = self._read_credentials(policy, infos)
        plan = logic.plan_group(policy, demand, infos, pilots, self.previous.get(policy.name),
                                self.matcher, unusable)
        self.previous[policy.name] = plan.requests
        self.seq += 1
        domains = {info.name: info.trust_domain for info in infos if info.needs_secret}
        for entry, request in sorted(plan.requests.items()):
            message = logic.glidein_request(self.name, policy, request, seq=self.seq, now=now)
            secret = secrets.get(domains.get(entry, ""))
            if secret:
                message = dataclasses.replace(message, credentials=self._boxes(
                    client, entry, domains[entry], secret, now))
            with self._decision(policy, request, demand, plan):
                self.bus.send(message, to=entry)
            if request.new_pilots or request.remove_excess != "NO":
                log.info("event=request entry=%s group=%s idle_target=%d max=%d remove=%s "
                         "reason=%r", entry, policy.name, request.idle_target,
                         request.max_glideins, request.remove_excess, request.reason)
        self._publish_analysis(policy, demand, plan)

    @staticmethod
    def _decision(policy: logic.GroupPolicy, request: logic.EntryRequest,
                  demand: dict[str, list[AutoCluster]], plan: logic.GroupPlan
                  ) -> AbstractContextManager:
        """A request that asks for new pilots is a decision worth a span, in the trace of the
        first job it asks them for (linked to the other autoclusters' traces); a renewal that
        asks for nothing new is sent in no trace."""
        if request.new_pilots <= 0:
            return nullcontext()
        traces = [ac.traceparent for schedd, autoclusters in sorted(demand.items())
                  for ac in autoclusters if ac.traceparent and request.entry in
                  plan.matched.get(schedd, {}).get(ac.id, ())]
        return tracing.span("decide: request pilots", parent=traces[0] if traces else None,
                            links=traces[1:MAX_LINKS], attributes={
                                "burst.entry": request.entry, "burst.group": policy.name,
                                "burst.new_pilots": request.new_pilots,
                                "burst.idle_target": request.idle_target,
                                "burst.reason": request.reason})

    def _read_credentials(self, policy: logic.GroupPolicy, infos: list[logic.EntryInfo]
                          ) -> tuple[dict[str, bytes], dict[str, str]]:
        """The group's secrets for the trust domains whose entries need one, read now (a
        rotated file is picked up next cycle), and why the others cannot be read."""
        references = self.references.get(policy.name, {})
        secrets: dict[str, bytes] = {}
        unusable: dict[str, str] = {}
        for domain in sorted({i.trust_domain for i in infos if i.needs_secret}):
            reference = references.get(domain, credentials.NONE)
            if reference == credentials.NONE:
                continue
            try:
                secrets[domain] = credentials.resolve(reference, self.pool.path.parent)
            except credentials.CredentialUnavailable as exc:
                unusable[domain] = str(exc)
        for domain, reason in unusable.items():  # said once, not every cycle
            if self.unreadable.get((policy.name, domain)) != reason:
                log.warning("event=credential_unreadable group=%s trust_domain=%s reason=%r",
                            policy.name, domain, reason)
        self.unreadable = {k: v for k, v in self.unreadable.items() if k[0] != policy.name}
        self.unreadable.update({(policy.name, d): r for d, r in unusable.items()})
        return secrets, unusable

    def _boxes(self, client: str, entry: str, domain: str, secret: bytes, now: float
               ) -> dict[str, bytes]:
        """The secret sealed to each factory that advertised the entry lately: whichever
        of them consumes the request can open its own box, and no one else any."""
        boxes = {}
        for factory, (key, seen) in self.factory_keys.get(entry, {}).items():
            if now - seen > ENTRY_STALE_S:
                continue
            try:
                boxes[credentials.box_name(domain, factory)] = sealing.seal(
                    key, secret, credentials.box_aad(client, entry, domain, factory))
            except AuthError as exc:
                log.warning("event=bad_factory_key entry=%s factory=%s reason=%r", entry,
                            factory, str(exc))
        return boxes

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
