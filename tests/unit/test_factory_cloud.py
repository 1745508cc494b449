"""The factory with the ec2 driver (moto in-process) on the in-memory bus: VMs that stay
behind when their pilot ends are terminated, failed launches leave nothing pending and are
events, and an embedded entry advertises the endpoint it resolved to."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws

from schemas.pilot import PilotExited
from schemas.provisioning import EntryAdvertised, GlideinRequest
from services.cloudspec import endpoint
from services.factory.drivers.cloudcalls import RetryPolicy
from services.factory.drivers.ec2 import EC2Driver
from services.factory.handlers import Factory
from services.runtime.bus import Subscription, connect
from services.runtime.config import (
    EntryConfig,
    EntryLimits,
    GroupConfig,
    PoolConfig,
    ServiceTimers,
)
from services.runtime.service import service_trust
from tests.helpers import Inbox

ENTRY = EntryConfig(name="os1", site="OpenStackSite", driver="ec2", provider="openstack",
                    region="us-east-1", image="ami-12345678", instance_type="t3.small",
                    limits=EntryLimits(max_pilots=3, max_launch_per_cycle=3))
WATCHED = ("pilot.launched", "pilot.lost", "cloud.call_failed", "entry.advertised")


@pytest.fixture
def cloud(settings, tmp_path):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        pool = PoolConfig(path=tmp_path / "x.toml", entries=(ENTRY,),
                          groups=(GroupConfig("main"),),
                          services=ServiceTimers(metadata_url="http://metadata.example:8471"))
        bus = connect(settings, "factory", memory=True, **service_trust(settings, "factory"))
        driver = EC2Driver(ENTRY, settings, emit=bus.emit, client=ec2,
                           retry=RetryPolicy(attempts=2, base_s=0.001, cap_s=0.01))
        factory = Factory("f1", settings, pool, bus, drivers={"os1": driver})
        for sub in factory.subscriptions():
            bus.subscribe(sub)
        events = Inbox()
        bus.subscribe(Subscription("watch", events={n: (lambda m, c: events.add(m))
                                                    for n in WATCHED}))
        bus.start()
        bus.send(GlideinRequest(frontend="fe", group="main", entry="os1", idle_target=1,
                                max_glideins=3, remove_excess="NO", time=time.time()), to="os1")
        bus.wait_idle()
        yield ec2, bus, factory, events
        bus.stop()


def states(ec2) -> dict[str, str]:
    return {i["InstanceId"]: i["State"]["Name"]
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}


def test_a_vm_left_stopped_by_its_guest_is_terminated(cloud):
    ec2, bus, factory, events = cloud
    factory.reconcile()
    [launched] = events.wait_for_item(lambda e: e.NAME == "pilot.launched")
    assert states(ec2) == {launched.instance_id: "running"}
    ec2.stop_instances(InstanceIds=[launched.instance_id])  # OpenStack: SHUTOFF, still there
    factory.reconcile()
    assert states(ec2)[launched.instance_id] == "terminated"
    lost = events.wait_for_item(lambda e: e.NAME == "pilot.lost")
    assert lost[0].pilot_id == launched.pilot_id  # it never said goodbye


def test_a_vm_still_running_after_its_pilot_exited_is_terminated(cloud):
    ec2, bus, factory, events = cloud
    factory.reconcile()
    [launched] = events.wait_for_item(lambda e: e.NAME == "pilot.launched")
    bus.emit(PilotExited(pilot_id=launched.pilot_id, entry="os1", reason="idle for 1 s"))
    bus.wait_idle()
    factory.reconcile()
    assert states(ec2)[launched.instance_id] == "running"  # its guest may still shut it down
    factory.exit_grace_s = 0.0
    factory.reconcile()
    assert states(ec2)[launched.instance_id] == "terminated"


def test_a_failed_launch_keeps_no_pilot_and_is_an_event(cloud):
    ec2, bus, factory, events = cloud
    ec2.meta.events.register_first("before-call.ec2.RunInstances", refuse)
    factory.reconcile()
    events.wait_for(lambda inbox: sum(e.NAME == "cloud.call_failed" for e in inbox) == 2)
    failed = [e for e in events.items if e.NAME == "cloud.call_failed"]
    assert [(e.entry, e.call, e.code, e.will_retry) for e in failed] == [
        ("os1", "RunInstances", "InsufficientInstanceCapacity", True),
        ("os1", "RunInstances", "InsufficientInstanceCapacity", False)]
    assert factory.pilots == {} and states(ec2) == {}
    assert not [e for e in events.items if e.NAME == "pilot.launched"]


def refuse(**_kwargs):
    from botocore.awsrequest import AWSResponse

    return AWSResponse("http://cloud", 500, {}, None), {
        "Error": {"Code": "InsufficientInstanceCapacity", "Message": "no room"},
        "ResponseMetadata": {"HTTPStatusCode": 500}}


def test_an_embedded_entry_advertises_the_endpoint_it_resolved(settings, tmp_path):
    entry = EntryConfig(name="emb", site="S", driver="ec2", provider="aws",
                        endpoint=endpoint.EMBEDDED)
    pool = PoolConfig(path=tmp_path / "x.toml", entries=(entry,), groups=(GroupConfig("m"),))
    endpoint.write_info(settings, {"endpoint": "http://127.0.0.1:5999"})
    bus = connect(settings, "factory", memory=True)
    events = Inbox()
    bus.subscribe(Subscription("watch", events={"entry.advertised": lambda m, c: events.add(m)}))
    bus.start()
    try:
        Factory("f1", settings, pool, bus).advertise_entries()
        [ad] = events.wait_for_item(lambda e: isinstance(e, EntryAdvertised))
        assert (ad.driver, ad.endpoint) == ("ec2", "http://127.0.0.1:5999")
    finally:
        bus.stop()
