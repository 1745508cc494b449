"""Custom resources (request_boats, request_gpus) in the negotiator: slot ads as pilots write
them, job ads as condor_submit and the schedd make them, claims carved by a pilot's own slot."""

from __future__ import annotations

import time
from pathlib import Path

import classad2
import pytest

from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.slot import Claim, MatchOffer, SlotAdvertised
from services.condor.claims import claim_digest
from services.condor.pilot import PilotContext
from services.condor.slot import slot_ad
from services.condor.submit import parse_submit_text
from services.glidein.logic import PartitionableSlot
from services.negotiator import logic
from services.negotiator.handlers import Negotiator
from services.negotiator.logic import AdTable, negotiate
from services.runtime.bus import Subscription, connect
from services.runtime.config import EntryConfig, PoolConfig
from services.schedd.queue import autocluster_of
from tests.helpers import Inbox


class Pilot:
    """A pilot's partitionable slot, carved by the glidein's own code: a claim it cannot
    give raises, as the real pilot rejects it."""

    def __init__(self, pilot_id: str, cpus: int = 4, resources: dict | None = None):
        self.ctx = PilotContext(pilot_id=pilot_id, entry="e1", site="SiteA", cpus=cpus,
                                memory_mb=4096, disk_mb=8192, resources=resources or {})
        self.slot = PartitionableSlot.for_context(self.ctx)
        self.seq = 0

    def advertise(self) -> SlotAdvertised:
        self.seq += 1
        free = self.slot.free
        return SlotAdvertised(
            pilot_id=self.ctx.pilot_id, ad=str(slot_ad(self.ctx, free)),
            state="busy" if self.slot.busy else "idle", free_cpus=free.cpus,
            free_memory_mb=free.memory_mb, free_disk_mb=free.disk_mb,
            claims=sorted(claim_digest(c) for c in self.slot.claims), entry="e1",
            site="SiteA", seq=self.seq, free_resources=dict(free.custom))

    def take(self, claim: Claim) -> None:
        self.slot.claim(claim.claim_id, claim.cpus, claim.memory_mb, claim.disk_mb,
                        claim.resources)


def autocluster(submit: str, idle: int, ac_id: str = "ac1", running: int = 0) -> AutoCluster:
    """An autocluster of a submit file's job, as the schedd publishes it."""
    (spec,) = parse_submit_text(f"executable = /bin/true\n{submit}\nqueue\n", cluster=1,
                                owner="alice", initialdir_default=Path("/tmp"))
    key = autocluster_of(classad2.ClassAd(spec.ad_text), "alice")
    return AutoCluster(id=ac_id, owner="alice", ad=key.ad, idle=idle, running=running)


def claims_of(result, ac_id: str = "ac1") -> list[Claim]:
    return result.matches.get(("s", ac_id), [])


# ---------------------------------------------------------------- one pass


def test_a_two_boat_pilot_takes_two_one_boat_jobs_in_a_pass_never_three():
    boats, plain = Pilot("boats", resources={"Boats": 2}), Pilot("plain")
    result = negotiate({"s": [autocluster("request_boats = 1", idle=3)]},
                       [boats.advertise(), plain.advertise()], {})
    claims = claims_of(result)
    assert [(c.pilot_id, c.resources) for c in claims] == [("boats", {"Boats": 1})] * 2
    for claim in claims:
        boats.take(claim)  # the pilot's own slot: a third Boat would raise
    assert boats.slot.free.custom == {"Boats": 0} and boats.slot.free.cpus == 2


def test_jobs_without_custom_requests_fill_the_cores_the_boats_leave():
    pilot = Pilot("p", cpus=4, resources={"Boats": 2})
    result = negotiate({"s": [autocluster("request_boats = 1", idle=3, ac_id="b"),
                              autocluster("request_cpus = 1", idle=5, ac_id="c")]},
                       [pilot.advertise()], {})
    assert len(claims_of(result, "b")) == 2 and len(claims_of(result, "c")) == 2
    assert {tuple(c.resources.items()) for c in claims_of(result, "c")} == {()}
    for claim in claims_of(result, "b") + claims_of(result, "c"):
        pilot.take(claim)


@pytest.mark.parametrize("command", ["request_boats = 1", "request_BOATS = 1",
                                     "request_Boats = 0.5"])
def test_requests_name_the_resource_in_any_case_and_round_up(command):
    pilot = Pilot("p", resources={"Boats": 2})
    (claim,) = claims_of(negotiate({"s": [autocluster(command, idle=1)]},
                                   [pilot.advertise()], {}))
    assert claim.resources == {"Boats": 1}  # the slot's name, whatever the job wrote
    pilot.take(claim)


def test_several_custom_resources_are_carved_together():
    pilot = Pilot("p", cpus=8, resources={"GPUs": 2, "Boats": 3})
    result = negotiate({"s": [autocluster("request_gpus = 1\nrequest_boats = 1", idle=4)]},
                       [pilot.advertise()], {})
    claims = claims_of(result)
    assert [c.resources for c in claims] == [{"Boats": 1, "GPUs": 1}] * 2  # GPUs run out
    for claim in claims:
        pilot.take(claim)


