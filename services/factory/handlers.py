"""The factory: turns glidein requests into pilots at its entries.

    frontend ─glidein.request (to=<entry>)─▶ [factory.entry.<entry>]  single active consumer
    glideins, factories ─pilot.*, slot.advertised─▶ [factory.<name>]  every factory
                         ┌─────────┐
    every cycle:         │ factory │ ─▶ driver.launch / terminate
      decide_entry() ──▶ │         │ ─▶ pilot.launched, pilot.lost, pilot.exited   (events)
                         └─────────┘ ─▶ pilot.retire (to=<pilot>), entry.advertised (events)

Several factory processes can serve the same entries: each entry's request
queue has a single active consumer, so exactly one factory acts for an entry
at a time and takes over when that one stops. A factory acts only for
entries it has had requests for recently. Pilot state comes from events and
from the driver, so a restarted factory rebuilds it and launches nothing twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace

from schemas.pilot import (
    PilotExited,
    PilotLaunched,
    PilotLost,
    PilotRegistered,
    PilotRetire,
    PilotRetiring,
)
from schemas.provisioning import EntryAdvertised, GlideinRequest
from schemas.slot import SlotAdvertised
from services.condor.pilot import pilot_environment
from services.runtime import bootstrap, credentials, sealing, security, tracing
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import EntryConfig, PoolConfig, Settings

from . import logic
from .drivers import Driver, Instance, LaunchSpec, make_driver
from .gauges import FactoryGauges
from .prototype import prototype_ad

log = logging.getLogger("burst.factory")

REQUEST_LIFETIME_S = 180.0  # a request not renewed for this long no longer drives anything
EXIT_GRACE_S = 60.0  # a VM still running this long after its pilot ended is terminated


@dataclass(frozen=True)
class PilotRecord:
    pilot_id: str
    entry: str
    client: str
    state: str  # pending | idle | busy | retiring | held
    launched_at: float
    state_since: float


class Factory:
    def __init__(self, name: str, settings: Settings, pool: PoolConfig, bus: Bus,
                 drivers: dict[str, Driver] | None = None):
        self.name = name
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.entries = {e.name: e for e in pool.entries}
        self.drivers = drivers or {e.name: make_driver(e.driver, settings, e, emit=bus.emit)
                                   for e in pool.entries}
        self.policies = {e.name: logic.EntryPolicy.from_config(e) for e in pool.entries}
        # entry -> client -> (latest request, when it arrived)
        self.requests: dict[str, dict[str, tuple[GlideinRequest, float]]] = {
            e: {} for e in self.entries}
        self.pilots: dict[str, PilotRecord] = {}
        self.last_launch: dict[str, float] = {}
        self.ended: dict[str, tuple[str, float]] = {}  # pilot id -> (entry, when it ended)
        self.exit_grace_s = EXIT_GRACE_S
        # Groups seal their credentials to this key (advertised in entry ads); the private
        # half never leaves <state>/keys/. Opened credentials live in memory only.
        self.box_key = sealing.load_key_pair(settings.path("keys", f"factory-{name}.x25519"))
        self.secrets: dict[tuple[str, str], bytes] = {}  # (entry, client) -> credential
        # (entry, client) -> the traceparent of the last request that came in a trace (one
        # the frontend sent when it asked for pilots): the launches it causes are children.
        self.request_traces: dict[tuple[str, str], str] = {}
        self.listed: dict[str, list[Instance]] = {}  # entry -> its VMs, as last listed

    # --- wiring -------------------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        subs = [Subscription(f"factory.entry.{entry}",
                             commands={"glidein.request": self.on_request},
                             target=entry, single_active_consumer=True)
                for entry in self.entries]
        subs.append(Subscription(f"factory.{self.name}", events=self._pilot_handlers(),
                                 expires_s=3600.0, prefetch=1000))
        return subs

    def started(self) -> None:
        self.adopt_running_pilots()
        interval = self.pool.services.factory_interval_s
        self.bus.call_every(interval, self.reconcile, first_delay_s=interval)
        self.bus.call_every(max(interval, 5.0), self.advertise_entries)

    def stopping(self) -> None:
        pass

    def collector(self) -> FactoryGauges:
        return FactoryGauges(self)

    # --- observed state -----------------------------------------------------------------------

    def adopt_running_pilots(self, entries: list[str] | None = None) -> None:
        """After a restart: pilots the drivers still run are ours again (and, later, those
        of an account a driver sees for the first time when a group's credential arrives).

        Their state comes from replaying the event log since the oldest was
        launched; assuming "pending" instead would let a shrinking request
        cancel a pilot that is running jobs.
        """
        adopted = {}
        for entry, driver in self.drivers.items():
            if (entries is not None and entry not in entries) or getattr(driver, "blind", False):
                continue
            try:
                listed = driver.instances(entry)
            except Exception:  # a cloud that does not answer now is asked again each cycle
                log.exception("event=adopt_failed entry=%s", entry)
                continue
            for inst in listed:
                if inst.state == "running" and inst.pilot_id not in self.pilots \
                        and inst.pilot_id not in self.ended:
                    adopted[inst.pilot_id] = PilotRecord(
                        inst.pilot_id, entry, inst.group, "pending", inst.launched_at, time.time())
        if not adopted:
            return
        self.pilots.update(adopted)
        since = min(record.launched_at for record in adopted.values()) - 1.0
        replayed = 0
        for env in self.bus.history(since=since, idle_timeout=0.5):
            handler = self._pilot_handlers().get(env.type)
            found = self.bus.replayed(env) if handler is not None else None
            if found is not None and found[0].pilot_id in adopted:
                handler(*found)
                replayed += 1
        states = {}
        for pilot_id in adopted:
            if pilot_id in self.pilots:
                state = self.pilots[pilot_id].state
                states[state] = states.get(state, 0) + 1
        log.info("event=pilots_adopted count=%d events_replayed=%d states=%s", len(adopted),
                 replayed, states)

    def _pilot_handlers(self) -> dict:
        return {"pilot.launched": self.on_launched, "pilot.registered": self.on_registered,
                "slot.advertised": self.on_slot, "pilot.retiring": self.on_retiring,
                "pilot.exited": self.on_gone, "pilot.lost": self.on_gone}

    def _set_state(self, pilot_id: str, state: str, entry: str = "", client: str = "") -> None:
        now = time.time()
        record = self.pilots.get(pilot_id)
        if record is None:
            if not entry or entry not in self.entries:
                return
            record = PilotRecord(pilot_id, entry, client, state, now, now)
        elif record.state != state:
            if record.state == "retiring" and state in ("idle", "busy"):
                return  # a retiring pilot's heartbeat may still say idle: retiring wins
            record = replace(record, state=state, state_since=now)
        self.pilots[pilot_id] = record

    def on_launched(self, msg: PilotLaunched, ctx: Context) -> None:
        if msg.pilot_id not in self.pilots:
            self._set_state(msg.pilot_id, "pending", msg.entry, msg.group)

    def on_registered(self, msg: PilotRegistered, ctx: Context) -> None:
        if ctx.from_pilot(msg.pilot_id):
            self._set_state(msg.pilot_id, "idle", msg.entry)

    def on_slot(self, msg: SlotAdvertised, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id):
            return
        self._set_state(msg.pilot_id, msg.state if msg.state in ("idle", "busy", "retiring")
                        else "idle", msg.entry)

    def on_retiring(self, msg: PilotRetiring, ctx: Context) -> None:
        if ctx.from_pilot(msg.pilot_id):
            self._set_state(msg.pilot_id, "retiring", msg.entry)

    def on_gone(self, msg: PilotExited | PilotLost, ctx: Context) -> None:
        if not ctx.from_pilot(msg.pilot_id, or_service=True):
            return
        self.pilots.pop(msg.pilot_id, None)
        if msg.entry in self.entries:
            self.ended[msg.pilot_id] = (msg.entry, time.time())  # its VM may outlive it

    def on_request(self, msg: GlideinRequest, ctx: Context) -> None:
        if msg.entry not in self.entries:
            log.warning("event=request_for_unknown_entry entry=%s", msg.entry)
            return
        client = logic.client_name(msg.frontend, msg.group)
        self.requests[msg.entry][client] = (msg, time.time())
        if ctx is not None and ctx.envelope.headers.get("traceparent"):  # a renewal in no
            # trace keeps the last one
            self.request_traces[(msg.entry, client)] = tracing.current_traceparent() or ""
        self._open_credential(msg.entry, client, msg.credentials)

    def _open_credential(self, entry_name: str, client: str, boxes: dict[str, bytes]) -> None:
        """The group's credential for the entry, opened with this factory's key, for its
        driver; a driver that sees a new account through it adopts that account's VMs."""
        entry = self.entries[entry_name]
        box = boxes.get(credentials.box_name(entry.trust_domain, self.name))
        if box is None:
            return
        aad = credentials.box_aad(client, entry_name, entry.trust_domain, self.name)
        try:
            secret = sealing.open_box(self.box_key, box, aad)
        except security.AuthError as exc:
            log.warning("event=credential_refused entry=%s client=%s reason=%r", entry_name,
                        client, str(exc))
            return
        if self.secrets.get((entry_name, client)) == secret:
            return
        self.secrets[(entry_name, client)] = secret
        arrived = getattr(self.drivers[entry_name], "credential_arrived", None)
        try:
            new_account = arrived is not None and arrived(secret)
        except Exception as exc:  # a malformed credential: its launches will fail and say so
            log.warning("event=credential_unusable entry=%s client=%s reason=%r", entry_name,
                        client, str(exc))
            return
        log.info("event=credential_received entry=%s client=%s trust_domain=%s", entry_name,
                 client, entry.trust_domain)
        if new_account:
            self.adopt_running_pilots([entry_name])

    # --- the reconcile loop -------------------------------------------------------------------

    def fresh_requests(self, entry: str) -> list[GlideinRequest]:
        now = time.time()
        return [msg for msg, seen in self.requests[entry].values()
                if now - seen < REQUEST_LIFETIME_S]

    def active_entries(self) -> list[str]:
        """Entries this process consumes requests for (see the module docstring)."""
        return [entry for entry in self.entries if self.fresh_requests(entry)]

    def reconcile(self) -> None:
        for entry in self.active_entries():
            try:
                self.reconcile_entry(entry)
            except Exception:
                log.exception("event=reconcile_failed entry=%s", entry)
        for entry, driver in self.drivers.items():
            flush = getattr(driver, "flush", None)  # drivers that batch terminations
            if flush is not None:
                try:
                    flush()
                except Exception:
                    log.exception("event=terminate_failed entry=%s", entry)

    def reconcile_entry(self, entry: str) -> None:
        now = time.time()
        if getattr(self.drivers[entry], "blind", False):
            return  # no credential for its VMs yet: it comes with a request (see drivers/)
        listed = self.listed[entry] = self.drivers[entry].instances(entry)
        self._notice_vanished(entry, listed)
        self._end_leftover_vms(entry, listed)
        mine = [p for p in self.pilots.values() if p.entry == entry]
        pilots = [logic.Pilot(p.pilot_id, p.client, p.state, now - p.launched_at,
                              now - p.state_since) for p in mine]
        last = self.last_launch.get(entry)
        actions = logic.decide_entry(self.fresh_requests(entry), pilots, self.policies[entry],
                                     None if last is None else now - last)
        if actions.nothing_to_do:
            return
        log.info("event=entry_actions entry=%s launch=%s retire=%d kill=%d reason=%r", entry,
                 actions.launch, len(actions.retire), len(actions.kill), actions.reason)
        launched = all(self.launch(entry, client)
                       for client, count in actions.launch.items() for _ in range(count))
        if not launched:
            log.warning("event=launches_stopped entry=%s reason=launch_failed", entry)
        for pilot_id in actions.retire:
            self.retire(pilot_id)
        for pilot_id in actions.kill:
            self.kill(pilot_id, "never registered or stayed held too long")

    def _notice_vanished(self, entry: str, listed: list[Instance]) -> None:
        """Pilots the driver no longer runs that never said goodbye are lost."""
        running = {i.pilot_id for i in listed if i.state == "running"}
        for record in [p for p in self.pilots.values() if p.entry == entry]:
            if record.pilot_id not in running:
                self.pilots.pop(record.pilot_id, None)
                self.bus.emit(PilotLost(pilot_id=record.pilot_id, entry=entry,
                                        reason=f"{record.state} pilot vanished without exiting",
                                        time=time.time()))

    def _end_leftover_vms(self, entry: str, listed: list[Instance]) -> None:
        """VMs that outlive their pilot: stopped ones at once (they still hold quota:
        OpenStack leaves them SHUTOFF, OpenNebula UNKNOWN), running ones once their guest
        had exit_grace_s to shut itself down (AWS terminates on shutdown: no call needed)."""
        now = time.time()
        for instance in listed:
            _entry, ended = self.ended.get(instance.pilot_id, (entry, None))
            overdue = ended is not None and now - ended > self.exit_grace_s
            if instance.state == "stopped" or (instance.state == "running" and overdue):
                log.info("event=terminate_leftover_vm entry=%s pilot=%s instance=%s state=%s",
                         entry, instance.pilot_id, instance.instance_id, instance.state)
                self.drivers[entry].terminate(instance.pilot_id)
                self.ended.pop(instance.pilot_id, None)
        there = {i.pilot_id for i in listed}
        for pilot_id, (of_entry, _when) in list(self.ended.items()):
            if of_entry == entry and pilot_id not in there:
                del self.ended[pilot_id]  # its VM is gone

    def launch(self, entry_name: str, client: str) -> bool:
        """Launch one pilot; False if the driver failed (its events say why). The launch is a
        span in the trace of the request that asked for it; the pilot's boot and
        registration are its children (its traceparent travels in the pilot's context)."""
        pilot_id = f"{entry_name}-{uuid.uuid4().hex[:10]}"
        with tracing.span("launch pilot", parent=self.request_traces.get((entry_name, client)),
                          attributes={"burst.pilot": pilot_id, "burst.entry": entry_name,
                                      "burst.driver": self.entries[entry_name].driver}) as span:
            launched = self._launch(entry_name, client, pilot_id)
            if not launched:
                tracing.failed(span, "launch failed")
        return launched

    def _launch(self, entry_name: str, client: str, pilot_id: str) -> bool:
        entry = self.entries[entry_name]
        request, _seen = self.requests[entry_name].get(client, (None, 0.0))
        idle = request.idle_lifetime_s if request else 0.0
        driver = self.drivers[entry_name]
        now = time.time()
        self.pilots[pilot_id] = PilotRecord(pilot_id, entry_name, client, "pending", now, now)
        self.last_launch[entry_name] = now
        try:
            boot = self.boot(driver, entry, pilot_id, client, idle)
            # A cloud pilot gets its context and key from the metadata service, not here.
            spec = LaunchSpec(pilot_id=pilot_id, entry=entry_name, group=client,
                              context={} if boot else self.pilot_context(entry, pilot_id,
                                                                         client, idle),
                              factory=self.name,
                              pilot_key=b"" if boot else self.pilot_key(pilot_id),
                              credential=self.secrets.get((entry_name, client), b""), **boot)
            instance = driver.launch(spec)
        except Exception as exc:
            self.pilots.pop(pilot_id, None)
            log.warning("event=launch_failed entry=%s pilot=%s error=%r", entry_name, pilot_id,
                        str(exc))
            return False
        self.bus.emit(PilotLaunched(pilot_id=pilot_id, entry=entry_name, site=entry.site,
                                    factory=self.name, driver=entry.driver,
                                    provider=entry.provider, instance_id=instance.instance_id,
                                    group=client, time=now,
                                    requested_at=request.time if request else 0.0))
        return True

    def pilot_key(self, pilot_id: str) -> bytes:
        """The key that pilot alone gets (derived from the pool key this factory holds)."""
        verifier = self.bus.verifier
        return verifier.key_for(security.pilot(pilot_id)) if verifier is not None else b""

    def pilot_context(self, entry: EntryConfig, pilot_id: str, client: str,
                      idle_lifetime_s: float) -> dict[str, str]:
        broker = credentials.setting(self.pool.services.pilot_amqp_url, self.pool.path.parent)
        context = pilot_environment(entry, pilot_id, factory=self.name, group=client,
                                    idle_lifetime_s=idle_lifetime_s, settings=self.settings,
                                    amqp_url=broker)
        context["BURST_TRACEPARENT"] = tracing.current_traceparent() or ""  # the launch span
        return context

    def boot(self, driver: Driver, entry: EntryConfig, pilot_id: str, client: str,
             idle_lifetime_s: float) -> dict[str, str]:
        """For a driver whose pilots boot from user data: a single-use token bound to this
        pilot, and where to exchange it (runtime/bootstrap.py); nothing for the others."""
        if not getattr(driver, "boot_token", False):
            return {}
        url = bootstrap.metadata_url(self.settings, self.pool.services)
        if url is None:
            raise RuntimeError("no metadata service to boot cloud pilots from: start it "
                               "(burst up does; alone: burst service metadata) or set "
                               "[services] metadata_url")
        if self.bus.verifier is None:
            raise RuntimeError("cloud pilots need boot tokens, made with the pool key")
        token = bootstrap.issue(
            self.bus.verifier.pool_key, pool=self.settings.namespace, entry=entry.name,
            pilot_id=pilot_id, factory=self.name, group=client, idle_lifetime_s=idle_lifetime_s,
            lifetime_s=self.pool.services.boot_token_lifetime_s,
            traceparent=tracing.current_traceparent() or "")
        return {"boot_token": token, "metadata_url": url}

    def retire(self, pilot_id: str) -> None:
        record = self.pilots.get(pilot_id)
        if record is None:
            return
        if record.state == "pending":
            # Not registered yet: it has no queue to hear a retire order on.
            self.drivers[record.entry].terminate(pilot_id)
            self.pilots.pop(pilot_id, None)
            self.bus.emit(PilotExited(pilot_id=pilot_id, entry=record.entry,
                                      reason="cancelled before it registered", time=time.time()))
        else:
            # Sealed to the pilot: it holds no pool key to check a service's signature, so
            # what opens with its own key is what it knows a service sent.
            self.bus.send(PilotRetire(pilot_id=pilot_id, reason="no longer requested",
                                      only_if_idle=True), to=pilot_id,
                          seal_for=security.pilot(pilot_id))

    def kill(self, pilot_id: str, reason: str) -> None:
        record = self.pilots.pop(pilot_id, None)
        if record is None:
            return
        self.drivers[record.entry].terminate(pilot_id)
        self.bus.emit(PilotLost(pilot_id=pilot_id, entry=record.entry, reason=reason,
                                time=time.time()))

    # --- what the frontend sees ---------------------------------------------------------------

    def pilot_counts(self, entry: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Pilots of an entry by state, in all and per client (frontend.group)."""
        total: dict[str, int] = {}
        clients: dict[str, dict[str, int]] = {}
        for record in self.pilots.values():
            if record.entry == entry:
                total[record.state] = total.get(record.state, 0) + 1
                mine = clients.setdefault(record.client, {})
                mine[record.state] = mine.get(record.state, 0) + 1
        return total, clients

    def advertise_entries(self) -> None:
        now = time.time()
        for entry in self.entries.values():
            total, clients = self.pilot_counts(entry.name)
            self.bus.emit(EntryAdvertised(
                entry=entry.name, site=entry.site, driver=entry.driver, provider=entry.provider,
                factory=self.name, ad=prototype_ad(entry, self.name),
                endpoint=getattr(self.drivers[entry.name], "endpoint_url", entry.endpoint),
                trust_domain=entry.trust_domain, cpus=entry.cpus, memory_mb=entry.memory_mb,
                disk_mb=entry.disk_mb, pilots=total, clients=clients,
                max_pilots=entry.limits.max_pilots, time=now, credential=entry.credential,
                sealing_key=sealing.public_hex(self.box_key)))
