"""A slot ad the negotiator cannot believe (it does not parse, its resources are negative or
absurd) is dead-lettered with the reason and never matched."""

from __future__ import annotations

import dataclasses

import classad2
import pytest

from schemas.slot import SlotAdvertised
from services.negotiator import logic
from services.negotiator.handlers import Negotiator
from services.runtime.bus import connect
from services.runtime.config import EntryConfig, PoolConfig
from tests.helpers import wait_until

GOOD_AD = "[TotalCpus = 4; TotalMemory = 8192; TotalDisk = 4194304; Cpus = 4; Memory = 8192]"
BOATS_AD = GOOD_AD.replace(
    "]", '; Boats = 2; TotalBoats = 2; MachineResources = "Cpus Memory Disk Boats"]')


def slot(ad: str = GOOD_AD, cpus: int = 4, memory_mb: int = 8192, disk_mb: int = 4096,
         pilot: str = "p1") -> SlotAdvertised:
    return SlotAdvertised(pilot_id=pilot, ad=ad, state="idle", free_cpus=cpus,
                          free_memory_mb=memory_mb, free_disk_mb=disk_mb, time=1.0)


def problem(msg: SlotAdvertised) -> str:
    return logic.slot_problem(msg, classad2.ClassAd(msg.ad))


def test_a_real_machine_is_believed():
    assert problem(slot()) == ""
    assert problem(slot(cpus=0, memory_mb=0, disk_mb=0)) == ""  # busy: nothing free


@pytest.mark.parametrize("msg, reason", [
    (slot(cpus=-1), "free cpus -1"),
    (slot(memory_mb=-5), "free memory_mb -5"),
    (slot(cpus=5), "free cpus 5 is not between 0 and the total 4"),
    (slot(GOOD_AD.replace("TotalCpus = 4", "TotalCpus = 0"), cpus=0), "less than 1"),
    (slot(GOOD_AD.replace("TotalMemory = 8192", "TotalMemory = 99999999999")),
     "total memory_mb 1e+11"),
    (slot(GOOD_AD.replace("TotalCpus = 4", "TotalCpus = 1e308")), "total cpus"),
    (slot(GOOD_AD.replace("TotalCpus = 4", "TotalCpus = -3")), "total cpus -3"),
])
def test_negative_or_absurd_resources_are_named(msg, reason):
    assert reason in problem(msg)


@pytest.fixture
def negotiator(settings):
    bus = connect(settings, "negotiator", memory=True)
    service = Negotiator(PoolConfig(path=None, entries=(EntryConfig("e1", "SiteA"),),
                                    groups=()), bus)
    for sub in service.subscriptions():
        bus.subscribe(sub)
    bus.start()
    yield bus, service
    bus.stop()


@pytest.mark.parametrize("msg, reason", [
    (slot("[Cpus = ;;; not a classad"), "slot ad of pilot p2 does not parse"),
    (slot(memory_mb=-1024), "slot ad of pilot p2: free memory_mb -1024"),
    (slot(GOOD_AD.replace("TotalMemory = 8192", "TotalMemory = 137438953472")),
     "slot ad of pilot p2: total memory_mb"),
    (dataclasses.replace(slot(BOATS_AD), free_resources={"Boats": 3}),
     "slot ad of pilot p2: free Boats 3 is not between 0 and the total 2"),
])
def test_an_unbelievable_slot_ad_is_dead_lettered_at_once_with_the_reason(negotiator, msg,
                                                                          reason):
    bus, service = negotiator
    bus.emit(slot(pilot="p1"))
    bus.emit(SlotAdvertised(**{**msg.__dict__, "pilot_id": "p2"}))
    bus.wait_idle()
    (dead,) = wait_until(lambda: bus.dead_letters("negotiator"), what="a dead letter")
    assert reason in dead[1] and "gave up" not in dead[1]
    assert set(service.slots) == {"p1"}
