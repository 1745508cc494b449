"""The RabbitMQ bus (pika): one connection and one channel on one I/O thread.

    caller threads ──emit/send/call──▶ add_callback_threadsafe ─┐
                                                                 ▼
    broker ──deliveries──▶ [I/O thread: SelectConnection] ──▶ handlers, timers
                                   │   ▲
                  basic_publish ───┘   └─── confirms (pipelined, multiple=True)

Why this shape: publisher confirms waited one by one give ~1.4k msg/s on this
kind of machine, pipelined ones over 20k. So every publish is pipelined, and
an incoming message is acked (in batches, multiple=True) only once everything
its handler published has been confirmed: nothing is lost if we crash between
the two, and a redelivery reruns the idempotent handler.

Declarations are done with a short blocking connection before consuming, on
every (re)connect, so a broker restart that lost non-durable state converges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

import schemas
from schemas.deadletter import DeadLetterOverflowed

from . import codec, metrics, tracing
from .bus import (
    BrokerUnavailable,
    Bus,
    Names,
    QueueInUse,
    RpcTimeout,
    Subscription,
    command_key,
    sealed_target,
)
from .codec import Envelope
from .config import Settings

log = logging.getLogger("burst.rabbit")

REPLY_TO = "amq.rabbitmq.reply-to"
ACCESS_REFUSED = 403
DEADLINE_HEADER = "x-burst-deadline"  # epoch milliseconds; AMQP tables have no floats
EVENT_LOG_MAX_AGE = "7D"
CLOCK_SLACK_S = 2  # publishers' clocks may differ this much (their AMQP timestamps)
EVENT_LOG_MAX_BYTES = 2 * 1024**3
PERSISTENT = pika.DeliveryMode.Persistent.value
PRECONDITION_FAILED = 406
# Every dead-letter queue is bounded; a dead letter that does not fit is refused by the
# broker (a nack), dropped, and told as a deadletter.overflowed event. A queue declared
# before these existed keeps its arguments (changing them fails): the broker policy of
# deploy/rabbitmq/definitions.json bounds it the same way.
DEAD_LETTER_ARGUMENTS = {"x-max-length": 100_000, "x-max-length-bytes": 1024**3,
                         "x-message-ttl": 7 * 86400 * 1000, "x-overflow": "reject-publish"}


def connection_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = 60
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 60
    return params


def blocking_connection(settings: Settings) -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(connection_parameters(settings.amqp_url))
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerUnavailable(settings.safe_url, _describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


class RabbitBus(Bus):
    def __init__(self, settings: Settings, service: str, **trust: Any):
        super().__init__(settings, service, **trust)
        self._params = connection_parameters(settings.amqp_url)
        self._ioloop = IOLoop()
        self._thread: threading.Thread | None = None
        self._io_ident: int | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._start_error: BaseException | None = None
        self._conn: pika.SelectConnection | None = None
        self._ch: Any = None
        self._reconnect_delay = 0.5
        self._early_timers: list[tuple[float, Callable[[], Any]]] = []
        self._published: dict[str, metrics.PublishedCount] = {}  # by exchange
        self._reset_publish_state()

    def _reset_publish_state(self) -> None:
        self._seq = 0
        self._confirmed_upto = 0
        self._confirmed_ahead: set[int] = set()
        self._nacked: set[int] = set()
        self._waiters: deque[tuple[int, Future]] = deque()
        self._pending_in: deque[tuple[int, int, int]] = deque()  # (first, last seq, tag)
        self._release_scheduled = False
        self._rpc: dict[str, Future] = {}
        self._dead_letters: dict[int, tuple[str, Envelope, str]] = {}  # seq -> (dlq, env, why)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        declare_topology(self.settings, self.subscriptions)
        self._thread = threading.Thread(target=self._run, name=f"bus-{self.service}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise BrokerUnavailable(self.settings.safe_url, "no channel within the timeout")
        if isinstance(self._start_error, QueueInUse):
            self.stop()
            raise self._start_error
        if self._start_error is not None:
            raise BrokerUnavailable(self.settings.safe_url, _describe(self._start_error))

    def stop(self) -> None:
        if self._thread is None or self._stopping:
            return
        self._stopping = True
        self._ioloop.add_callback_threadsafe(self._shutdown)
        self._thread.join(timeout=10)

    def _shutdown(self) -> None:
        if self._conn is not None and self._conn.is_open:
            self._conn.close()
        else:
            self._ioloop.stop()

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        for delay, fn in self._early_timers:
            self._ioloop.call_later(delay, self._guarded(fn))
        self._connect()
        self._ioloop.start()

    def _connect(self) -> None:
        self._conn = pika.SelectConnection(
            self._params,
            on_open_callback=lambda conn: conn.channel(on_open_callback=self._on_channel_open),
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    def _on_open_error(self, _conn: Any, exc: BaseException) -> None:
        if not self._ready.is_set() and self._start_error is None and self._reconnect_delay <= 1:
            log.warning("event=connect_failed url=%s reason=%r", self.settings.safe_url, str(exc))
        self._schedule_reconnect(exc)

    def _on_connection_closed(self, _conn: Any, reason: BaseException) -> None:
        self._ch = None
        self._fail_inflight(BrokerUnavailable(self.settings.safe_url, _describe(reason)))
        if self._stopping:
            self._ioloop.stop()
            return
        log.warning("event=connection_lost url=%s reason=%r", self.settings.safe_url, str(reason))
        self._schedule_reconnect(reason)

    def _schedule_reconnect(self, reason: BaseException) -> None:
        if self._stopping:
            self._ioloop.stop()
            return
        delay, self._reconnect_delay = self._reconnect_delay, min(self._reconnect_delay * 2, 15.0)
        self._ioloop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        metrics.RECONNECTS.inc()
        try:
            declare_topology(self.settings, self.subscriptions)
        except BrokerUnavailable as exc:
            self._schedule_reconnect(exc)
            return
        self._connect()

    def _fail_inflight(self, exc: BaseException) -> None:
        for _seq, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        for fut in self._rpc.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reset_publish_state()  # unacked deliveries are redelivered by the broker

    def _on_channel_open(self, channel: Any) -> None:
        self._ch = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=lambda _f: self._on_confirm_mode())

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        refused = getattr(reason, "reply_code", None) == ACCESS_REFUSED
        if refused and not self._ready.is_set():
            # An exclusive queue (e.g. a schedd's) already has its consumer: don't compete.
            self._start_error = QueueInUse(str(reason))
            self._stopping = True
            self._ready.set()
        elif not self._stopping:
            log.warning("event=channel_closed reason=%r", str(reason))
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    def _on_confirm_mode(self) -> None:
        prefetch = max([s.prefetch for s in self.subscriptions], default=100)
        self._ch.basic_qos(prefetch_count=prefetch, callback=lambda _f: self._start_consuming())

    def _start_consuming(self) -> None:
        for sub in self.subscriptions:
            queue = self.names.queue(sub.queue)
            self._ch.basic_consume(queue, partial(self._on_message, sub, queue),
                                   exclusive=sub.exclusive)
        # pika holds back synchronous methods while one is pending, but not publishes: wait
        # for the last ConsumeOk, or an early call() would publish before its reply consumer.
        self._ch.basic_consume(REPLY_TO, self._on_reply, auto_ack=True,
                               callback=lambda _frame: self._on_consuming())

    def _on_consuming(self) -> None:
        self._reconnect_delay = 0.5
        self._ready.set()
        log.info("event=bus_ready service=%s queues=%s", self.service,
                 [s.queue for s in self.subscriptions])

    # --- consuming -------------------------------------------------------------------------

    def _on_message(self, sub: Subscription, queue: str, _ch: Any, method: Any, props: Any,
                    body: bytes) -> None:
        env = _envelope_from(method, props, body)
        first_seq = self._seq
        deadline = env.headers.get(DEADLINE_HEADER)
        if isinstance(deadline, int) and deadline < time.time() * 1000:
            log.info("event=rpc_expired queue=%s type=%s", queue, env.type)
        else:
            outcome, reply = self._dispatch(sub, queue, env)
            if reply is not None and env.reply_to:
                # In the caller's trace: the handler's context is gone by now.
                trace_headers = {key: env.headers[key] for key in tracing.HEADERS
                                 if key in env.headers}
                reply_env = codec.encode(reply, correlation_id=env.message_id,
                                         headers=trace_headers)
                self._basic_publish("", env.reply_to, reply_env)
            if outcome.action == "retry":
                headers = {**env.headers, "x-retry-count": outcome.retry_count}
                self._basic_publish("", self.names.retry(queue), env, headers=headers,
                                    expiration=str(int(outcome.delay_s * 1000)))
            elif outcome.action == "dead":
                dlq = self.names.dlq(queue)
                seq = self._basic_publish("", dlq, env,
                                          headers=self._dead_headers(env, queue, outcome.reason))
                self._dead_letters[seq] = (dlq, env, outcome.reason)
        self._pending_in.append((first_seq, self._seq, method.delivery_tag))
        self._schedule_release()

    def _on_reply(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        fut = self._rpc.pop(props.correlation_id or "", None)
        if fut is None or fut.done():
            return
        try:
            fut.set_result(codec.decode(_envelope_from(None, props, body)))
        except codec.Undecodable as exc:
            fut.set_exception(exc)

    # --- publishing ---------------------------------------------------------------------------

    def _basic_publish(self, exchange: str, routing_key: str, env: Envelope, *,
                       headers: dict | None = None, expiration: str | None = None) -> int:
        ch = self._ch
        if ch is None or not ch.is_open:
            raise BrokerUnavailable(self.settings.safe_url, "not connected")
        ch.basic_publish(exchange, routing_key, env.body, pika.BasicProperties(
            content_type=env.content_type, type=env.type, message_id=env.message_id,
            correlation_id=env.correlation_id, timestamp=env.timestamp,
            headers=env.headers if headers is None else headers,
            delivery_mode=PERSISTENT, reply_to=env.reply_to, expiration=expiration,
        ))
        self._seq += 1  # the channel numbers every publish in confirm mode, replies too
        count = self._published.get(exchange)
        if count is None:
            count = self._published[exchange] = metrics.PublishedCount(exchange)
        count.count += 1
        return self._seq

    def _publish(self, exchange: str, routing_key: str, env: Envelope) -> None:
        if threading.get_ident() == self._io_ident:
            self._basic_publish(exchange, routing_key, env)
            return
        self._await(self._publish_async([(exchange, routing_key, env)]))

    def _publish_async(self, items: list[tuple[str, str, Envelope]]) -> Future:
        """Publish from any thread; the future resolves when the last one is confirmed."""
        fut: Future = Future()

        def publish() -> None:
            try:
                for exchange, key, env in items:
                    self._basic_publish(exchange, key, env)
                self._waiters.append((self._seq, fut))
                self._release()
            except Exception as exc:
                fut.set_exception(exc)

        self._call_on_io(publish)
        return fut

    def emit_many(self, events: list[Any], *, correlation_id: str | None = None) -> Future:
        """Publish many events at once (pipelined); the future resolves on the last confirm."""
        envs = [self._envelope(e, correlation_id, None) for e in events]
        return self._publish_async([(self.names.events, env.routing_key, env) for env in envs])

    def send_many(self, commands: list[Any], to: str | None = None, *,
                  message_ids: list[str] | None = None,
                  correlation_id: str | None = None) -> Future:
        """Send many commands at once (pipelined); the future resolves on the last confirm.
        `message_ids`: resend under the ids of a first attempt (the pilot's outbox)."""
        ids = message_ids or [None] * len(commands)
        envs = [(self.names.cmd, command_key(c, to),
                 self._envelope(c, correlation_id, message_id, seal_for=sealed_target(c, to)))
                for c, message_id in zip(commands, ids, strict=True)]
        return self._publish_async(envs)

    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *,
                    type: str | None = None, headers: dict | None = None,
                    content_type: str = codec.CONTENT_TYPE) -> None:
        env = codec.raw_envelope(body, type=type, headers=headers, content_type=content_type)
        self._await(self._publish_async([(exchange, routing_key, env)]))

    def flush(self, timeout: float = 10.0) -> None:
        self._await(self._publish_async([]), timeout)

    def call(self, command: Any, to: str | None = None, *, timeout: float = 10.0) -> Any:
        deadline_ms = int((time.time() + timeout) * 1000)
        headers = {DEADLINE_HEADER: deadline_ms, **tracing.current_headers()}
        env = self._envelope(command, None, None, headers=headers, reply_to=REPLY_TO)
        fut: Future = Future()

        def publish() -> None:
            self._rpc[env.message_id] = fut
            try:
                self._basic_publish(self.names.cmd, command_key(command, to), env)
            except Exception as exc:
                self._rpc.pop(env.message_id, None)
                fut.set_exception(exc)

        self._call_on_io(publish)
        try:
            return self._unwrap_reply(fut.result(timeout))
        except FutureTimeout:
            self._call_on_io(lambda: self._rpc.pop(env.message_id, None))
            target = f" {to}" if to else ""
            raise RpcTimeout(f"no answer to {command.NAME} from{target or ' any service'} "
                             f"within {timeout:g}s") from None

    def _await(self, fut: Future, timeout: float = 30.0) -> Any:
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise BrokerUnavailable(self.settings.safe_url, "publish not confirmed") from None

    def _call_on_io(self, fn: Callable[[], Any]) -> None:
        if not self._ready.is_set():
            raise BrokerUnavailable(self.settings.safe_url, "bus not started")
        if threading.get_ident() == self._io_ident:
            fn()
        else:
            self._ioloop.add_callback_threadsafe(fn)

    # --- confirms and acks ------------------------------------------------------------------

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        if isinstance(method, pika.spec.Basic.Nack):
            first = self._confirmed_upto + 1 if multiple else tag
            nacked = range(first, tag + 1)
            # A full dead-letter queue refuses: the message is dropped (acked), and told.
            self._nacked.update(seq for seq in nacked if seq not in self._dead_letters)
            for seq in [seq for seq in nacked if seq in self._dead_letters]:
                self._dead_letter_overflowed(*self._dead_letters.pop(seq))
        if multiple:
            self._confirmed_upto = max(self._confirmed_upto, tag)
        else:
            self._confirmed_ahead.add(tag)
        while self._confirmed_upto + 1 in self._confirmed_ahead:
            self._confirmed_upto += 1
            self._confirmed_ahead.discard(self._confirmed_upto)
        if self._dead_letters:
            for seq in [seq for seq in self._dead_letters if seq <= self._confirmed_upto]:
                del self._dead_letters[seq]
        self._release()

    def _dead_letter_overflowed(self, dlq: str, env: Envelope, reason: str) -> None:
        log.error("event=dead_letter_dropped queue=%s type=%s message_id=%s reason=%r", dlq,
                  env.type, env.message_id, reason)
        event = DeadLetterOverflowed(queue=dlq, schema=env.type, message_id=env.message_id,
                                     reason=reason[:1000], time=time.time())
        try:
            self._basic_publish(self.names.events, schemas.routing_key(event),
                                self._envelope(event, None, None))
        except Exception:  # the log line above is all that is left
            log.exception("event=dead_letter_overflow_not_told queue=%s", dlq)

    def _schedule_release(self) -> None:
        # Deliveries that arrive in one read are acked together on the next loop turn. A timer,
        # not add_callback: that one writes to the loop's wake-up socket, two syscalls per read.
        if not self._release_scheduled:
            self._release_scheduled = True
            self._ioloop.call_later(0, self._release)

    def _release(self) -> None:
        self._release_scheduled = False
        if self._ch is None or not self._ch.is_open:
            return
        upto, ack_tag, pending = self._confirmed_upto, None, self._pending_in
        if not self._nacked:  # the usual case: ack everything released, up to the last tag
            while pending and pending[0][1] <= upto:
                ack_tag = pending.popleft()[2]
        while pending and pending[0][1] <= upto:
            first, last, tag = pending.popleft()
            if any(seq in self._nacked for seq in range(first + 1, last + 1)):
                if ack_tag is not None:
                    self._ch.basic_ack(ack_tag, multiple=True)
                    ack_tag = None
                self._ch.basic_nack(tag, requeue=True)
            else:
                ack_tag = tag
        if ack_tag is not None:
            self._ch.basic_ack(ack_tag, multiple=True)
        while self._waiters and self._waiters[0][0] <= upto:
            seq, fut = self._waiters.popleft()
            if not fut.done():
                if seq in self._nacked:
                    fut.set_exception(BrokerUnavailable(self.settings.safe_url, "publish nacked"))
                else:
                    fut.set_result(seq)
        if self._nacked and not self._pending_in and not self._waiters:
            self._nacked.clear()

    # --- timers ---------------------------------------------------------------------------

    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> None:
        if self._thread is None:
            self._early_timers.append((delay_s, fn))
        elif threading.get_ident() == self._io_ident:
            self._ioloop.call_later(delay_s, self._guarded(fn))
        else:
            self._ioloop.add_callback_threadsafe(
                lambda: self._ioloop.call_later(delay_s, self._guarded(fn)))

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        self._ioloop.add_callback_threadsafe(self._guarded(fn))

    @staticmethod
    def _guarded(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("event=callback_failed fn=%s", getattr(fn, "__name__", fn))

        return run

    # --- inspection -------------------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[tuple[Envelope, str]]:
        dlq = self.names.dlq(self.names.queue(queue))
        conn = blocking_connection(self.settings)
        try:
            ch = conn.channel()
            found = []
            while True:
                method, props, body = ch.basic_get(dlq, auto_ack=False)
                if method is None:
                    break
                env = _envelope_from(method, props, body)
                found.append((env, _text(env.headers.get("x-burst-error", ""))))
            return found
        finally:
            conn.close()  # unacked messages go back to the dead-letter queue

    def history(self, since: float | None = None, follow: bool = False,
                idle_timeout: float = 1.0) -> Iterator[Envelope]:
        yield from read_event_log(self.settings, since=since, follow=follow,
                                  idle_timeout=idle_timeout)


def read_event_log(settings: Settings, *, since: float | None = None, follow: bool = False,
                   idle_timeout: float = 1.0) -> Iterator[Envelope]:
    """Events from the stream queue, oldest first. Unless following, it stops at what was
    published by the time it was called (a busy pool is never idle for long: waiting for
    a quiet moment could take forever), or when the stream is idle."""
    until = None if follow else int(time.time()) + CLOCK_SLACK_S
    since = None if since is None else int(since)  # AMQP timestamps are whole seconds
    conn = blocking_connection(settings)
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=500)
        offset: Any = "first"
        if since is not None:
            offset = datetime.fromtimestamp(since, tz=UTC)
        stream = f"{settings.namespace}.events.log"
        ch.queue_declare(stream, durable=True, arguments=_stream_arguments())
        unacked = 0
        for method, props, body in ch.consume(stream, arguments={"x-stream-offset": offset},
                                              inactivity_timeout=idle_timeout):
            if method is None:
                if follow:
                    continue
                break
            env = _envelope_from(method, props, body)
            if until is not None and env.timestamp > until:
                break
            unacked += 1
            if unacked >= 250:
                ch.basic_ack(method.delivery_tag, multiple=True)
                unacked = 0
            if since is None or env.timestamp >= since:
                yield env
    finally:
        try:
            conn.close()
        except pika.exceptions.AMQPError:
            pass


