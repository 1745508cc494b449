"""The factory service on the in-memory bus, with a driver that only keeps a list."""

from __future__ import annotations

import time

import pytest

from schemas.pilot import PilotRegistered, PilotRetire
from schemas.provisioning import EntryAdvertised, GlideinRequest
from schemas.slot import SlotAdvertised
from services.factory.drivers import Instance, LaunchSpec
from services.factory.handlers import Factory
from services.runtime.bus import Subscription, connect
from services.runtime.config import EntryConfig, EntryLimits, GroupConfig, PoolConfig
from tests.helpers import Inbox


class ListDriver:
    name = "list"

    def __init__(self):
        self.running: dict[str, Instance] = {}
        self.launched: list[LaunchSpec] = []
        self.terminated: list[str] = []

    def launch(self, spec: LaunchSpec) -> Instance:
        self.launched.append(spec)
        inst = Instance(spec.pilot_id, spec.entry, spec.group, f"i-{spec.pilot_id}", "running",
                        time.time())
        self.running[spec.pilot_id] = inst
        return inst

    def instances(self, entry: str) -> list[Instance]:
        return [i for i in self.running.values() if i.entry == entry]

    def terminate(self, pilot_id: str) -> None:
        self.terminated.append(pilot_id)
        self.running.pop(pilot_id, None)


ENTRY = EntryConfig(name="e1", site="SiteA", cpus=4, memory_mb=4096,
                    limits=EntryLimits(max_pilots=5, max_launch_per_cycle=2))


@pytest.fixture
def setup(settings, tmp_path):
    pool = PoolConfig(path=tmp_path / "x.toml", entries=(ENTRY,), groups=(GroupConfig("main"),))
    driver = ListDriver()
    events, commands = Inbox(), Inbox()
    made = []

    def make(preload=()):
        bus = connect(settings, "factory", memory=True)
        factory = Factory("f1", settings, pool, bus, drivers={"e1": driver})
        for sub in factory.subscriptions():
            bus.subscribe(sub)
        bus.subscribe(Subscription("watch", events={
            n: (lambda m, c: events.add(m)) for n in ("pilot.launched", "pilot.lost",
                                                     "pilot.exited", "entry.advertised")}))
        bus.subscribe(Subscription("pilots", target="any",
                                   commands={"pilot.retire": lambda m, c: commands.add(m)}))
        bus.start()
        for event in preload:
            bus.emit(event)
        bus.wait_idle()
        made.append(bus)
        return bus, factory

    yield make, driver, events, commands
    for bus in made:
        bus.stop()


def request(target: int, maximum: int = 10, remove: str = "NO") -> GlideinRequest:
    return GlideinRequest(frontend="fe", group="main", entry="e1", idle_target=target,
                          max_glideins=maximum, remove_excess=remove, time=time.time())


def slot(pilot_id: str, state: str, seq: int = 1) -> SlotAdvertised:
    return SlotAdvertised(pilot_id=pilot_id, ad="[]", state=state, free_cpus=0 if state == "busy"
                          else 4, free_memory_mb=0, free_disk_mb=0, entry="e1", seq=seq)


def test_a_request_launches_pilots_at_the_rate_limit_with_their_context(setup):
    make, driver, events, _ = setup
    bus, factory = make()
    bus.send(request(3), to="e1")
    bus.wait_idle()
    factory.reconcile()
    assert len(driver.launched) == 2  # max_launch_per_cycle
    context = driver.launched[0].context
    assert (context["BURST_ENTRY"], context["BURST_SITE"], context["BURST_CPUS"]) == (
        "e1", "SiteA", "4")
    assert context["BURST_PILOT_ID"] == driver.launched[0].pilot_id
    factory.reconcile()
    assert len(driver.launched) == 3
    factory.reconcile()
    assert len(driver.launched) == 3  # three waiting: the target is met
    launched = events.wait_for(lambda items: sum(e.NAME == "pilot.launched" for e in items) == 3)
    assert {e.group for e in launched if e.NAME == "pilot.launched"} == {"fe.main"}


def test_shrinking_retires_idle_pilots_and_never_busy_ones(setup):
    make, driver, events, commands = setup
    bus, factory = make()
    bus.send(request(2), to="e1")
    bus.wait_idle()
    factory.reconcile()
    busy, idle = (spec.pilot_id for spec in driver.launched)
    for pilot_id, state in ((busy, "busy"), (idle, "idle")):
        bus.emit(PilotRegistered(pilot_id=pilot_id, entry="e1", site="SiteA", provider="local",
                                 cpus=4, memory_mb=4096, disk_mb=1))
        bus.emit(slot(pilot_id, state))
    bus.send(request(0, maximum=0, remove="IDLE"), to="e1")
    bus.wait_idle()
    sent = []
    factory.bus.send = lambda msg, to=None, **kw: sent.append((msg, to))
    factory.reconcile()
    assert [(type(m), to) for m, to in sent] == [(PilotRetire, idle)]
    assert driver.terminated == []


def test_a_pilot_that_vanished_without_a_word_is_reported_lost(setup):
    make, driver, events, _ = setup
    bus, factory = make()
    bus.send(request(1), to="e1")
    bus.wait_idle()
    factory.reconcile()
    (spec,) = driver.launched
    driver.running.clear()
    factory.reconcile()
    lost = events.wait_for(lambda items: any(e.NAME == "pilot.lost" for e in items))
    assert [e.pilot_id for e in lost if e.NAME == "pilot.lost"] == [spec.pilot_id]


def test_a_restarted_factory_learns_its_pilots_states_from_the_event_log(setup):
    make, driver, events, _ = setup
    driver.running["p-busy"] = Instance("p-busy", "e1", "fe.main", "i-1", "running",
                                        time.time() - 5)
    history = [PilotRegistered(pilot_id="p-busy", entry="e1", site="SiteA", provider="local",
                               cpus=4, memory_mb=4096, disk_mb=1), slot("p-busy", "busy")]
    bus, factory = make(preload=history)
    factory.pilots.clear()
    factory.adopt_running_pilots()
    assert factory.pilots["p-busy"].state == "busy"
    bus.send(request(0, maximum=0, remove="IDLE"), to="e1")
    bus.wait_idle()
    factory.reconcile()
    assert driver.terminated == [] and driver.launched == []


def test_entries_are_advertised_with_their_pilot_ad_and_counts(setup):
    make, driver, events, _ = setup
    bus, factory = make()
    bus.send(request(1), to="e1")
    bus.wait_idle()
    factory.reconcile()
    factory.advertise_entries()
    ads = events.wait_for(lambda items: any(isinstance(e, EntryAdvertised) for e in items))
    (ad,) = [e for e in ads if isinstance(e, EntryAdvertised)]
    assert (ad.entry, ad.site, ad.cpus, ad.pilots, ad.clients) == (
        "e1", "SiteA", 4, {"pending": 1}, {"fe.main": {"pending": 1}})
    assert 'GLIDEIN_Site = "SiteA"' in ad.ad
