"""The bus: one interface, two implementations (RabbitMQ and in-memory).

Two exchanges per namespace (``<ns>`` = BURST_NAMESPACE, default ``burst``):

    <ns>.cmd     direct   commands; key NAME.vN, or NAME.vN.<target> when
                          addressed to one instance (a schedd, a pilot)
    <ns>.events  topic    the event stream; key NAME.vN

    send(cmd, to="schedd") ──▶ <ns>.cmd ──job.submit.v1.schedd──▶ [<ns>.schedd.schedd] ──▶ handler
    emit(event) ──▶ <ns>.events ──job.completed.v1──┬──▶ [<ns>.web]       (each service queue
                                                    ├──▶ [<ns>.frontend]   gets its own copy)
                                                    └──▶ [<ns>.events.log] (stream: history)

Commands that no queue is bound for (a dead pilot, an unknown version) go to
the alternate exchange and wait in ``<ns>.unroutable``; events of versions a
consumer does not know still reach it (it binds NAME.*) and are dead-lettered.

Handlers are ``fn(message, ctx) -> reply | None``. They run one at a time on
the bus's I/O thread, so a service needs no locks around its own state. A
handler's incoming message is acked only after everything it published is
confirmed; the ack policy (ackpolicy.py) decides retry or dead-letter on
failure.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import schemas

from . import ackpolicy, codec, metrics, security, tracing
from .ackpolicy import RetryPolicy
from .codec import Envelope, Undecodable
from .config import Settings
from .security import AuthError, Principal, Signer, Verifier

log = logging.getLogger("burst.bus")

Handler = Callable[[Any, "Context"], Any]


class BrokerUnavailable(ConnectionError):
    """The broker did not answer; str() is the one line a user sees."""

    def __init__(self, url: str, detail: str = ""):
        self.url = url
        super().__init__(
            f"cannot reach the RabbitMQ broker at {url}"
            + (f" ({detail})" if detail else "")
            + "; start one (rabbitmq-server -detached) or set AMQP_URL"
        )


class QueueInUse(RuntimeError):
    """An exclusive queue already has its consumer: another instance is running."""


class RpcTimeout(TimeoutError):
    pass


class RemoteError(RuntimeError):
    """The service answered an RPC with rpc.error."""


@dataclass(frozen=True)
class Names:
    namespace: str

    # Read on every publish: each made once (cached_property writes the instance's __dict__,
    # which a frozen dataclass allows).
    @cached_property
    def cmd(self) -> str:
        return f"{self.namespace}.cmd"

    @cached_property
    def events(self) -> str:
        return f"{self.namespace}.events"

    @cached_property
    def unroutable(self) -> str:
        return f"{self.namespace}.unroutable"

    @cached_property
    def event_log(self) -> str:
        return f"{self.namespace}.events.log"

    def queue(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    @staticmethod
    def dlq(queue: str) -> str:
        return f"{queue}.dlq"

    @staticmethod
    def retry(queue: str) -> str:
        return f"{queue}.retry"


def command_key(msg_or_cls: Any, to: str | None = None) -> str:
    key = schemas.routing_key(msg_or_cls)
    return f"{key}.{to}" if to else key


@dataclass(frozen=True)
class Subscription:
    """A queue, what it is bound to and who handles what arrives on it.

    `commands` are bound on the cmd exchange for every known version of each
    schema (addressed to `target` when set); `events` are bound on the events
    exchange as NAME.* so that unknown versions arrive and are dead-lettered.
    """

    queue: str  # without the namespace
    commands: Mapping[str, Handler] = field(default_factory=dict)
    events: Mapping[str, Handler] = field(default_factory=dict)
    target: str | None = None
    prefetch: int = 200
    expires_s: float | None = None  # delete the queue after this long without consumers
    single_active_consumer: bool = False
    exclusive: bool = False  # one consumer only: a second instance fails to start
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def handler_for(self, schema_name: str) -> Handler | None:
        return self.commands.get(schema_name) or self.events.get(schema_name)

    def command_keys(self) -> list[str]:
        keys = []
        for name in self.commands:
            for version in _versions(name):
                key = f"{name}.v{version}"
                keys.append(f"{key}.{self.target}" if self.target else key)
        return keys

    def event_patterns(self) -> list[str]:
        return [f"{name}.*" for name in self.events]

    def queue_arguments(self, full_name: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": Names.dlq(full_name),
        }
        if self.expires_s:
            args["x-expires"] = int(self.expires_s * 1000)
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        return args


def _versions(name: str) -> list[int]:
    return [v for v in range(1, schemas.latest_version(name) + 1) if _known(name, v)]


def _known(name: str, version: int) -> bool:
    try:
        schemas.lookup(name, version)
    except schemas.SchemaError:
        return False
    return True


class Context:
    """What a handler gets besides the message: the envelope and publishing.

    Messages published through the context get ids derived from the handled
    message's id, so a redelivery that reruns the handler republishes the same
    ids (see codec.derived_message_id).
    """

    __slots__ = ("bus", "envelope", "queue", "principal", "_published")  # one per message

    def __init__(self, bus: Bus, envelope: Envelope, queue: str,
                 principal: Principal | None = None):
        self.bus = bus
        self.envelope = envelope
        self.queue = queue
        # Who sent it, as its signature proves (security.py); security.UNCHECKED on a bus
        # that checks nothing (unit tests), None when unsigned.
        self.principal = principal
        self._published = 0

    @property
    def message_id(self) -> str:
        return self.envelope.message_id

    def from_pilot(self, pilot_id: str, *, or_service: bool = False) -> bool:
        """Whether the message was signed by that pilot (or, if allowed, by a service): a
        pilot speaks only for itself. A refusal is logged here, once for every handler."""
        principal = self.principal
        if principal is not None and (principal.is_pilot(pilot_id)
                                      or (or_service and principal.is_service)):
            return True
        log.warning("event=refused_pilot_message type=%s pilot=%s principal=%s",
                    self.envelope.type, pilot_id, principal)
        return False

    @property
    def correlation_id(self) -> str | None:
        return self.envelope.correlation_id

    def _next_id(self) -> str:
        self._published += 1
        return codec.derived_message_id(self.envelope.message_id, self._published)

    def emit(self, event: Any, *, correlation_id: str | None = None) -> None:
        self.bus.emit(event, correlation_id=correlation_id or self.correlation_id,
                      message_id=self._next_id())

    def send(self, command: Any, to: str | None = None, *,
             correlation_id: str | None = None, seal_for: Principal | None = None) -> None:
        self.bus.send(command, to, correlation_id=correlation_id or self.correlation_id,
                      message_id=self._next_id(), seal_for=seal_for)


class Bus(abc.ABC):
    """Publishing, consuming, RPC and timers; see the module docstring.

    Trust (security.py): a bus with a `signer` signs everything it publishes as that
    principal; a bus with a `verifier` (services: the pool key) checks every signature it
    receives. A bus with either enforces each schema's SENDERS (the principal kinds that may
    send it): a message from anyone else is dead-lettered at once, as is a forged one. A bus
    with neither (unit tests) checks nothing and hands handlers security.UNCHECKED.
    """

    def __init__(self, settings: Settings, service: str, *, signer: Signer | None = None,
                 verifier: Verifier | None = None):
        self.settings = settings
        self.service = service
        self.names = Names(settings.namespace)
        self.subscriptions: list[Subscription] = []
        self.signer = signer
        self.verifier = verifier
        self._handled_metrics: dict[tuple[str, str], metrics.HandledMetrics] = {}
        tracing.setup(service)

    @property
    def enforcing(self) -> bool:
        return self.signer is not None or self.verifier is not None

    # --- wiring -----------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        """Declare a queue and consume it; call before start()."""
        self.subscriptions.append(subscription)

    @abc.abstractmethod
    def start(self, timeout: float = 10.0) -> None:
        """Connect, declare everything, start consuming; raise BrokerUnavailable."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    # --- publishing (any thread) -------------------------------------------------------------

    def emit(self, event: Any, *, correlation_id: str | None = None,
             message_id: str | None = None) -> None:
        env = self._envelope(event, correlation_id, message_id)
        self._publish(self.names.events, env.routing_key, env)

    def send(self, command: Any, to: str | None = None, *, correlation_id: str | None = None,
             message_id: str | None = None, seal_for: Principal | None = None) -> None:
        """Send a command; `seal_for` encrypts its body to that pilot (security.py). A schema
        marked SEALED (what services send a pilot) is always sealed to its target pilot."""
        env = self._envelope(command, correlation_id, message_id,
                             seal_for=seal_for or sealed_target(command, to))
        self._publish(self.names.cmd, command_key(command, to), env)

    @abc.abstractmethod
    def send_many(self, commands: list[Any], to: str | None = None, *,
                  message_ids: list[str] | None = None) -> Future:
        """Send commands without waiting (any thread, the I/O thread too); the future
        resolves when the last is confirmed, or fails (BrokerUnavailable). `message_ids`
        (one per command) republish under an earlier attempt's ids: consumers dedupe."""

    @abc.abstractmethod
    def call(self, command: Any, to: str | None = None, *, timeout: float = 10.0) -> Any:
        """Send a command and wait for its reply; raise RpcTimeout or RemoteError."""

    @abc.abstractmethod
    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *,
                    type: str | None = None, headers: dict | None = None,
                    content_type: str = codec.CONTENT_TYPE) -> None:
        """Publish bytes as they are (tests, bad-message drills)."""

    @abc.abstractmethod
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything published so far is confirmed."""

    # --- timers (run on the I/O thread) ---------------------------------------------------------

    @abc.abstractmethod
    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> None: ...

    def call_every(self, interval_s: float, fn: Callable[[], Any],
                   first_delay_s: float = 0.0) -> None:
        def tick() -> None:
            try:
                fn()
            except Exception:
                log.exception("event=timer_failed fn=%s", getattr(fn, "__name__", fn))
            self.call_later(interval_s, tick)

        self.call_later(first_delay_s, tick)

    @abc.abstractmethod
    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        """Run fn on the I/O thread (from any thread)."""

    # --- inspection ------------------------------------------------------------------------

    @abc.abstractmethod
    def dead_letters(self, queue: str) -> list[tuple[Envelope, str]]:
        """Messages in a queue's dead-letter queue, with their reasons (not removed)."""

    @abc.abstractmethod
    def history(self, since: float | None = None, follow: bool = False,
                idle_timeout: float = 1.0) -> Iterator[Envelope]:
        """Events from the event log, oldest first, from `since` (epoch seconds)."""

    # --- shared by implementations -----------------------------------------------------------

    @abc.abstractmethod
    def _publish(self, exchange: str, routing_key: str, env: Envelope) -> None: ...

    def _envelope(self, msg: Any, correlation_id: str | None, message_id: str | None, *,
                  headers: dict | None = None, reply_to: str | None = None,
                  seal_for: Principal | None = None) -> Envelope:
        env = codec.encode(msg, message_id=message_id, correlation_id=correlation_id,
                           headers=tracing.current_headers() if headers is None else headers,
                           reply_to=reply_to)
        if not self.enforcing:
            return env  # a bus that holds no key (unit tests) neither signs nor seals
        return self._secured(env, seal_for)

    def _secured(self, env: Envelope, seal_for: Principal | None) -> Envelope:
        """Seal the body to `seal_for` (if given), then sign it as this bus's principal."""
        body, content_type, extra = env.body, env.content_type, {}
        if seal_for is not None:
            body = security.seal(self._key_of(seal_for), body, _aad(env))
            content_type = codec.SEALED_CONTENT_TYPE
            extra[security.SEALED_FOR_HEADER] = str(seal_for)
        if self.signer is not None:
            extra.update(self.signer.headers(env.type, env.version, env.message_id,
                                             env.timestamp, body))
        return Envelope(type=env.type, version=env.version, body=body,
                        message_id=env.message_id, correlation_id=env.correlation_id,
                        timestamp=env.timestamp, headers={**env.headers, **extra},
                        content_type=content_type, routing_key=env.routing_key,
                        reply_to=env.reply_to)

    def _key_of(self, principal: Principal) -> bytes:
        if self.verifier is not None:
            return self.verifier.key_for(principal)
        if self.signer is not None and self.signer.principal == principal:
            return self.signer.key
        raise AuthError(f"this process holds no key to seal for {principal}")

    def _authenticate(self, env: Envelope) -> tuple[Principal | None, Envelope]:
        """Who sent `env`, and the envelope with its body opened if it was sealed."""
        principal = None
        if self.verifier is not None:
            principal = self.verifier.verify(env.headers, env.type, env.version,
                                             env.message_id, env.timestamp, env.body)
        if env.content_type == codec.SEALED_CONTENT_TYPE:
            env = self._opened(env)
            if principal is None:
                # Only the pool's services and this pilot hold the key it opened with.
                principal = _claimed_service(env.headers)
        elif not self.enforcing:
            principal = security.UNCHECKED
        return principal, env

    def _opened(self, env: Envelope) -> Envelope:
        sealed_for = env.headers.get(security.SEALED_FOR_HEADER)
        if isinstance(sealed_for, bytes):
            sealed_for = sealed_for.decode(errors="replace")
        if not isinstance(sealed_for, str):
            raise AuthError("sealed body names no recipient")
        body = security.open_sealed(self._key_of(Principal.parse(sealed_for)), env.body,
                                    _aad(env))
        return Envelope(type=env.type, version=env.version, body=body,
                        message_id=env.message_id, correlation_id=env.correlation_id,
                        timestamp=env.timestamp, headers=env.headers,
                        content_type=codec.CONTENT_TYPE, routing_key=env.routing_key,
                        reply_to=env.reply_to)

    def replayed(self, env: Envelope) -> tuple[Any, Context] | None:
        """A message read back from the event log, with a Context as a handler would get it;
        None when it is forged, undecodable or from a sender its schema refuses (logged)."""
        try:
            principal, env = self._authenticate(env)
            msg = codec.decode(env)
        except (AuthError, Undecodable) as exc:
            log.warning("event=replay_skipped type=%s reason=%r", env.type, str(exc))
            return None
        refusal = self._refusal(msg, principal)
        if refusal:
            log.warning("event=replay_skipped type=%s reason=%r", env.type, refusal)
            return None
        return msg, Context(self, env, self.names.event_log, principal)

    def _refusal(self, msg: Any, principal: Principal | None) -> str | None:
        """Why a message may not be accepted from its sender (SENDERS of its schema)."""
        senders = getattr(type(msg), "SENDERS", ())
        if not senders or not self.enforcing or principal is security.UNCHECKED:
            return None
        if principal is None:
            return f"unauthenticated: {msg.NAME} must be signed by a {' or '.join(senders)}"
        if principal.kind not in senders:
            return (f"refused: {msg.NAME} may be sent by a {' or '.join(senders)}, "
                    f"not by {principal}")
        return None

    def _dispatch(self, sub: Subscription, queue: str, env: Envelope) -> tuple[ackpolicy.Outcome,
                                                                               Any]:
        """Decode and handle one message; return what the ack policy says, and any reply."""
        started = time.perf_counter()
        try:
            principal, env = self._authenticate(env)
        except AuthError as exc:
            metrics.DEAD_LETTERED.labels(queue=queue, schema=env.type or "?").inc()
            log.warning("event=forged queue=%s type=%s reason=%r", queue, env.type, str(exc))
            return self._dead(env, f"forged: {exc}")
        try:
            msg = codec.decode(env)
        except Undecodable as exc:
            metrics.DEAD_LETTERED.labels(queue=queue, schema=env.type or "?").inc()
            log.warning("event=undecodable queue=%s type=%s reason=%r", queue, env.type, str(exc))
            return self._dead(env, f"undecodable: {exc}")
        refusal = self._refusal(msg, principal)
        if refusal:
            metrics.DEAD_LETTERED.labels(queue=queue, schema=msg.NAME).inc()
            log.warning("event=refused queue=%s type=%s principal=%s reason=%r", queue,
                        msg.NAME, principal, refusal)
            return self._dead(env, refusal)
        handler = sub.handler_for(msg.NAME)
        if handler is None:
            return self._dead(env, f"no handler for {msg.NAME} on {queue}")
        ctx = Context(self, env, queue, principal)
        attributes = None
        if tracing.recording():  # span attributes, only when a span will carry them
            attributes = {"messaging.destination": queue, "messaging.message_id": env.message_id,
                          "burst.attempt": ackpolicy.retry_count_of(env.headers)}
        with tracing.consuming(msg.NAME, env.headers, attributes) as span:
            try:
                reply = handler(msg, ctx)
            except Exception as exc:
                attempt = ackpolicy.retry_count_of(env.headers)
                outcome = ackpolicy.after_failure(exc, attempt, sub.retry)
                span.record_exception(exc)
                log.warning("event=handler_failed queue=%s schema=%s action=%s reason=%r",
                            queue, msg.NAME, outcome.action, outcome.reason,
                            exc_info=outcome.action == "dead")
                counter = metrics.DEAD_LETTERED if outcome.action == "dead" else metrics.RETRIED
                counter.labels(queue=queue, schema=msg.NAME).inc()
                if outcome.action == "dead":
                    return self._dead(env, outcome.reason)
                return outcome, None
        self._handled(queue, msg.NAME).observe(time.perf_counter() - started)
        return ackpolicy.ACK, reply

    def _handled(self, queue: str, schema: str) -> metrics.HandledMetrics:
        # Per bus: counted without a lock by the one thread that runs its handlers.
        children = self._handled_metrics.get((queue, schema))
        if children is None:
            children = self._handled_metrics[queue, schema] = metrics.HandledMetrics(queue, schema)
        return children

    @staticmethod
    def _dead(env: Envelope, reason: str) -> tuple[ackpolicy.Outcome, Any]:
        """Dead-letter; an RPC caller gets the reason instead of waiting for a timeout."""
        reply = schemas.job.RpcError(message=reason) if env.reply_to else None
        return ackpolicy.Outcome("dead", reason), reply

    @staticmethod
    def _dead_headers(env: Envelope, queue: str, reason: str) -> dict:
        return {**env.headers, ackpolicy.ERROR_HEADER: reason[:1000],
                ackpolicy.QUEUE_HEADER: queue, ackpolicy.ROUTING_KEY_HEADER: env.routing_key}

    @staticmethod
    def _unwrap_reply(reply: Any) -> Any:
        if isinstance(reply, schemas.job.RpcError):
            raise RemoteError(reply.message)
        return reply


def sealed_target(command: Any, to: str | None) -> Principal | None:
    """The pilot a SEALED command sent `to` it is sealed for (None for other commands)."""
    if to is not None and getattr(command, "SEALED", False):
        return security.pilot(to)
    return None


def _aad(env: Envelope) -> str:
    # Bound to the sealed body: it cannot be replayed under another schema or message id.
    return f"{env.type}/v{env.version}/{env.message_id}"


def _claimed_service(headers: dict) -> Principal:
    """The service a sealed message names as its sender (only services can seal)."""
    claimed = headers.get(security.PRINCIPAL_HEADER)
    try:
        principal = Principal.parse(claimed) if claimed is not None else None
    except AuthError:
        principal = None
    if principal is not None and principal.kind == "service":
        return principal
    return security.service("pool")


def connect(settings: Settings, service: str, *, memory: bool = False,
            signer: Signer | None = None, verifier: Verifier | None = None) -> Bus:
    """The bus a process should use: RabbitMQ, or in-memory for unit tests."""
    if memory:
        from .memory import InMemoryBus

        return InMemoryBus(settings, service, signer=signer, verifier=verifier)
    from .rabbit import RabbitBus

    return RabbitBus(settings, service, signer=signer, verifier=verifier)
