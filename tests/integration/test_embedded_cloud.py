"""The embedded cloud as `burst up` runs it (`python -m services.cloud`), a factory with an ec2
entry per profile, and the real broker: glidein requests make instances, the VM host boots
glideins that register with the ids the cloud gave them, and when the pilots retire every
instance ends the way its profile says and nothing is left holding quota. Also: faults, and
a terminated instance taking its glidein and jobs down with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import boto3
import psutil
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotLaunched, PilotRegistered
from schemas.provisioning import GlideinRequest
from schemas.slot import ClaimActivate, SlotAdvertised
from services.cloudspec import endpoint
from services.factory.drivers import LaunchSpec
from services.factory.drivers.cloudcalls import CloudError, RetryPolicy
from services.factory.drivers.ec2 import EC2Driver
from services.factory.handlers import Factory
from services.metadata.handlers import MetadataBroker
from services.metadata.server import BootHandler, MetadataServer
from services.runtime import bootstrap, security
from services.runtime.bus import Subscription, connect
from services.runtime.config import ServiceTimers, Settings, load_pool_config
from services.runtime.rabbit import broker_answers, delete_namespace
from services.runtime.service import pid_file, service_trust
from tests.helpers import Inbox, processes_where, wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker

PROFILES = {"aws": "imds-v2", "eucalyptus": "imds-v1", "openstack": "imds-v1",
            "opennebula": "context-disk"}
ENTRY = """
[[entry]]
name = "{name}"
site = "{site}"
driver = "ec2"
provider = "{provider}"
endpoint = "embedded"
instance_type = "{instance_type}"
cpus = 1
memory_mb = 512
idle_timeout_s = {idle}
{extra}
"""
CONFIG = """
[services]
factory_interval_s = 0.3
cloud_port = 0
cloud_boot_delay_s = 0.3
cloud_interval_s = 0.1
metrics_port_base = 0
""" + "".join(ENTRY.format(name=f"{p}-1", site=f"Site-{p}", provider=p, idle=1.5, extra="",
                           instance_type=f"{p}.small") for p in PROFILES) + \
    ENTRY.format(name="faulty", site="Faulty", provider="aws", idle=60, instance_type="t3.small",
                 extra='faults = { throttle = 2, launch_errors = 1, launch_error = "Unsupported",'
                       ' never_boot = 1, vanish = 1, vanish_after_s = 2.0 }') + \
    ENTRY.format(name="plain", site="Plain", provider="aws", idle=60, instance_type="t3.small",
                 extra="")
WATCHED = ("pilot.launched", "pilot.registered", "pilot.exited", "pilot.lost",
           "slot.advertised", "cloud.call_failed")


class Cloud:
    """The cloud service process, a boto3 client of it, and a bus watching the pool."""

    def __init__(self, root: Path):
        (root / "burst.toml").write_text(CONFIG)
        self.env = {**os.environ, "BURST_CONFIG": str(root / "burst.toml"),
                    "BURST_STATE_DIR": str(root / "state"),
                    "BURST_NAMESPACE": f"cloud{uuid.uuid4().hex[:8]}"}
        self.settings = Settings.from_env(self.env)
        self.pool = load_pool_config(root / "burst.toml")
        self.log = root / "cloud.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.cloud"], env=self.env,
                                         cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self._ready(), timeout=30, what="the cloud's pid file")
        self.url = endpoint.read_info(self.settings)["endpoint"]
        self.ec2 = boto3.client("ec2", endpoint_url=self.url, region_name=endpoint.REGION,
                                **endpoint.CREDENTIALS)
        self.events, self.reports = Inbox(), Inbox()
        # The pretend schedd and factories are services: they hold the pool key.
        self.trust = service_trust(self.settings, "test")
        self.bus = connect(self.settings, "test", **self.trust)
        self.bus.subscribe(Subscription("watch", events={n: lambda m, c: self.events.add(m)
                                                         for n in WATCHED}))
        self.bus.subscribe(Subscription("schedd.test", target="test", commands={
            "job.report": lambda m, c: self.reports.add(m)}))
        self.bus.start()
        # The metadata service, in this process: VMs trade their boot tokens with it.
        self.metadata_bus = connect(self.settings, "metadata",
                                    **service_trust(self.settings, "metadata"))
        self.metadata = MetadataBroker(self.settings, self.pool, self.metadata_bus,
                                       MetadataServer(("127.0.0.1", 0), BootHandler))
        for sub in self.metadata.subscriptions():
            self.metadata_bus.subscribe(sub)
        self.metadata_bus.start()

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        pid = pid_file(self.settings, "cloud")
        return pid.exists() and pid.read_text().strip() == str(self.proc.pid)

    def driver(self, name: str) -> EC2Driver:
        return EC2Driver(self.pool.entry(name), self.settings, emit=self.bus.emit,
                         retry=RetryPolicy(attempts=4, base_s=0.01, cap_s=0.05))

    def vm(self, pilot_id: str) -> dict:
        found = [i for r in self.ec2.describe_instances(Filters=[
            {"Name": "tag:burst:pilot-id", "Values": [pilot_id]}])["Reservations"]
            for i in r["Instances"]]
        assert len(found) == 1, found
        return found[0]

    def registered(self, pilot_id: str, timeout: float = 30) -> PilotRegistered:
        return self.events.wait_for_item(
            lambda e: isinstance(e, PilotRegistered) and e.pilot_id == pilot_id,
            timeout=timeout, what=f"{pilot_id} to register")[0]

    def stop(self) -> None:
        self.bus.stop()
        self.metadata.stopping()
        self.metadata_bus.stop()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.log.read_text()[-3000:]
        delete_namespace(self.settings, ["watch", "schedd.test", "factory.factory", "metadata",
                                         *(f"factory.entry.{e.name}" for e in self.pool.entries),
                                         *(f"glidein.{p}" for p in pilots_seen(self.events))])


def pilots_seen(events: Inbox) -> set[str]:
    return {e.pilot_id for e in events if hasattr(e, "pilot_id")}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud")
    settings = Settings.from_env({"AMQP_URL": os.environ.get("AMQP_URL", "")})
    if not broker_answers(settings):
        pytest.fail(f"no RabbitMQ broker answers at {settings.safe_url}", pytrace=False)
    made = Cloud(root)
    try:
        yield made
    finally:
        made.stop()
    assert not glideins_of(made), "a glidein outlived the cloud"


def glideins_of(cloud: Cloud) -> list[psutil.Process]:
    vms = str(cloud.settings.path("cloud", "vms"))
    return processes_where("BURST_PILOT_WORK_DIR", lambda value: value.startswith(vms))


def spec(cloud: Cloud, pilot_id: str, entry: str) -> LaunchSpec:
    """What the factory would launch: a boot token for the pilot, and where to trade it."""
    token = bootstrap.issue(cloud.trust["verifier"].pool_key, pool=cloud.settings.namespace,
                            entry=entry, pilot_id=pilot_id, factory="factory", group="fe.main")
    return LaunchSpec(pilot_id, entry, "fe.main", boot_token=token,
                      metadata_url=bootstrap.metadata_url(cloud.settings, ServiceTimers()))


def request(entry: str, target: int) -> GlideinRequest:
    return GlideinRequest(frontend="fe", group="main", entry=entry, idle_target=target,
                          max_glideins=target, remove_excess="NO", time=time.time())


def test_each_profile_boots_a_glidein_that_retires_and_leaves_nothing_behind(cloud):
    entries = tuple(cloud.pool.entry(f"{p}-1") for p in PROFILES)
    pool = replace(cloud.pool, entries=entries)
    bus = connect(cloud.settings, "factory", **service_trust(cloud.settings, "factory"))
    factory = Factory("factory", cloud.settings, pool, bus)
    for sub in factory.subscriptions():
        bus.subscribe(sub)
    bus.start()
    bus.call_soon_threadsafe(factory.started)
    try:
        for entry in entries:
            cloud.bus.send(request(entry.name, 1), to=entry.name)
        launched = {e.entry: e for e in cloud.events.wait_for(
            lambda inbox: len({e.entry for e in inbox.of(PilotLaunched)}) == 4,
            what="a launch per entry") if isinstance(e, PilotLaunched)}
        for entry in entries:
            pilot = launched[entry.name]
            registered = cloud.registered(pilot.pilot_id)
            vm = cloud.vm(pilot.pilot_id)
            assert registered.instance_id == vm["InstanceId"] == pilot.instance_id
            assert (registered.provider, registered.context_source) == (
                entry.provider, PROFILES[entry.provider])
            assert registered.instance_type == vm["InstanceType"] == entry.instance_type
            ad = cloud.events.wait_for_item(
                lambda e, p=pilot.pilot_id: isinstance(e, SlotAdvertised) and e.pilot_id == p)[0]
            assert f'CloudInstanceID = "{vm["InstanceId"]}"' in ad.ad
            assert f'CloudProvider = "{entry.provider}"' in ad.ad
            cloud.bus.send(request(entry.name, 0), to=entry.name)  # no more: let it retire
        for entry in entries:
            pilot_id = launched[entry.name].pilot_id
            cloud.events.wait_for_item(lambda e, p=pilot_id: isinstance(e, PilotExited)
                                       and e.pilot_id == p, what=f"{pilot_id} to exit")
        final = wait_until(lambda: _all_terminated(cloud, launched), timeout=20,
                           what="every VM terminated")
        assert final == {"aws-1": "", "eucalyptus-1": "", "openstack-1": "SHUTOFF",
                         "opennebula-1": "UNKNOWN"}  # stopped first, then the factory ended it
        assert Counter(e.entry for e in cloud.events.of(PilotLaunched)
                       if e.entry in launched) == dict.fromkeys(launched, 1)
    finally:
        bus.stop()


def _all_terminated(cloud: Cloud, launched: dict) -> dict[str, str] | None:
    seen = {}
    for entry, pilot in launched.items():
        vm = cloud.vm(pilot.pilot_id)
        if vm["State"]["Name"] != "terminated":
            return None
        seen[entry] = {t["Key"]: t["Value"] for t in vm["Tags"]}.get("burst:vm-state", "")
    return seen


def test_faults_throttle_refuse_launches_and_lose_vms(cloud):
    d = cloud.driver("faulty")
    assert d.instances("faulty") == []  # throttled twice, then answered
    with pytest.raises(CloudError, match="Unsupported"):
        d.launch(spec(cloud, "faulty-p1", "faulty"))
    stuck = d.launch(spec(cloud, "faulty-p2", "faulty"))
    lost = d.launch(spec(cloud, "faulty-p3", "faulty"))
    registered = cloud.registered("faulty-p3")
    wait_until(lambda: cloud.vm("faulty-p3")["State"]["Name"] == "terminated", timeout=15,
               what="the vanishing VM to go")
    wait_until(lambda: not _alive(registered.pid), timeout=10, what="its glidein to die with it")
    assert cloud.vm("faulty-p2")["State"]["Name"] == "pending"  # booted before p3: never will
    assert {i.pilot_id: i.state for i in d.instances("faulty")} == {"faulty-p2": "running"}
    assert lost.instance_id != stuck.instance_id
    failures = [(e.call, e.code, e.will_retry) for e in cloud.events.wait_for(
        lambda inbox: sum(e.NAME == "cloud.call_failed" for e in inbox) >= 3)
        if e.NAME == "cloud.call_failed" and e.entry == "faulty"]
    assert failures == [("DescribeInstances", "RequestLimitExceeded", True)] * 2 + [
        ("RunInstances", "Unsupported", False)]
    assert not [e for e in cloud.events.of(PilotExited) if e.pilot_id == "faulty-p3"]


def test_terminating_an_instance_kills_its_glidein_and_its_jobs(cloud):
    d = cloud.driver("plain")
    instance = d.launch(spec(cloud, "plain-p1", "plain"))
    registered = cloud.registered("plain-p1")
    cloud.bus.send(ClaimActivate(
        claim_id="c1", pilot_id="plain-p1", schedd="test", job_id="1.0", job_ad="[]",
        executable="/bin/sleep", arguments=["60"], environment={}, files={}, cpus=1,
        memory_mb=64, disk_mb=10), to="plain-p1", seal_for=security.pilot("plain-p1"))
    cloud.reports.wait_for_item(lambda r: isinstance(r, JobReport) and r.state == "running",
                                what="the job to run")
    job = wait_until(lambda: _job_processes("plain-p1"), what="the job's process")
    cloud.ec2.terminate_instances(InstanceIds=[instance.instance_id])
    wait_until(lambda: not _job_processes("plain-p1") and not _alive(registered.pid),
               timeout=10, what="glidein and job gone")
    assert job and not [e for e in cloud.events.of(PilotExited) if e.pilot_id == "plain-p1"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _job_processes(pilot_id: str) -> list[psutil.Process]:
    return processes_where("BURST_PILOT_ID", lambda value: value == pilot_id)


def test_cloud_json_names_the_endpoint(cloud):
    info = json.loads(endpoint.info_path(cloud.settings).read_text())
    assert info["endpoint"] == cloud.url and info["pid"] == cloud.proc.pid
    assert cloud.driver("plain").endpoint_url == cloud.url
