"""Frontend and negotiator services on the in-memory bus."""

from __future__ import annotations

import dataclasses
import time

import pytest

from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.provisioning import EntryAdvertised, GlideinRequest
from schemas.slot import MatchOffer, SlotAdvertised
from services.factory.prototype import prototype_ad
from services.frontend.handlers import Frontend
from services.negotiator.handlers import Negotiator
from services.runtime.bus import Subscription, connect
from services.runtime.config import EntryConfig, GroupConfig, PoolConfig
from tests.helpers import Inbox

ENTRY = EntryConfig(name="e1", site="SiteA", cpus=4, memory_mb=4096)
POOL = PoolConfig(path=None, entries=(ENTRY,), groups=(GroupConfig("main",
                                                                   credentials={"local": "x"}),))
JOB = ('[RequestCpus = 1; RequestMemory = 512; RequestDisk = 1024; Owner = "alice"; '
       'Requirements = TARGET.Cpus >= MY.RequestCpus && TARGET.Memory >= MY.RequestMemory]')
HUGE = JOB.replace("RequestMemory = 512", "RequestMemory = 999999")


def snapshot(*acs: AutoCluster, seq: int = 1) -> DemandSnapshot:
    return DemandSnapshot(schedd="s1", seq=seq, autoclusters=list(acs), time=time.time())


@pytest.fixture
def wired(settings):
    made = []

    def make(service_cls, *outputs):
        bus = connect(settings, "svc", memory=True)
        service = service_cls(bus)
        inbox = Inbox()
        for sub in service.subscriptions():
            bus.subscribe(sub)
        commands = {name: (lambda m, c: inbox.add(m)) for name in outputs if name != "analysis"}
        bus.subscribe(Subscription("out", commands=commands, target="e1" if
                                   "glidein.request" in outputs else "s1"))
        bus.subscribe(Subscription("ev", events={"match.analysis": lambda m, c: inbox.add(m)}))
        bus.start()
        made.append(bus)
        return bus, service, inbox

    yield make
    for bus in made:
        bus.stop()


def test_frontend_requests_pilots_for_idle_demand_and_explains_what_cannot_run(wired):
    bus, frontend, inbox = wired(lambda b: Frontend("fe", POOL, b), "glidein.request")
    bus.emit(EntryAdvertised(entry="e1", site="SiteA", driver="local", provider="local",
                             factory="f", ad=prototype_ad(ENTRY, "f"), trust_domain="local",
                             cpus=4, memory_mb=4096))
    bus.emit(snapshot(AutoCluster("ac1", "alice", JOB, idle=8),
                      AutoCluster("ac2", "alice", HUGE, idle=1)))
    bus.wait_idle()
    frontend.cycle()
    bus.wait_idle()
    requests = [m for m in inbox.items if isinstance(m, GlideinRequest)]
    assert requests and requests[-1].entry == "e1" and requests[-1].idle_target == 2
    (analysis,) = [m for m in inbox.items if isinstance(m, MatchAnalysis)]
    assert set(analysis.reasons) == {"ac2"} and "999999 MiB" in analysis.reasons["ac2"]


def slot_ad(pilot_id: str, free_cpus: int, state: str = "idle", seq: int = 1,
            lease_s: float = 60.0) -> SlotAdvertised:
    ad = (f'[Name = "slot1@{pilot_id}"; Cpus = 4; Memory = 4096; Disk = 4194304; '
          f'GLIDEIN_Site = "SiteA"; Requirements = TARGET.RequestCpus <= MY.Cpus]')
    return SlotAdvertised(pilot_id=pilot_id, ad=ad, state=state, free_cpus=free_cpus,
                          free_memory_mb=4096, free_disk_mb=4096, entry="e1", site="SiteA",
                          seq=seq, lease_s=lease_s)


def offers(inbox: Inbox) -> list[MatchOffer]:
    return [m for m in inbox.items if isinstance(m, MatchOffer)]


def pass_after(bus, negotiator, *messages) -> None:
    """Deliver `messages`, then run a pass and let its output go out."""
    for msg in messages:
        bus.emit(msg)
    bus.wait_idle()
    negotiator.negotiate()
    bus.wait_idle()


def test_negotiator_offers_claims_and_does_not_promise_the_same_cores_twice(wired):
    bus, negotiator, inbox = wired(lambda b: Negotiator(POOL, b), "match.offer")
    pass_after(bus, negotiator, slot_ad("p1", free_cpus=4),
               snapshot(AutoCluster("ac1", "alice", JOB, idle=6)))
    (offer,) = offers(inbox)
    assert offer.autocluster == "ac1" and len(offer.claims) == 4
    pass_after(bus, negotiator)  # the pilot has not advertised the claims yet
    assert len(offers(inbox)) == 1


def test_negotiator_skips_retiring_and_stale_slots(wired):
    bus, negotiator, inbox = wired(lambda b: Negotiator(POOL, b), "match.offer")
    bus.emit(slot_ad("p1", free_cpus=4, state="retiring"))
    bus.emit(slot_ad("p2", free_cpus=4, lease_s=0.0))
    bus.emit(snapshot(AutoCluster("ac1", "alice", JOB, idle=2)))
    bus.wait_idle()
    negotiator.negotiate()
    bus.wait_idle()
    assert offers(inbox) == []
    reasons = [m for m in inbox.items if isinstance(m, MatchAnalysis)][-1].reasons
    assert "retiring" in reasons["ac1"]


def test_usage_for_fair_share_counts_running_jobs_times_their_cpus():
    from services.negotiator.handlers import running_cpus_by_principal
    from services.negotiator.logic import AdTable

    two_cpus = JOB.replace("RequestCpus = 1", "RequestCpus = 2")
    demand = {"s1": [AutoCluster("a", "alice", two_cpus, idle=0, running=3),
                     AutoCluster("b", "bob", JOB, idle=5, running=0)],
              "s2": [AutoCluster("c", "alice", JOB, idle=0, running=1)]}
    assert running_cpus_by_principal(demand, AdTable()) == {"alice": 7.0}


def test_claims_count_against_a_group_quota_until_the_demand_shows_them(wired):
    from services.condor.claims import claim_digest
    from services.runtime.config import AccountingGroupConfig

    pool = dataclasses.replace(POOL, accounting_groups=(
        AccountingGroupConfig("physics", quota=2, accept_surplus=False),))
    bus, negotiator, inbox = wired(lambda b: Negotiator(pool, b), "match.offer")
    physics = JOB.replace("]", '; AccountingGroup = "physics.alice"]')
    pass_after(bus, negotiator, slot_ad("p1", free_cpus=4),
               snapshot(AutoCluster("ac1", "alice", physics, idle=10)))
    (offer,) = offers(inbox)
    assert len(offer.claims) == 2
    # The pilot runs both claims before the schedd's demand says so: still the group's 2 cpus.
    digests = [claim_digest(c.claim_id) for c in offer.claims]
    pass_after(bus, negotiator, dataclasses.replace(
        slot_ad("p1", free_cpus=2, state="busy", seq=2), claims=digests))
    assert len(offers(inbox)) == 1
    pass_after(bus, negotiator,
               snapshot(AutoCluster("ac1", "alice", physics, idle=8, running=2), seq=2))
    assert len(offers(inbox)) == 1
    reasons = [m for m in inbox.items if isinstance(m, MatchAnalysis)][-1].reasons
    assert reasons["ac1"] == "accounting group physics is at its quota: 2 cpus in use, quota 2"