def _stream_arguments() -> dict[str, Any]:
    return {"x-queue-type": "stream", "x-max-age": EVENT_LOG_MAX_AGE,
            "x-max-length-bytes": EVENT_LOG_MAX_BYTES}


def declare_topology(settings: Settings, subscriptions: list[Subscription]) -> None:
    """Every exchange, queue and binding of the namespace; idempotent."""
    names = Names(settings.namespace)
    conn = blocking_connection(settings)
    try:
        ch = conn.channel()
        ch.exchange_declare(names.unroutable, "fanout", durable=True)
        ch.queue_declare(names.unroutable, durable=True)
        ch.queue_bind(names.unroutable, names.unroutable)
        ch.exchange_declare(names.cmd, "direct", durable=True,
                            arguments={"alternate-exchange": names.unroutable})
        ch.exchange_declare(names.events, "topic", durable=True)
        ch.queue_declare(names.event_log, durable=True, arguments=_stream_arguments())
        ch.queue_bind(names.event_log, names.events, routing_key="#")
        for sub in subscriptions:
            _declare_subscription(ch, names, sub)
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(settings.safe_url, _describe(exc)) from None
    finally:
        if conn.is_open:
            conn.close()


def _declare_subscription(ch: Any, names: Names, sub: Subscription) -> None:
    queue = names.queue(sub.queue)
    expiry = {"x-expires": int(sub.expires_s * 1000)} if sub.expires_s else {}
    _declare_dead_letter_queue(ch, names.dlq(queue), {**DEAD_LETTER_ARGUMENTS, **expiry})
    ch.queue_declare(names.retry(queue), durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue, **expiry})
    ch.queue_declare(queue, durable=True, arguments=sub.queue_arguments(queue))
    for key in sub.command_keys():
        ch.queue_bind(queue, names.cmd, routing_key=key)
    for pattern in sub.event_patterns():
        ch.queue_bind(queue, names.events, routing_key=pattern)


