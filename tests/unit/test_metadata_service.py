"""The metadata service over real HTTP (a free port) on the in-memory bus: a boot token is
exchanged once for the pilot's context and key, sealed to the key the pilot sent; reused,
expired, forged, foreign and misplaced tokens are refused with one line and an event; a
restarted service still refuses a used token. And the glidein's side: a VM whose user data
holds only a token boots into the full context, through the cloud's metadata endpoint."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest

from schemas.pilot import PilotLaunched
from schemas.token import TokenRefused
from services.cloud.imds import Metadata, MetadataService
from services.cloudspec.profiles import PROFILES
from services.glidein.cloudcontext import exchange
from services.glidein.context import ContextError, load
from services.metadata.handlers import MetadataBroker
from services.metadata.server import BootHandler, MetadataServer
from services.metadata.store import BootStore
from services.runtime import bootstrap, sealing, security
from services.runtime.bus import Subscription, connect
from services.runtime.config import EntryConfig, GroupConfig, PoolConfig, ServiceTimers
from services.runtime.service import service_trust
from tests.helpers import Inbox

ENTRY = EntryConfig(name="emb-one", site="OpenNebula-Embedded", driver="ec2",
                    provider="opennebula", endpoint="embedded", cpus=2, memory_mb=1024,
                    attributes={"HasDocker": False})
BROKER_URL = "amqp://pilot:pilot-password@broker.example:5672/%2F"


class Broker:
    """The service as `burst service metadata` runs it, with a clock tests can move."""

    def __init__(self, settings, tmp_path):
        self.settings, self.now = settings, time.time()
        self.broker_file = tmp_path / "pilot-broker.url"  # a password stays out of the TOML
        self.broker_file.write_text(BROKER_URL + "\n")
        self.pool = PoolConfig(path=tmp_path / "x.toml", entries=(ENTRY,),
                               groups=(GroupConfig("main"),),
                               services=ServiceTimers(pilot_amqp_url="file:pilot-broker.url"))
        self.trust = service_trust(settings, "metadata")
        self.bus = connect(settings, "metadata", memory=True, **self.trust)
        self.refused = Inbox()
        self.start()

    def start(self) -> None:
        self.server = MetadataServer(("127.0.0.1", 0), BootHandler)
        self.service = MetadataBroker(self.settings, self.pool, self.bus, self.server,
                                      clock=lambda: self.now)
        if not self.bus.subscriptions:
            for sub in self.service.subscriptions():
                self.bus.subscribe(sub)
            self.bus.subscribe(Subscription("watch", events={
                "token.refused": lambda m, c: self.refused.add(m)}))
            self.bus.start()
        self.url = bootstrap.metadata_url(self.settings, ServiceTimers())

    def restart(self) -> None:
        self.service.stopping()
        self.start()

    def token(self, pilot_id="emb-one-p1", pool=None, key=None, entry="emb-one") -> str:
        return bootstrap.issue(key or self.trust["verifier"].pool_key,
                               pool=pool or self.settings.namespace, entry=entry,
                               pilot_id=pilot_id, factory="factory", group="fe.main",
                               idle_lifetime_s=45.0, lifetime_s=600.0, clock=lambda: self.now)

    def post(self, body: dict) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}/v1/boot", data=json.dumps(body).encode(),
                                         method="POST")
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture
def broker(settings, tmp_path):
    made = Broker(settings, tmp_path)
    yield made
    made.service.stopping()
    made.bus.stop()


def test_a_token_buys_the_context_and_the_pilot_key_once(broker):
    token = broker.token()
    context = exchange(broker.url, token, "i-one")
    key = broker.trust["verifier"].key_for(security.pilot("emb-one-p1"))
    assert context["BURST_PILOT_KEY"] == key.hex()
    assert (context["BURST_PILOT_ID"], context["BURST_ENTRY"], context["BURST_SITE"],
            context["BURST_CPUS"], context["BURST_IDLE_TIMEOUT_S"], context["AMQP_URL"],
            context["BURST_NAMESPACE"], context["BURST_GROUP"]) == (
        "emb-one-p1", "emb-one", "OpenNebula-Embedded", "2", "45.0", BROKER_URL,
        broker.settings.namespace, "fe.main")
    with pytest.raises(ContextError, match=r"HTTP 403: refused: token already used$"):
        exchange(broker.url, token, "i-one")
    [event] = broker.refused.wait_for_item(lambda e: isinstance(e, TokenRefused))
    assert (event.pilot_id, event.entry, event.reason, event.instance_id) == (
        "emb-one-p1", "emb-one", "token already used", "i-one")
    assert token not in json.dumps(vars(event))


def test_the_answer_is_sealed_to_the_key_the_caller_sent(broker):
    token = broker.token()
    mine = sealing.generate()
    status, body = broker.post({"token": token, "instance_id": "i-one",
                                "public_key": sealing.public_hex(mine)})
    assert status == 200 and b"BURST" not in body and b"pilot-password" not in body
    box = base64.b64decode(json.loads(body)["sealed"])
    with pytest.raises(security.AuthError):
        sealing.open_box(sealing.generate(), box, bootstrap.digest(token))
    assert json.loads(sealing.open_box(mine, box, bootstrap.digest(token)))["AMQP_URL"] == \
        BROKER_URL


@pytest.mark.parametrize(("make", "reason"), [
    (lambda b: b.token(key=bytes(32)), "forged token: its signature does not verify"),
    (lambda b: b.token(pool="another-pool"), "token of another pool"),
    (lambda b: b.token(entry="no-such-entry"),
     "token for an entry this pool does not have (no-such-entry)"),
    (lambda b: "burst-boot-v1.not-a-token", "malformed token"),
])
def test_forged_foreign_and_malformed_tokens_are_refused(broker, make, reason):
    status, body = broker.post({"token": make(broker), "instance_id": "i-x",
                                "public_key": sealing.public_hex(sealing.generate())})
    assert (status, body.decode()) == (403, f"refused: {reason}\n")
    broker.refused.wait_for_item(lambda e: e.reason == reason)


def test_an_expired_token_is_refused(broker):
    token = broker.token()
    broker.now += 601.0
    with pytest.raises(ContextError, match="refused: token expired 1 s ago"):
        exchange(broker.url, token, "i-one")


def test_only_the_instance_launched_with_the_token_may_use_it(broker):
    token = broker.token()
    broker.bus.emit(PilotLaunched(pilot_id="emb-one-p1", entry="emb-one", site="S",
                                  factory="factory", driver="ec2", provider="opennebula",
                                  instance_id="i-launched", time=broker.now))
    broker.bus.wait_idle()
    with pytest.raises(ContextError, match="does not match the instance launched"):
        exchange(broker.url, token, "i-thief")
    assert exchange(broker.url, token, "i-launched")["BURST_PILOT_ID"] == "emb-one-p1"


def test_a_restarted_service_still_refuses_a_used_token(broker):
    token = broker.token()
    exchange(broker.url, token, "i-one")
    broker.restart()  # a new server, store and port: the same SQLite file
    with pytest.raises(ContextError, match="token already used"):
        exchange(broker.url, token, "i-one")


def test_requests_that_are_no_boot_request_spend_nothing(broker):
    token = broker.token()
    assert broker.post({"token": token})[0] == 400
    status, body = broker.post({"token": token, "instance_id": "i", "public_key": "00"})
    assert (status, body) == (400, b"public_key: not a public key (64 hex digits expected)\n")
    assert exchange(broker.url, token, "i")["BURST_PILOT_ID"] == "emb-one-p1"


def test_a_broker_url_that_cannot_be_read_is_a_503_and_spends_nothing(broker):
    token = broker.token()
    broker.broker_file.unlink()
    with pytest.raises(ContextError, match="HTTP 503: the pilots' broker URL is unavailable"):
        exchange(broker.url, token, "i", patience_s=0.0)
    broker.broker_file.write_text(BROKER_URL)
    assert exchange(broker.url, token, "i")["AMQP_URL"] == BROKER_URL


def test_two_exchanges_of_one_token_race_and_exactly_one_wins(tmp_path):
    claims = bootstrap.read(b"k" * 32, bootstrap.issue(
        b"k" * 32, pool="p", entry="e", pilot_id="p1", factory="f", group="g"))
    one, two = BootStore(tmp_path / "b.sqlite"), BootStore(tmp_path / "b.sqlite")
    assert [one.consume(claims, "i", 1.0), two.consume(claims, "i", 1.0)] == [True, False]
    assert one.purge(claims.expires + 86401.0) == 1  # long expired: its row may go


def test_a_vm_with_only_a_token_in_its_user_data_boots_into_its_context(broker):
    imds = MetadataService()
    imds.start()
    try:
        user_data = json.dumps({"BURST_BOOT_TOKEN": broker.token(),
                                "BURST_METADATA_URL": broker.url}).encode()
        imds.publish(Metadata("i-vm", PROFILES["eucalyptus"], user_data,
                              {"instance-id": "i-vm", "instance-type": "m1.small"}, {}))
        ctx = load(env={"BURST_IMDS_ENDPOINT": imds.base_url("i-vm")})
        assert (ctx.pilot_id, ctx.site, ctx.cpus, ctx.amqp_url, ctx.instance_id,
                ctx.instance_type, ctx.source, ctx.attributes) == (
            "emb-one-p1", "OpenNebula-Embedded", 2, BROKER_URL, "i-vm", "m1.small",
            "imds-v1", {"HasDocker": False})
        assert ctx.key_hex == broker.trust["verifier"].key_for(
            security.pilot("emb-one-p1")).hex()
        with pytest.raises(ContextError, match="token already used"):  # a second boot
            load(env={"BURST_IMDS_ENDPOINT": imds.base_url("i-vm")})
    finally:
        imds.stop()


def test_no_metadata_service_is_one_clear_line():
    with pytest.raises(ContextError, match=r"^metadata service http://127.0.0.1:9: no answer"):
        exchange("http://127.0.0.1:9", "burst-boot-v1.a.b", "i", patience_s=0.0)
