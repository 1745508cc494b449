"""The four sides of `burst bench bus` (see bench.py): a consumer and a publisher for the
runtime bus and for raw pika, each run in a process of its own by bench.py.

    BusPublisher ─▶ RabbitBus.send_many ─▶ <ns>.cmd ─▶ [<ns>.bench] ─▶ RabbitBus ─▶ BusConsumer
    RawPublisher ─▶ pika basic_publish  ─▶ <ns>.cmd ─▶ [<ns>.raw]   ─▶ pika      ─▶ RawConsumer

A consumer feeds a Tally (what arrived, and how late); a publisher publishes
`count` messages, as fast as its confirm window allows or paced, and says when
the first went out and the last was confirmed.
"""

from __future__ import annotations

import math
import random
import threading
import time
from functools import partial
from typing import Any

import msgpack
import pika
import psutil
from opentelemetry import context, trace

import schemas
from schemas.provisioning import GlideinRequest

from . import codec, tracing
from .bus import Names, Subscription
from .config import Settings
from .rabbit import RabbitBus, connection_parameters

QUEUE, RAW_QUEUE, TARGET = "bench", "raw", "bench"
BUS_KEY = f"{GlideinRequest.NAME}.v{GlideinRequest.VERSION}.{TARGET}"
RAW_KEY = f"{GlideinRequest.NAME}.v{GlideinRequest.VERSION}.raw"
PREFETCH = 1000
WINDOW = 2000  # unconfirmed messages a publisher keeps in flight
BATCH = 250  # messages per send_many (and per trace) when publishing as fast as possible
TICK_S = 0.001  # a paced publisher publishes what is due once per tick


def message(seq: int, sent: float) -> GlideinRequest:
    return GlideinRequest(frontend="frontend", group="main", entry="AWS_US_East", idle_target=12,
                          max_glideins=200, remove_excess="NO", seq=seq, time=sent)


def cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


# --- consumers ----------------------------------------------------------------------------------


class Tally:
    """What a consumer saw in one phase: fed on its I/O thread, read once `done` is set.

    arm() is called between phases, when nothing is in flight.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.arm(0)

    def arm(self, expected: int) -> None:
        self.expected, self.last = expected, 0.0
        self.seqs: list[int] = []
        self.latencies: list[float] = []
        self.done.clear()

    def record(self, seq: int, sent: float) -> None:
        now = time.time()
        self.seqs.append(seq)
        self.latencies.append(now - sent)
        if len(self.latencies) == self.expected:
            self.last = now
            self.done.set()

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {"received": len(set(self.seqs)), "last": self.last, "rss_mib": rss_mib(),
                **{f"{name}_ms": _percentile(ordered, q) * 1000
                   for name, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))}}


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class BusConsumer:
    """A service with one subscription; acks go through the bus's normal path."""

    def __init__(self, settings: Settings, tally: Tally):
        self.tally = tally
        self.bus = RabbitBus(settings, "bench-consumer")
        self.bus.subscribe(Subscription(QUEUE, commands={GlideinRequest.NAME: self._handle},
                                        target=TARGET, prefetch=PREFETCH))

    def _handle(self, msg: GlideinRequest, _ctx: Any) -> None:
        self.tally.record(msg.seq, msg.time)

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.stop()


class RawPika:
    """A SelectConnection and one channel on an I/O thread of its own."""

    def __init__(self, settings: Settings):
        self.names = Names(settings.namespace)
        self.queue = self.names.queue(RAW_QUEUE)
        self.ready = threading.Event()
        self.ch: Any = None
        self.conn = pika.SelectConnection(
            connection_parameters(settings.amqp_url),
            on_open_callback=lambda conn: conn.channel(on_open_callback=self._on_channel),
            on_close_callback=lambda _conn, _reason: self.conn.ioloop.stop())
        self.ioloop = self.conn.ioloop

    def _on_channel(self, ch: Any) -> None:
        raise NotImplementedError

    def start(self) -> None:
        threading.Thread(target=self.ioloop.start, name="raw-pika", daemon=True).start()
        if not self.ready.wait(10):
            raise RuntimeError(f"raw pika: no channel on {self.queue} within 10 s")

    def stop(self) -> None:
        self.ioloop.add_callback_threadsafe(self.conn.close)


