"""The bus contract: RabbitBus and InMemoryBus must behave the same way.

Each test runs twice, on the real broker and on the in-memory bus, and waits
for what it expects with a deadline (never a fixed sleep).
"""

from __future__ import annotations

import threading
import time

import msgpack
import pytest

import schemas
from schemas.job import JobAction, JobActionResult, JobQuery, RpcError
from schemas.pilot import PilotRetire
from schemas.provisioning import GlideinRequest
from services.runtime import codec, tracing
from services.runtime.ackpolicy import PermanentError, RetryPolicy, TransientError
from services.runtime.bus import RemoteError, Subscription, connect
from services.runtime.codec import VERSION_HEADER
from tests.helpers import Inbox, wait_until

FAST_RETRY = RetryPolicy(max_retries=2, first_delay_s=0.05, max_delay_s=0.1)


@pytest.fixture(params=["memory", "rabbit"])
def make_bus(request, tmp_path):
    from tests.conftest import fresh_settings

    settings = fresh_settings(tmp_path)
    if request.param == "rabbit":
        settings = request.getfixturevalue("rabbit_settings")
    buses = []

    def make(*subs: Subscription, service: str = "test"):
        bus = connect(settings, service, memory=request.param == "memory")
        if request.param == "memory" and buses:
            bus = buses[0]  # one in-memory "broker" per test
            for sub in subs:
                bus.subscribe(sub)
            bus.start()
            return bus
        for sub in subs:
            bus.subscribe(sub)
        bus.start()
        buses.append(bus)
        return bus

    make.kind = request.param
    make.settings = settings
    yield make
    queues = []
    for bus in buses:
        queues += [s.queue for s in bus.subscriptions]
        bus.stop()
    if request.param == "rabbit":
        from services.runtime.rabbit import delete_namespace

        delete_namespace(settings, queues)


def test_command_reaches_its_handler_unchanged(make_bus):
    inbox = Inbox()
    bus = make_bus(Subscription("svc", commands={"job.action": lambda m, c: inbox.add(m)}))
    sent = JobAction(action="hold", ids=["3.1", "4"], reason="because")
    bus.send(sent)
    assert inbox.wait_for(lambda items: len(items) == 1) == [sent]


def test_every_subscriber_gets_its_own_copy_of_an_event(make_bus):
    first, second = Inbox(), Inbox()
    bus = make_bus(
        Subscription("one", events={"glidein.request": lambda m, c: first.add(m)}),
        Subscription("two", events={"glidein.request": lambda m, c: second.add(m)}),
    )
    bus.emit(GlideinRequest("fe", "main", "e1", 3, 10, "NO"))
    first.wait_for(lambda items: len(items) == 1)
    second.wait_for(lambda items: len(items) == 1)


def test_command_addressed_to_one_target_reaches_only_it(make_bus):
    got_a, got_b = Inbox(), Inbox()
    bus = make_bus(
        Subscription("pa", commands={"pilot.retire": lambda m, c: got_a.add(m)}, target="a"),
        Subscription("pb", commands={"pilot.retire": lambda m, c: got_b.add(m)}, target="b"),
    )
    bus.send(PilotRetire(pilot_id="b", reason="test"), to="b")
    bus.send(PilotRetire(pilot_id="a", reason="test"), to="a")
    assert [m.pilot_id for m in got_a.wait_for(lambda items: len(items) == 1)] == ["a"]
    assert [m.pilot_id for m in got_b.wait_for(lambda items: len(items) == 1)] == ["b"]


def test_rpc_returns_the_handlers_reply(make_bus):
    def answer(msg: JobAction, ctx):
        return JobActionResult(changed=msg.ids)

    bus = make_bus(Subscription("schedd", commands={"job.action": answer}))
    reply = bus.call(JobAction(action="remove", ids=["7.0"]), timeout=10)
    assert reply == JobActionResult(changed=["7.0"])


def test_rpc_permanent_error_comes_back_as_remote_error(make_bus):
    def refuse(msg, ctx):
        raise PermanentError("cluster 9 does not exist")

    bus = make_bus(Subscription("schedd", commands={"job.query": refuse}))
    with pytest.raises(RemoteError, match="cluster 9 does not exist"):
        bus.call(JobQuery(ids=["9"]), timeout=10)
    assert "cluster 9 does not exist" in bus.dead_letters("schedd")[0][1]


