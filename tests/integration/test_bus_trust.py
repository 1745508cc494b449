"""Signatures and sealing on the real broker: what a client without the right key gets.

Every bus here is its own connection with its own identity, as processes are:
a service (the pool key), a pilot (its own key), a forger (no key, or a key of
another pool), and an eavesdropper that binds a queue of its own.
"""

from __future__ import annotations

import pika
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotLost, PilotRetire
from schemas.slot import ClaimActivate
from services.runtime import codec, security
from services.runtime.bus import Subscription, connect
from services.runtime.rabbit import blocking_connection, delete_namespace
from services.runtime.security import Signer, Verifier
from tests.helpers import Inbox, wait_until

pytestmark = pytest.mark.broker

POOL = bytes(range(32))


def report(pilot_id: str = "p1") -> JobReport:
    return JobReport(job_id="1.0", claim_id="c1", pilot_id=pilot_id, state="exited",
                     exit_code=0, stdout=b"forged?")


def activation(pilot_id: str = "p1") -> ClaimActivate:
    return ClaimActivate(claim_id="c1", pilot_id=pilot_id, schedd="schedd", job_id="1.0",
                         job_ad="[]", executable="/bin/true", arguments=[],
                         environment={"SECRET": "s3cret"}, files={}, cpus=1, memory_mb=1,
                         disk_mb=1)


@pytest.fixture
def buses(rabbit_settings):
    made, queues = [], []

    def make(*subs: Subscription, **trust):
        bus = connect(rabbit_settings, "test", **trust)
        for sub in subs:
            bus.subscribe(sub)
            queues.append(sub.queue)
        bus.start()
        made.append(bus)
        return bus

    make.settings = rabbit_settings
    yield make
    for bus in made:
        bus.stop()
    delete_namespace(rabbit_settings, queues)


def service_trust() -> dict:
    verifier = Verifier(POOL)
    return {"signer": verifier.signer_for(security.service("schedd")), "verifier": verifier}


def schedd_like(buses, inbox: Inbox):
    handlers = {"job.report": lambda m, c: inbox.add((m, c.principal))}
    return buses(Subscription("schedd.s", commands=handlers, target="s",
                              events={"pilot.lost": lambda m, c: inbox.add((m, c.principal))}),
                 **service_trust())


def dead_reasons(bus, queue: str, count: int) -> list[str]:
    found = wait_until(lambda: (lambda d: d if len(d) >= count else None)(bus.dead_letters(queue)),
                       10, f"{count} dead letters in {queue}")
    return [reason for _env, reason in found]


def test_a_pilot_signed_report_arrives_with_the_pilot_as_its_sender(buses):
    inbox = Inbox()
    schedd = schedd_like(buses, inbox)
    pilot = buses(signer=Verifier(POOL).signer_for(security.pilot("p1")))
    pilot.send(report(), to="s")
    (msg, principal), = inbox.wait_for(lambda items: len(items) == 1)
    assert msg == report() and principal == security.pilot("p1")
    assert schedd.dead_letters("schedd.s") == []


def test_unsigned_and_forged_reports_are_dead_lettered_unhandled(buses):
    inbox = Inbox()
    schedd = schedd_like(buses, inbox)
    buses().send(report(), to="s")  # no key at all
    other_pool = Verifier(bytes(32)).signer_for(security.pilot("p1"))
    buses(signer=other_pool).send(report(), to="s")  # a key, of another pool
    own_key_other_name = Signer(security.pilot("p1"), Verifier(POOL).key_for(security.pilot("p2")))
    buses(signer=own_key_other_name).send(report(), to="s")  # p2 claiming to be p1
    reasons = dead_reasons(schedd, "schedd.s", 3)
    assert sorted(r.split(":")[0] for r in reasons) == ["forged", "forged", "unauthenticated"]
    assert inbox.items == []


def test_a_pilot_may_not_send_what_only_services_send(buses):
    inbox = Inbox()
    schedd = schedd_like(buses, inbox)
    pilot = buses(signer=Verifier(POOL).signer_for(security.pilot("p1")))
    pilot.emit(PilotLost(pilot_id="p2", entry="e", reason="forged", time=0.0))
    (reason,) = dead_reasons(schedd, "schedd.s", 1)
    assert reason.startswith("refused: pilot.lost may be sent by a service, not by pilot:p1")
    assert inbox.items == []


def test_a_sealed_activation_opens_only_at_its_pilot(buses):
    inbox = Inbox()
    pilot = buses(Subscription("glidein.p1", target="p1",
                               commands={"claim.activate": lambda m, c: inbox.add(m)}),
                  signer=Verifier(POOL).signer_for(security.pilot("p1")))
    # An eavesdropper binds a queue of its own to the pilot's routing key.
    names = pilot.names
    conn = blocking_connection(buses.settings)
    ch = conn.channel()
    spy = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(spy, names.cmd, routing_key="claim.activate.v1.p1")
    schedd = buses(**service_trust())
    schedd.send(activation(), to="p1", seal_for=security.pilot("p1"))
    assert inbox.wait_for(lambda items: len(items) == 1) == [activation()]
    method, props, body = wait_until(lambda: (lambda got: got if got[0] else None)(
        ch.basic_get(spy, auto_ack=True)), 10, "the eavesdropper's copy")
    conn.close()
    assert props.content_type == codec.SEALED_CONTENT_TYPE
    assert b"s3cret" not in body and b"/bin/true" not in body


def test_a_pilot_refuses_an_activation_that_is_not_sealed_for_it(buses):
    inbox = Inbox()
    pilot = buses(Subscription("glidein.p1", target="p1",
                               commands={"claim.activate": lambda m, c: inbox.add(m)}),
                  signer=Verifier(POOL).signer_for(security.pilot("p1")))
    buses().send(activation(), to="p1")  # plain: anyone could have sent it
    buses(**service_trust()).send(activation(), to="p1", seal_for=security.pilot("p2"))
    reasons = dead_reasons(pilot, "glidein.p1", 2)
    assert sorted(r.split(":")[0] for r in reasons) == ["forged", "unauthenticated"]
    assert inbox.items == []


def test_a_tampered_body_is_dead_lettered_as_forged(buses):
    inbox = Inbox()
    schedd = schedd_like(buses, inbox)
    signer = Verifier(POOL).signer_for(security.pilot("p1"))
    env = codec.encode(report())
    headers = {**env.headers, **signer.headers(env.type, env.version, env.message_id,
                                               env.timestamp, env.body)}
    tampered = codec.encode(report()).body.replace(b"forged?", b"changed")
    conn = blocking_connection(buses.settings)
    conn.channel().basic_publish(
        schedd.names.cmd, "job.report.v1.s", tampered,
        pika.BasicProperties(type=env.type, headers=headers, message_id=env.message_id,
                             timestamp=env.timestamp, content_type=env.content_type))
    conn.close()
    (reason,) = dead_reasons(schedd, "schedd.s", 1)
    assert reason.startswith("forged: signature of pilot:p1 does not verify")
    assert inbox.items == []


def test_what_a_service_sends_a_pilot_is_sealed_to_it_without_being_asked(buses):
    inbox = Inbox()
    pilot = buses(Subscription("glidein.p1", target="p1",
                               commands={"pilot.retire": lambda m, c: inbox.add(c.principal)}),
                  signer=Verifier(POOL).signer_for(security.pilot("p1")))
    factory = buses(**service_trust())
    factory.send(PilotRetire(pilot_id="p1", reason="no longer requested"), to="p1")
    assert inbox.wait_for(lambda items: len(items) == 1) == [security.service("schedd")]
    assert pilot.dead_letters("glidein.p1") == []