class RawConsumer(RawPika):
    """Prefetch, and one ack with multiple=True per read (or per half prefetch)."""

    def __init__(self, settings: Settings, tally: Tally):
        super().__init__(settings)
        self.tally = tally
        self.last_tag = self.unacked = 0
        self.ack_scheduled = False

    def _on_channel(self, ch: Any) -> None:
        self.ch = ch
        consume = partial(ch.basic_consume, self.queue, self._on_message,
                          callback=lambda _f: self.ready.set())
        qos = partial(ch.basic_qos, prefetch_count=PREFETCH, callback=lambda _f: consume())
        ch.queue_declare(self.queue, durable=True, callback=lambda _f: ch.queue_bind(
            self.queue, self.names.cmd, routing_key=RAW_KEY, callback=lambda _f: qos()))

    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        # What any consumer of the bus's messages must do: the type and version say what the
        # body is (never the fields), then the body is unpacked.
        if props.type != GlideinRequest.NAME \
                or props.headers.get(codec.VERSION_HEADER) != GlideinRequest.VERSION:
            raise RuntimeError(f"raw pika: unexpected {props.type} {props.headers}")
        fields = msgpack.unpackb(body)
        self.tally.record(fields["seq"], fields["time"])
        self.last_tag = method.delivery_tag
        self.unacked += 1
        if self.unacked >= PREFETCH // 2:
            self._ack()
        elif not self.ack_scheduled:
            self.ack_scheduled = True
            self.ioloop.call_later(0, self._ack)  # after the rest of this read

    def _ack(self) -> None:
        self.ack_scheduled = False
        if self.unacked:
            self.ch.basic_ack(self.last_tag, multiple=True)
            self.unacked = 0


# --- publishers ---------------------------------------------------------------------------------


class _Publishing:
    """What both publishers share: a phase starts on the I/O thread (`_soon`), ends when the
    last message is confirmed (`finished`), and says when the first went out."""

    label = ""

    def __init__(self) -> None:
        self.count = self.sent = 0
        self.rate: float | None = None
        self.first = self.confirmed_at = 0.0
        self.finished = threading.Event()
        self.error: str | None = None

    def _soon(self, fn: Any) -> None:
        raise NotImplementedError

    def _start_phase(self, count: int) -> None:
        raise NotImplementedError

    def _fill(self) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        raise NotImplementedError

    def _begin(self, count: int, rate: float | None) -> None:
        self.count, self.rate, self.sent = count, rate, 0
        self._start_phase(count)
        self.first = time.time()
        if rate is None:
            self._fill()
        else:
            self._tick()

    def publish(self, count: int, rate: float | None) -> tuple[float, float]:
        """Publish `count` messages; (first publish, last confirm), epoch seconds."""
        self.finished.clear()
        self._soon(partial(self._begin, count, rate))
        if not self.finished.wait(60 + count / 500):
            raise RuntimeError(f"{self.label}: publishes not confirmed in time")
        if self.error:
            raise RuntimeError(self.error)
        return self.first, self.confirmed_at


class BusPublisher(_Publishing):
    """Publishes from the bus's I/O thread, as a service's handlers and timers do: send_many
    at most WINDOW messages unconfirmed; a new span (so a new traceparent travels) and
    correlation id every BATCH messages, as the raw publisher does."""

    label = "bus"

    def __init__(self, settings: Settings):
        super().__init__()
        self.bus = RabbitBus(settings, "bench-publisher")
        self.span: trace.Span | None = None
        self.batch_context = context.Context()
        self.correlation_id = ""
        self.unconfirmed = 0

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.stop()

    def _soon(self, fn: Any) -> None:
        self.bus.call_soon_threadsafe(fn)

    def _start_phase(self, count: int) -> None:
        self.unconfirmed = 0

    def _send(self, n: int) -> None:
        now = time.time()
        while n:
            if self.sent % BATCH == 0 or self.span is None:
                self._new_batch()
            size = min(n, BATCH - self.sent % BATCH)
            token = context.attach(self.batch_context)
            try:
                fut = self.bus.send_many([message(self.sent + i, now) for i in range(size)],
                                         to=TARGET, correlation_id=self.correlation_id)
            finally:
                context.detach(token)
            self.sent += size
            self.unconfirmed += size
            n -= size
            fut.add_done_callback(partial(self._on_confirmed, size))

    def _new_batch(self) -> None:
        if self.span is not None:
            self.span.end()
        self.span = tracing.tracer().start_span("bench publish")
        # One context per batch, attached around each send: the bus works out a context's
        # trace headers once (as the raw publisher makes one traceparent per batch).
        self.batch_context = trace.set_span_in_context(self.span)
        self.correlation_id = codec.new_message_id()

    def _on_confirmed(self, n: int, fut: Any) -> None:
        # Runs inside the bus's confirm handling, on its I/O thread: publish more on the next
        # loop turn (a timer: no wake-up write, as a thread-safe callback would need).
        if fut.exception() is not None:
            self.error = f"bus: {fut.exception()}"
            self.finished.set()
            return
        self.unconfirmed -= n
        if self.sent == self.count and not self.unconfirmed:
            self.confirmed_at = time.time()
            self.finished.set()
        elif self.rate is None:
            self.bus.call_later(0, self._fill)

    def _fill(self) -> None:
        while self.sent < self.count and self.unconfirmed < WINDOW:
            self._send(min(BATCH, self.count - self.sent, WINDOW - self.unconfirmed))

    def _tick(self) -> None:
        due = min(self.count, int((time.time() - self.first) * self.rate) + 1)
        if due > self.sent:
            self._send(due - self.sent)
        if self.sent < self.count:
            tick = math.floor((time.time() - self.first) / TICK_S) + 1
            self.bus.call_later(max(0.0, self.first + tick * TICK_S - time.time()), self._tick)