def test_undecodable_body_is_dead_lettered_and_consumer_keeps_going(make_bus):
    inbox = Inbox()
    bus = make_bus(Subscription("svc", commands={"job.action": lambda m, c: inbox.add(m)}))
    names = bus.names
    bus.publish_raw(names.cmd, "job.action.v1", b"\xc1 not msgpack", type="job.action",
                    headers={VERSION_HEADER: 1})
    bus.publish_raw(names.cmd, "job.action.v1", msgpack.packb({"action": 5}), type="job.action",
                    headers={VERSION_HEADER: 1})
    bus.send(JobAction(action="release", ids=["1"]))
    inbox.wait_for(lambda items: len(items) == 1)
    dead = wait_until(lambda: len(bus.dead_letters("svc")) == 2 and bus.dead_letters("svc"),
                      what="two dead letters")
    reasons = sorted(reason for _env, reason in dead)
    assert "not msgpack" in reasons[1] or "not msgpack" in reasons[0]
    assert any("job.action v1: action: Expected `str`, got `int`" in r for r in reasons)


def test_unknown_version_is_dead_lettered_not_acked(make_bus):
    inbox = Inbox()
    bus = make_bus(Subscription("svc", events={"glidein.request": lambda m, c: inbox.add(m)}))
    body = msgpack.packb(schemas.to_plain(GlideinRequest("fe", "g", "e", 1, 1, "NO")))
    bus.publish_raw(bus.names.events, "glidein.request.v9", body, type="glidein.request",
                    headers={VERSION_HEADER: 9})
    dead = wait_until(lambda: bus.dead_letters("svc"), what="a dead letter")
    assert "unknown schema glidein.request v9" in dead[0][1]
    assert inbox.items == []


def test_old_version_is_upgraded_before_the_handler_sees_it(make_bus):
    inbox = Inbox()
    bus = make_bus(Subscription("svc", events={"glidein.request": lambda m, c: inbox.add(m)}))
    v1 = {"frontend": "fe", "group": "g", "entry": "e", "idle_target": 2,
          "max_glideins": 5, "remove_excess": True}
    bus.publish_raw(bus.names.events, "glidein.request.v1", msgpack.packb(v1),
                    type="glidein.request", headers={VERSION_HEADER: 1})
    (msg,) = inbox.wait_for(lambda items: len(items) == 1)
    assert isinstance(msg, GlideinRequest) and msg.remove_excess == "IDLE"


def test_transient_failure_is_retried_with_a_counter(make_bus):
    attempts = Inbox()

    def flaky(msg, ctx):
        attempts.add(ctx.envelope.headers.get("x-retry-count", 0))
        if len(attempts.items) < 2:
            raise TransientError("database busy")

    bus = make_bus(Subscription("svc", commands={"job.action": flaky}, retry=FAST_RETRY))
    bus.send(JobAction(action="hold", ids=["1"]))
    assert attempts.wait_for(lambda items: len(items) == 2) == [0, 1]
    assert bus.dead_letters("svc") == []


@pytest.mark.parametrize(("error", "reason", "calls"), [
    (PermanentError("no such job"), "no such job", 1),  # straight to the dead-letter queue
    (RuntimeError("bug"), "gave up after 2 retries", 3),  # transient: retried, then dead
], ids=["permanent", "keeps-failing"])
def test_a_failing_message_ends_in_the_dead_letter_queue(make_bus, error, reason, calls):
    handled = Inbox()

    def failing(msg, ctx):
        handled.add(msg)
        raise error

    bus = make_bus(Subscription("svc", commands={"job.action": failing}, retry=FAST_RETRY))
    bus.send(JobAction(action="hold", ids=["1"]))
    dead = wait_until(lambda: bus.dead_letters("svc"), what="a dead letter")
    assert reason in dead[0][1]
    assert len(handled.items) == calls


@pytest.mark.parametrize("error", [ValueError("'abc' is not a job id"),
                                   OverflowError("int too large to store")])
def test_bad_input_a_handler_trips_on_is_dead_lettered_at_once(make_bus, error):
    calls = Inbox()

    def trips(msg, ctx):
        calls.add(msg)
        raise error

    bus = make_bus(Subscription("svc", commands={"job.action": trips}, retry=FAST_RETRY))
    bus.send(JobAction(action="hold", ids=["abc"]))
    dead = wait_until(lambda: bus.dead_letters("svc"), what="a dead letter")
    assert str(error) in dead[0][1] and "gave up" not in dead[0][1]
    assert len(calls.items) == 1


def test_traceparent_travels_with_the_message(make_bus):
    seen = Inbox()
    bus = make_bus(Subscription("svc", commands={
        "job.action": lambda m, c: seen.add(c.envelope.headers.get("traceparent"))}))
    with tracing.tracer().start_as_current_span("submit") as span:
        bus.send(JobAction(action="hold", ids=["1"]))
        trace_id = format(span.get_span_context().trace_id, "032x")
    (traceparent,) = seen.wait_for(lambda items: len(items) == 1)
    assert traceparent and traceparent.split("-")[1] == trace_id