# ---------------------------------------------------------------- reasons


def reason(submit: str, *pilots: Pilot) -> str:
    result = negotiate({"s": [autocluster(submit, idle=1)]},
                       [p.advertise() for p in pilots], {})
    assert claims_of(result) == []
    return result.reasons[("s", "ac1")]


def test_a_job_asking_for_a_resource_no_slot_offers_says_which():
    pilots = Pilot("a", resources={"Boats": 2}), Pilot("b")
    assert reason("request_Wings = 1", *pilots) == "no slot offers Wings (it asks for 1)"


def test_a_job_asking_for_more_than_any_slot_has_says_how_much_there_is():
    assert reason("request_boats = 3", Pilot("a", resources={"Boats": 2})) == (
        "requests 1 cpus, 128 MiB, 1024 MB disk, 3 boats, more than any slot has "
        "(at most 4 cpus, 4096 MiB, 8192 MB disk, 2 boats)")


def test_a_job_waiting_for_busy_boats_says_so():
    pilot = Pilot("a", resources={"Boats": 1})
    pilot.slot.claim("c1", 1, 128, 1024, {"Boats": 1})
    assert reason("request_boats = 1", pilot) == "1 slot matches but not enough boats free"


# ---------------------------------------------------------------- slot ads believed


def test_custom_resources_of_a_slot_ad_must_add_up():
    msg = Pilot("p", resources={"Boats": 2}).advertise()

    def problem(free):
        changed = SlotAdvertised(**{**msg.__dict__, "free_resources": free})
        return logic.slot_problem(changed, classad2.ClassAd(msg.ad))

    assert problem({"Boats": 2}) == "" and problem({"boats": 0}) == ""
    assert problem({"Boats": 3}) == "free Boats 3 is not between 0 and the total 2"
    assert problem({"Boats": -1}) == "free Boats -1 is not between 0 and the total 2"


# ---------------------------------------------------------------- across passes


@pytest.fixture
def service(settings):
    bus = connect(settings, "negotiator", memory=True)
    negotiator = Negotiator(PoolConfig(path=None, entries=(EntryConfig("e1", "SiteA"),),
                                       groups=()), bus)
    inbox = Inbox()
    for sub in negotiator.subscriptions():
        bus.subscribe(sub)
    bus.subscribe(Subscription("out", commands={"match.offer": lambda m, c: inbox.add(m)},
                               target="s"))
    bus.subscribe(Subscription("ev", events={"match.analysis": lambda m, c: inbox.add(m)}))
    bus.start()
    yield bus, negotiator, inbox
    bus.stop()


def test_claims_in_flight_hold_their_boats_until_the_pilot_shows_them(service):
    bus, negotiator, inbox = service
    pilot = Pilot("p", cpus=4, resources={"Boats": 2})
    offered: list[Claim] = []

    def a_pass(*messages) -> list[Claim]:
        for msg in messages:
            bus.emit(msg)
        bus.wait_idle()
        negotiator.negotiate()
        bus.wait_idle()
        new = [c for m in inbox.items if isinstance(m, MatchOffer) for c in m.claims]
        new = new[len(offered):]
        offered.extend(new)
        for claim in new:
            pilot.take(claim)  # raises as the pilot rejects a claim it cannot give
        return new

    def demand(idle: int, running: int, seq: int) -> DemandSnapshot:
        return DemandSnapshot(schedd="s", seq=seq, time=time.time(), autoclusters=[
            autocluster("request_boats = 1", idle=idle, running=running)])

    assert len(a_pass(pilot.advertise(), demand(3, 0, 1))) == 2
    # The pilot has not advertised the claims yet: its last ad still shows 2 Boats free.
    assert a_pass() == []
    assert a_pass(pilot.advertise(), demand(1, 2, 2)) == []  # both claims running
    analyses = [m for m in inbox.items if isinstance(m, MatchAnalysis)]
    assert analyses[-1].reasons == {"ac1": "1 slot matches but not enough boats free"}
    pilot.slot.release(offered[0].claim_id)  # a job finished: one Boat back
    assert len(a_pass(pilot.advertise(), demand(1, 1, 3))) == 1
    assert a_pass() == []
    assert pilot.slot.free.custom == {"Boats": 0}


def test_a_kept_table_sees_boats_come_back():
    """A kept table follows a pilot's Boats as claims take them and jobs give them back."""
    table = AdTable()
    pilot = Pilot("p", cpus=4, resources={"Boats": 1})
    demand = {"s": [autocluster("request_boats = 1", idle=2)]}
    (claim,) = claims_of(negotiate(demand, [pilot.advertise()], {}, table=table))
    pilot.take(claim)
    assert claims_of(negotiate(demand, [pilot.advertise()], {}, table=table)) == []
    pilot.slot.release(claim.claim_id)
    assert len(claims_of(negotiate(demand, [pilot.advertise()], {}, table=table))) == 1
