"""A group's credential from its reference to the driver, on the in-memory bus with the
pool's keys: the frontend reads it, seals it to each factory advertising the entry, the
factory consuming the request opens its own box and launches with it; nothing on the bus
holds it in the clear. And cloud launches get a boot token, never the pilot's key."""

from __future__ import annotations

import time

import msgpack
import pytest

from schemas.demand import AutoCluster, DemandSnapshot, MatchAnalysis
from schemas.pilot import PilotLaunched
from schemas.provisioning import EntryAdvertised, GlideinRequest
from services.factory.drivers import Instance, LaunchSpec
from services.factory.handlers import Factory
from services.frontend.handlers import Frontend
from services.runtime import bootstrap, sealing
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

SECRET = b"AKIAPLANTEDKEY:planted-secret-0123"
ENTRY = EntryConfig(name="cloud1", site="CloudSite", driver="ec2", provider="aws",
                    trust_domain="aws-main", credential="ec2-keypair", cpus=2, memory_mb=2048,
                    limits=EntryLimits(max_pilots=4, max_launch_per_cycle=4))
JOB = ('[RequestCpus = 1; RequestMemory = 512; Owner = "alice"; '
       'Requirements = TARGET.Cpus >= MY.RequestCpus]')


class CloudDriver:
    """Keeps a list; boots its pilots from user data and acts with a credential, like ec2."""

    name = "ec2"
    boot_token = True

    def __init__(self):
        self.launched: list[LaunchSpec] = []
        self.credentials: list[bytes] = []

    @property
    def blind(self) -> bool:
        return not self.credentials

    def credential_arrived(self, secret: bytes) -> bool:
        new = secret not in self.credentials
        self.credentials.append(secret)
        return new

    def launch(self, spec: LaunchSpec) -> Instance:
        self.launched.append(spec)
        return Instance(spec.pilot_id, spec.entry, spec.group, f"i-{spec.pilot_id}", "running",
                        time.time())

    def instances(self, entry: str) -> list[Instance]:
        return [Instance(s.pilot_id, s.entry, s.group, f"i-{s.pilot_id}", "running",
                         time.time()) for s in self.launched]

    def terminate(self, pilot_id: str) -> None:
        pass


@pytest.fixture
def pool(settings, tmp_path):
    (tmp_path / "aws.creds").write_bytes(SECRET + b"\n")
    config = PoolConfig(path=tmp_path / "burst.toml", entries=(ENTRY,), groups=(
        GroupConfig("main", credentials={"aws-main": "file:aws.creds"}),),
        services=ServiceTimers(metadata_url="http://metadata.example:8471"))
    bus = connect(settings, "test", memory=True, **service_trust(settings, "test"))
    drivers = {"f1": CloudDriver(), "f2": CloudDriver()}
    factories = {name: Factory(name, settings, config, bus, drivers={"cloud1": driver})
                 for name, driver in drivers.items()}
    frontend = Frontend("fe", config, bus)
    seen, analyses, ads = Inbox(), Inbox(), Inbox()
    for sub in factories["f1"].subscriptions() + frontend.subscriptions():
        bus.subscribe(sub)  # f1 consumes the entry's requests; f2 only advertises
    bus.subscribe(Subscription("spy", target="cloud1",
                               commands={"glidein.request": lambda m, c: seen.add(c.envelope)}))
    bus.subscribe(Subscription("ev", events={"match.analysis": lambda m, c: analyses.add(m),
                                             "entry.advertised": lambda m, c: ads.add(m)}))
    bus.start()
    yield bus, factories, drivers, frontend, seen, analyses, tmp_path, ads
    bus.stop()


def cycle(bus, factories, frontend) -> None:
    for factory in factories.values():
        factory.advertise_entries()
    bus.emit(DemandSnapshot(schedd="s1", seq=1, time=time.time(),
                            autoclusters=[AutoCluster("ac1", "alice", JOB, idle=4)]))
    bus.wait_idle()
    frontend.cycle()
    bus.wait_idle()