def test_handler_publishes_carry_ids_derived_from_the_handled_message(make_bus):
    out = Inbox()

    def relay(msg, ctx):
        for _ in range(2):
            ctx.emit(GlideinRequest("fe", "g", msg.ids[0], 1, 1, "NO"))
        if msg.action == "hold" and ctx.envelope.headers.get("x-retry-count", 0) == 0:
            raise TransientError("fails after publishing: the retry runs the handler again")

    bus = make_bus(Subscription("relay", commands={"job.action": relay}, retry=FAST_RETRY),
                   Subscription("sink", events={"glidein.request": lambda m, c: out.add(
                       (m.entry, c.message_id, c.correlation_id))}))
    rerun, once = codec.new_message_id(), codec.new_message_id()
    bus.send(JobAction(action="hold", ids=["rerun"]), correlation_id="flow-1", message_id=rerun)
    bus.send(JobAction(action="release", ids=["once"]), message_id=once)
    items = out.wait_for(lambda items: len(items) == 6, what="two events per handler run")

    ids = {"rerun": [], "once": []}
    for parent, message_id, correlation_id in items:
        ids[parent].append(message_id)
        assert correlation_id == ("flow-1" if parent == "rerun" else None)
    derived = codec.derived_message_id
    assert sorted(ids["rerun"]) == sorted([derived(rerun, 1), derived(rerun, 2)] * 2)
    assert sorted(ids["once"]) == sorted([derived(once, 1), derived(once, 2)])
    assert len(set(ids["rerun"]) | set(ids["once"])) == 4


def test_command_nobody_consumes_is_kept_as_unroutable(make_bus):
    bus = make_bus(Subscription("svc", commands={"job.action": lambda m, c: None}))
    bus.send(PilotRetire(pilot_id="gone", reason="test"), to="gone")
    if make_bus.kind == "memory":
        wait_until(lambda: bus.unroutable(), what="an unroutable message")
    else:
        from services.runtime.rabbit import blocking_connection

        def count() -> int:
            conn = blocking_connection(make_bus.settings)
            try:
                return conn.channel().queue_declare(bus.names.unroutable,
                                                    passive=True).method.message_count
            finally:
                conn.close()

        wait_until(lambda: count() == 1, what="one unroutable message")


def test_events_are_kept_in_the_history(make_bus):
    bus = make_bus(Subscription("svc", commands={"job.action": lambda m, c: None}))
    before = time.time() - 1
    bus.emit(GlideinRequest("fe", "g", "first", 1, 1, "NO"))
    bus.emit(GlideinRequest("fe", "g", "second", 1, 1, "NO"))
    bus.flush()
    entries = [schemas.from_plain(e.type, e.headers[VERSION_HEADER], msgpack.unpackb(e.body)).entry
               for e in bus.history(since=before)]
    assert entries == ["first", "second"]


def test_timers_run_on_the_handler_thread(make_bus):
    threads = Inbox()
    bus = make_bus(Subscription("svc", commands={
        "job.action": lambda m, c: threads.add(("handler", threading.get_ident()))}))
    bus.call_later(0.01, lambda: threads.add(("timer", threading.get_ident())))
    bus.send(JobAction(action="hold", ids=["1"]))
    items = threads.wait_for(lambda items: len(items) == 2)
    assert len({ident for _kind, ident in items}) == 1


def test_rpc_error_reply_schema_is_registered():
    assert schemas.lookup("rpc.error", 1) is RpcError


def test_send_many_resolves_on_confirm_and_keeps_the_given_message_ids(make_bus):
    """What the pilot's outbox relies on: a future per batch, and a resend under the same id."""
    inbox = Inbox()
    bus = make_bus(Subscription("svc", target="t1", commands={
        "pilot.retire": lambda m, c: inbox.add((c.message_id, m))}))
    orders = [PilotRetire(pilot_id="p1", reason="a"), PilotRetire(pilot_id="p1", reason="b")]
    ids = ["a" * 32, "b" * 32]
    bus.send_many(orders, to="t1", message_ids=ids).result(timeout=10)
    bus.send_many(orders[:1], to="t1", message_ids=ids[:1]).result(timeout=10)
    seen = inbox.wait_for(lambda items: len(items) == 3, what="three deliveries")
    assert sorted(seen, key=lambda s: s[1].reason) == [
        (ids[0], orders[0]), (ids[0], orders[0]), (ids[1], orders[1])]
