"""RabbitMQ-only behaviour of the bus: exclusive queues, durability across reconnects."""

from __future__ import annotations

import pytest

from schemas.job import JobAction
from services.runtime.bus import QueueInUse, Subscription, connect
from services.runtime.rabbit import delete_namespace
from tests.helpers import Inbox


def _started(settings, service: str, *subs: Subscription):
    bus = connect(settings, service)
    for sub in subs:
        bus.subscribe(sub)
    bus.start()
    return bus


def test_a_second_consumer_of_an_exclusive_queue_refuses_to_start(rabbit_settings):
    sub = Subscription("solo", commands={"job.action": lambda m, c: None}, exclusive=True)
    first = _started(rabbit_settings, "first", sub)
    second = connect(rabbit_settings, "second")
    second.subscribe(sub)
    try:
        with pytest.raises(QueueInUse):
            second.start()
    finally:
        first.stop()
        delete_namespace(rabbit_settings, ["solo"])


def test_commands_sent_while_the_consumer_is_down_wait_in_its_queue(rabbit_settings):
    inbox = Inbox()
    sub = Subscription("later", commands={"job.action": lambda m, c: inbox.add(m.ids)})
    _started(rabbit_settings, "consumer", sub).stop()
    sender = _started(rabbit_settings, "sender")
    try:
        sender.send(JobAction(action="hold", ids=["1"]))
        sender.send(JobAction(action="hold", ids=["2"]))
        again = _started(rabbit_settings, "consumer", sub)
        assert inbox.wait_for(lambda items: len(items) == 2) == [["1"], ["2"]]
        again.stop()
    finally:
        sender.stop()
        delete_namespace(rabbit_settings, ["later"])


def test_a_consumer_reconnects_after_losing_its_connection(rabbit_settings):
    inbox = Inbox()
    sub = Subscription("phoenix", commands={"job.action": lambda m, c: inbox.add(m.ids)})
    consumer = _started(rabbit_settings, "consumer", sub)
    sender = _started(rabbit_settings, "sender")
    try:
        sender.send(JobAction(action="hold", ids=["before"]))
        inbox.wait_for(lambda box: len(box) == 1, what="the first message")
        consumer.call_soon_threadsafe(lambda: consumer._conn.close())  # the link drops
        sender.send(JobAction(action="hold", ids=["after"]))
        assert inbox.wait_for(lambda box: len(box) == 2, timeout=20,
                              what="a message after reconnecting") == [["before"], ["after"]]
    finally:
        consumer.stop()
        sender.stop()
        delete_namespace(rabbit_settings, ["phoenix"])