def _declare_dead_letter_queue(ch: Any, dlq: str, arguments: dict[str, Any]) -> None:
    """Bounded; one declared before the bounds existed is kept as it is (the broker refuses a
    change of arguments) and left to the broker policy, on a channel of its own, as the
    refusal closes the channel."""
    probe = ch.connection.channel()
    try:
        probe.queue_declare(dlq, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        log.warning("event=dead_letter_queue_unbounded queue=%s reason=%r: it was declared "
                    "before dead-letter queues had limits; apply the policy of "
                    "deploy/rabbitmq/definitions.json, or delete it when empty", dlq,
                    exc.reply_text)
        return
    probe.close()


def _envelope_from(method: Any, props: Any, body: bytes) -> Envelope:
    headers = props.headers or {}  # pika decodes a new dict per message: ours to keep
    version = headers.get(codec.VERSION_HEADER, 0)
    return Envelope(
        type=props.type or "",
        version=version if isinstance(version, int) else 0,
        body=body,
        message_id=props.message_id or "",
        correlation_id=props.correlation_id,
        timestamp=props.timestamp or 0,
        headers=headers,
        content_type=props.content_type or "",
        routing_key=getattr(method, "routing_key", "") if method is not None else "",
        reply_to=props.reply_to,
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def delete_namespace(settings: Settings, queues: list[str]) -> None:
    """Remove a namespace's exchanges and the given queues (tests, `burst` resets)."""
    names = Names(settings.namespace)
    conn = blocking_connection(settings)
    try:
        ch = conn.channel()
        for queue in queues:
            full = names.queue(queue)
            for name in (full, names.dlq(full), names.retry(full)):
                ch.queue_delete(name)
        for name in (names.event_log, names.unroutable):
            ch.queue_delete(name)
        for exchange in (names.cmd, names.events, names.unroutable):
            ch.exchange_delete(exchange)
    finally:
        if conn.is_open:
            conn.close()


def broker_answers(settings: Settings) -> bool:
    try:
        blocking_connection(settings).close()
    except BrokerUnavailable:
        return False
    return True