def test_the_credential_reaches_the_driver_sealed_to_each_factory_and_never_in_the_clear(
        pool):
    bus, factories, drivers, frontend, seen, *_ = pool
    cycle(bus, factories, frontend)
    envelope = seen.items[-1]
    assert SECRET not in envelope.body and b"planted" not in envelope.body
    boxes = msgpack.unpackb(envelope.body)["credentials"]
    assert set(boxes) == {"aws-main@f1", "aws-main@f2"}
    assert sealing.open_box(factories["f2"].box_key, boxes["aws-main@f2"],
                            "burst-credential-v1\0fe.main\0cloud1\0aws-main\0f2") == SECRET
    factories["f1"].reconcile()
    assert drivers["f1"].credentials == [SECRET]
    assert [spec.credential for spec in drivers["f1"].launched] == [SECRET, SECRET]
    assert drivers["f2"].launched == []  # it never got the request


def test_a_cloud_launch_gets_a_boot_token_bound_to_its_pilot_and_not_the_key(pool):
    bus, factories, drivers, frontend, *_ = pool
    cycle(bus, factories, frontend)
    factories["f1"].reconcile()
    spec = drivers["f1"].launched[0]
    claims = bootstrap.read(bus.verifier.pool_key, spec.boot_token)
    assert (claims.pool, claims.entry, claims.pilot_id, claims.factory, claims.group) == (
        bus.settings.namespace, "cloud1", spec.pilot_id, "f1", "fe.main")
    assert 599 < claims.expires - claims.issued <= 600
    assert spec.metadata_url == "http://metadata.example:8471"
    assert (spec.pilot_key, spec.context) == (b"", {})  # both come from the metadata service
    assert spec.boot_token not in repr(spec) and SECRET.decode() not in repr(spec)


def test_an_unreadable_reference_keeps_pilots_away_and_says_why(pool):
    bus, factories, drivers, frontend, seen, analyses, root, _ = pool
    (root / "aws.creds").unlink()
    cycle(bus, factories, frontend)
    assert seen.items[-1] and msgpack.unpackb(seen.items[-1].body)["idle_target"] == 0
    [analysis] = analyses.wait_for_item(lambda m: isinstance(m, MatchAnalysis))
    assert analysis.reasons["ac1"].startswith(
        "group main's credential for trust domain aws-main cannot be read: file:aws.creds: "
        "cannot read")


def test_a_box_for_another_entry_or_factory_does_not_open(pool):
    bus, factories, drivers, *_ = pool
    key = sealing.public_hex(factories["f1"].box_key)
    box = sealing.seal(key, SECRET, "burst-credential-v1\0fe.main\0other\0aws-main\0f1")
    factories["f1"].on_request(GlideinRequest(
        frontend="fe", group="main", entry="cloud1", idle_target=1, max_glideins=1,
        remove_excess="NO", credentials={"aws-main@f1": box}, time=time.time()), None)
    assert drivers["f1"].credentials == []


def test_entry_ads_carry_the_factorys_public_key_and_the_credential_kind(pool):
    *_, ads = pool
    factories = pool[1]
    factories["f2"].advertise_entries()
    [ad] = ads.wait_for_item(lambda m: isinstance(m, EntryAdvertised) and m.factory == "f2")
    assert (ad.credential, ad.sealing_key, ad.trust_domain) == (
        "ec2-keypair", sealing.public_hex(factories["f2"].box_key), "aws-main")


def test_a_factory_without_the_credential_yet_declares_no_pilot_lost(pool):
    bus, factories, drivers, *_ = pool
    bus.emit(PilotLaunched(pilot_id="cloud1-old", entry="cloud1", site="CloudSite",
                           factory="f1", driver="ec2", provider="aws", instance_id="i-old",
                           group="fe.main", time=time.time()))  # before a restart, say
    bus.send(GlideinRequest(frontend="fe", group="main", entry="cloud1", idle_target=1,
                            max_glideins=1, remove_excess="NO", time=time.time()), to="cloud1")
    bus.wait_idle()
    factories["f1"].reconcile()  # its driver sees no VM: it has no account to look with
    assert "cloud1-old" in factories["f1"].pilots and drivers["f1"].launched == []
