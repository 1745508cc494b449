"""Dead-letter queues that are full: the broker refused a dead letter, which is dropped.

    consumer bus ──publish to <queue>.dlq──▶ broker: queue full (x-overflow reject-publish), nack
        └──deadletter.overflowed──▶ burst.events ──▶ burst events, web, operators

Every dead-letter queue is bounded (length, bytes, age: services/runtime/rabbit.py and
the broker policy in deploy/rabbitmq), so a flood of bad messages cannot fill the broker;
what no longer fits is dropped with this event, never in silence.
"""

from __future__ import annotations

from ._base import ClassVar, message


@message
class DeadLetterOverflowed:
    NAME: ClassVar[str] = "deadletter.overflowed"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service", "pilot")  # any consumer's bus
    queue: str  # the dead-letter queue that is full
    schema: str  # the dropped message's type, as its AMQP type said
    message_id: str
    reason: str  # why it was dead-lettered in the first place
    time: float = 0.0
