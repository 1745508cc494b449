"""Dead-letter queues on the real broker: bounded when declared, left alone when declared before
the bounds existed, and a dead letter that no longer fits is dropped with an event."""

from __future__ import annotations

import pika
import pytest

from schemas.deadletter import DeadLetterOverflowed
from schemas.job import JobAction
from services.runtime.ackpolicy import PermanentError
from services.runtime.bus import Subscription, connect
from services.runtime.rabbit import DEAD_LETTER_ARGUMENTS, blocking_connection, delete_namespace
from tests.helpers import Inbox, wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def broker(rabbit_settings):
    made, queues = [], []

    def bus(*subs: Subscription):
        made.append(connect(rabbit_settings, "test"))
        for sub in subs:
            made[-1].subscribe(sub)
            queues.append(sub.queue)
        made[-1].start()
        return made[-1]

    bus.settings = rabbit_settings
    yield bus
    for each in made:
        each.stop()
    delete_namespace(rabbit_settings, queues + ["watch"])


def declare(settings, queue: str, arguments: dict) -> str | None:
    """Declare `queue` with `arguments`; None if the broker took it, else its refusal."""
    conn = blocking_connection(settings)
    try:
        conn.channel().queue_declare(queue, durable=True, arguments=arguments)
        return None
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_text
    finally:
        conn.close()


def refusing(calls: Inbox):
    def handler(msg, ctx):
        calls.add(msg)
        raise PermanentError("never handled")

    return handler


def test_a_new_dead_letter_queue_is_bounded(broker):
    broker(Subscription("svc", commands={"job.action": refusing(Inbox())}))
    dlq = f"{broker.settings.namespace}.svc.dlq"
    assert declare(broker.settings, dlq, DEAD_LETTER_ARGUMENTS) is None  # the same arguments
    assert "PRECONDITION_FAILED" in declare(broker.settings, dlq, {})  # it has them


def test_a_full_dead_letter_queue_drops_with_an_event_and_the_consumer_goes_on(broker):
    namespace = broker.settings.namespace
    # A dead-letter queue declared earlier, with other arguments (here: room for one): the bus
    # starts anyway and keeps it.
    assert declare(broker.settings, f"{namespace}.full.dlq",
                   {"x-max-length": 1, "x-overflow": "reject-publish"}) is None
    assert declare(broker.settings, f"{namespace}.plain.dlq", {}) is None
    calls, told = Inbox(), Inbox()
    broker(Subscription("plain", commands={"job.query": refusing(Inbox())}))
    bus = broker(Subscription("full", commands={"job.action": refusing(calls)}))
    broker(Subscription("watch", events={"deadletter.overflowed": lambda m, c: told.add(m)}))
    for i in range(3):
        bus.send(JobAction(action="hold", ids=[str(i)]))
    overflowed = told.wait_for(lambda inbox: len(inbox) == 2, what="two overflow events")
    assert all(isinstance(e, DeadLetterOverflowed) and e.queue == f"{namespace}.full.dlq"
               and e.schema == "job.action" and e.reason.endswith("never handled")
               for e in overflowed)
    (kept,) = wait_until(lambda: bus.dead_letters("full"), what="the dead letter that fit")
    assert kept[1].endswith("never handled")
    assert len(calls) == 3  # each handled once: a refused dead letter is not redelivered
