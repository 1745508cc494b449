"""An in-memory bus for unit tests: the same contract as RabbitBus, no broker.

One dispatcher thread plays the broker and the I/O thread: it routes
messages like the two exchanges do (direct with an alternate exchange, topic
with * and #), runs handlers one at a time, applies the same ack policy
(delayed retry, dead-letter queues with reasons) and runs timers. Bodies go
through the real codec, so a bad body is caught here as it would be there.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import msgspec

from . import codec
from .bus import Bus, RpcTimeout, Subscription, command_key
from .codec import Envelope
from .config import Settings


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: * is one word, # is zero or more words."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


class InMemoryBus(Bus):
    def __init__(self, settings: Settings, service: str = "test", **trust: Any):
        super().__init__(settings, service, **trust)
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Envelope]] = {}
        self._bindings: list[tuple[str, str, str]] = []  # (exchange, key or pattern, queue)
        self._consumers: dict[str, Subscription] = {}
        self._dlq: dict[str, list[tuple[Envelope, str]]] = {}
        self._event_log: list[Envelope] = []
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._timer_ids = itertools.count()
        self._rpc: dict[str, Future] = {}
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._io_ident: int | None = None
        self._declare(self.names.unroutable)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        with self._lock:
            for sub in self.subscriptions:
                queue = self.names.queue(sub.queue)
                self._declare(queue)
                self._consumers[queue] = sub
                for key in sub.command_keys():
                    self._bindings.append((self.names.cmd, key, queue))
                for pattern in sub.event_patterns():
                    self._bindings.append((self.names.events, pattern, queue))
        self._thread = threading.Thread(target=self._run, name=f"membus-{self.service}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None and threading.get_ident() != self._io_ident:
            self._thread.join(timeout=5)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no message is queued or being handled (timers excluded)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy or any(self._queues[q] for q in self._consumers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("in-memory bus still busy")
                self._lock.wait(remaining)

    # --- routing ----------------------------------------------------------------------------

    def _declare(self, queue: str) -> None:
        self._queues.setdefault(queue, deque())
        self._dlq.setdefault(queue, [])

    def _route(self, exchange: str, routing_key: str, env: Envelope) -> None:
        env = _with_key(env, routing_key)
        with self._lock:
            if exchange == "":
                self._queues.setdefault(routing_key, deque()).append(env)
            else:
                if exchange == self.names.events:
                    self._event_log.append(env)
                targets = [q for (ex, key, q) in self._bindings if ex == exchange and (
                    key == routing_key if exchange == self.names.cmd
                    else topic_matches(key, routing_key))]
                if not targets and exchange == self.names.cmd:
                    targets = [self.names.unroutable]
                for queue in dict.fromkeys(targets):
                    self._queues[queue].append(env)
            self._lock.notify_all()

    def _publish(self, exchange: str, routing_key: str, env: Envelope) -> None:
        self._route(exchange, routing_key, env)

    def publish_raw(self, exchange: str, routing_key: str, body: bytes, *,
                    type: str | None = None, headers: dict | None = None,
                    content_type: str = codec.CONTENT_TYPE) -> None:
        env = codec.raw_envelope(body, type=type, headers=headers, content_type=content_type)
        self._route(exchange, routing_key, env)

    def send_many(self, commands: list[Any], to: str | None = None, *,
                  message_ids: list[str] | None = None) -> Future:
        """Routing is synchronous here: the future is resolved when this returns."""
        ids = message_ids or [None] * len(commands)
        for command, message_id in zip(commands, ids, strict=True):
            self.send(command, to, message_id=message_id)
        fut: Future = Future()
        fut.set_result(len(commands))
        return fut

    def flush(self, timeout: float = 10.0) -> None:
        return None  # publishing is synchronous here

    def call(self, command: Any, to: str | None = None, *, timeout: float = 10.0) -> Any:
        if threading.get_ident() == self._io_ident:
            raise RuntimeError("call() from a handler would wait for itself")
        env = self._envelope(command, None, None, headers={}, reply_to="memory.reply")
        fut: Future = Future()
        with self._lock:
            self._rpc[env.message_id] = fut
        self._route(self.names.cmd, command_key(command, to), env)
        try:
            return self._unwrap_reply(fut.result(timeout))
        except FutureTimeout:
            raise RpcTimeout(f"no answer to {command.NAME} within {timeout:g}s") from None

    # --- the dispatcher ---------------------------------------------------------------------

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        while True:
            with self._lock:
                work = self._next_work()
                while work is None and not self._stopping:
                    self._lock.wait(self._until_next_timer())
                    work = self._next_work()
                if self._stopping:
                    return
                self._busy = True
            try:
                work()
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _next_work(self) -> Callable[[], None] | None:
        now = time.monotonic()
        if self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            return fn
        for queue, sub in self._consumers.items():
            if self._queues[queue]:
                env = self._queues[queue].popleft()
                return lambda: self._deliver(sub, queue, env)
        return None

    def _until_next_timer(self) -> float | None:
        return max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None

    def _deliver(self, sub: Subscription, queue: str, env: Envelope) -> None:
        outcome, reply = self._dispatch(sub, queue, env)
        if reply is not None and env.reply_to:
            with self._lock:
                fut = self._rpc.pop(env.message_id, None)
            if fut is not None:
                fut.set_result(codec.decode(codec.encode(reply)))
        if outcome.action == "retry":
            retried = _with_headers(env, {**env.headers, "x-retry-count": outcome.retry_count})
            self.call_later(outcome.delay_s, lambda: self._route("", queue, retried))
        elif outcome.action == "dead":
            with self._lock:
                self._dlq[queue].append((env, outcome.reason))

    # --- timers -----------------------------------------------------------------------------

    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._timer_ids), fn))
            self._lock.notify_all()

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> None:
        self.call_later(0.0, fn)

    # --- inspection -------------------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[tuple[Envelope, str]]:
        with self._lock:
            return list(self._dlq.get(self.names.queue(queue), []))

    def unroutable(self) -> list[Envelope]:
        with self._lock:
            return list(self._queues[self.names.unroutable])

    def history(self, since: float | None = None, follow: bool = False,
                idle_timeout: float = 1.0) -> Iterator[Envelope]:
        seen = 0
        while True:
            with self._lock:
                batch = self._event_log[seen:]
                seen = len(self._event_log)
            for env in batch:
                if since is None or env.timestamp >= since:
                    yield env
            if not follow:
                return
            with self._lock:
                if len(self._event_log) == seen:
                    self._lock.wait(idle_timeout)


def _with_key(env: Envelope, routing_key: str) -> Envelope:
    return msgspec.structs.replace(env, routing_key=routing_key)


def _with_headers(env: Envelope, headers: dict) -> Envelope:
    return msgspec.structs.replace(env, headers=headers)