class RawPublisher(RawPika, _Publishing):
    """Pipelined confirms: up to WINDOW unconfirmed, more published as confirms arrive. Every
    message carries the properties the bus sends; a new trace and correlation id every BATCH."""

    label = "raw pika"

    def __init__(self, settings: Settings):
        RawPika.__init__(self, settings)
        _Publishing.__init__(self)
        self.plain = schemas.to_plain(message(0, 0.0))
        self.published = self.confirmed = 0  # channel sequence numbers, over all phases
        self.last_seq = 0
        self.headers: dict[str, Any] = {}
        self.correlation_id = ""

    def _on_channel(self, ch: Any) -> None:
        self.ch = ch
        ch.confirm_delivery(self._on_confirm, callback=lambda _f: self.ready.set())

    def _soon(self, fn: Any) -> None:
        self.ioloop.add_callback_threadsafe(fn)

    def _start_phase(self, count: int) -> None:
        self.last_seq = self.published + count

    def _publish(self, n: int) -> None:
        for _ in range(n):
            if self.sent % BATCH == 0 or not self.correlation_id:
                self._new_batch()
            self.plain["seq"], self.plain["time"] = self.sent, time.time()
            props = pika.BasicProperties(
                content_type=codec.CONTENT_TYPE, type=GlideinRequest.NAME,
                message_id=f"{random.getrandbits(128):032x}", correlation_id=self.correlation_id,
                timestamp=int(time.time()), delivery_mode=pika.DeliveryMode.Persistent,
                headers=self.headers)
            self.ch.basic_publish(self.names.cmd, RAW_KEY, msgpack.packb(self.plain), props)
            self.sent += 1
        self.published += n

    def _new_batch(self) -> None:
        trace_id, span_id = random.getrandbits(128), random.getrandbits(64)
        self.headers = {codec.VERSION_HEADER: GlideinRequest.VERSION,
                        "traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}
        self.correlation_id = f"{random.getrandbits(128):032x}"

    def _fill(self) -> None:
        self._publish(min(WINDOW - (self.published - self.confirmed), self.count - self.sent))

    def _tick(self) -> None:
        due = min(self.count, int((time.time() - self.first) * self.rate) + 1)
        self._publish(due - self.sent)
        if self.sent < self.count:
            tick = math.floor((time.time() - self.first) / TICK_S) + 1
            self.ioloop.call_later(max(0.0, self.first + tick * TICK_S - time.time()), self._tick)

    def _on_confirm(self, frame: Any) -> None:
        if isinstance(frame.method, pika.spec.Basic.Nack):
            self.error = f"raw pika: publish {frame.method.delivery_tag} nacked"
        # One queue: the broker confirms in order, so the highest tag is all we need.
        self.confirmed = max(self.confirmed, frame.method.delivery_tag)
        if self.rate is None and self.sent < self.count:
            self._fill()
        if self.confirmed >= self.last_seq or self.error:
            self.confirmed_at = time.time()
            self.finished.set()
