"""Every cloud API call a driver makes goes through one CloudCalls: paced, retried, counted.

    driver ──calls.call("RunInstances", ...)──▶ token bucket ──▶ boto3 ──▶ cloud
                    ▲        │ throttled / capacity / 5xx / no connection:
                    └────────┘ wait (exponential, full jitter), at most `attempts` tries
    each attempt ──▶ burst_cloud_calls_total{call, outcome}
    each failure ──▶ cloud.call_failed (entry, call, code, message, will_retry)

botocore's own retries are switched off for these clients (see `BOTO_CONFIG`)
so that every attempt is paced by the bucket, counted, and seen as an event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry import trace
from prometheus_client import Counter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from schemas.cloud import CloudCallFailed

CALLS = Counter("burst_cloud_calls_total", "Cloud API calls (each attempt) by outcome",
                ["call", "outcome"])

# Worth another try after a pause; anything else (a bad image, an unknown
# subnet, a quota refusal) fails the same way again.
THROTTLING = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
TRANSIENT = THROTTLING | {"InsufficientInstanceCapacity", "InternalError", "ServiceUnavailable",
                          "Unavailable"}
BOTO_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)

tracer = trace.get_tracer("burst.cloud")
T = TypeVar("T")


class CloudError(Exception):
    """A failed cloud call: the action, the cloud's error code and text, and if it may pass."""

    def __init__(self, call: str, code: str, message: str, retryable: bool):
        super().__init__(f"{call}: {code}: {message}")
        self.call, self.code, self.message, self.retryable = call, code, message, retryable

    @classmethod
    def from_boto(cls, call: str, exc: Exception) -> CloudError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return cls(call, code, error.get("Message", ""), code in TRANSIENT or status >= 500)
        # No answer at all (connection refused, timeout): the cloud may be back soon.
        return cls(call, type(exc).__name__, str(exc), True)


class TokenBucket:
    """At most `rate_per_s` calls per second on average, bursts of `burst`; acquire() waits."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst = rate_per_s, burst
        self.clock, self.sleep = clock, sleep
        self.tokens, self.stamp = float(burst), clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1 - 1e-9:  # float sums of refills fall just short
                    self.tokens -= 1
                    return
                short = (1 - self.tokens) / self.rate
            self.sleep(short)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 0.5  # waits are random in [0, base * 2^n], n the attempt, up to cap_s
    cap_s: float = 8.0


class CloudCalls:
    """Calls of one client for one entry; `emit` publishes events (the factory's bus.emit)."""

    def __init__(self, client: Any, *, entry: str, endpoint: str, bucket: TokenBucket,
                 retry: RetryPolicy, emit: Callable[[Any], None] | None = None):
        self.client, self.entry, self.endpoint = client, entry, endpoint
        self.bucket, self.retry, self.emit = bucket, retry, emit

    def once(self, call: str, **params: Any) -> dict:
        """One attempt: raises CloudError, counted but not reported (the caller may retry)."""
        self.bucket.acquire()
        method = getattr(self.client, _snake(call))
        with tracer.start_as_current_span(f"cloud {call}", kind=trace.SpanKind.CLIENT,
                                          attributes={"rpc.method": call, "burst.entry": self.entry,
                                                      "server.address": self.endpoint}) as span:
            try:
                answer = method(**params)
            except (ClientError, BotoCoreError) as exc:
                error = CloudError.from_boto(call, exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, error.code))
                CALLS.labels(call, "throttled" if error.code in THROTTLING else "error").inc()
                raise error from exc
        CALLS.labels(call, "ok").inc()
        return answer

    def call(self, call: str, **params: Any) -> dict:
        """One action, retried while the cloud says it may pass."""
        return self.retrying(lambda: self.once(call, **params))

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` (one or several `once` calls) until it succeeds or may not pass."""
        retryer = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_random_exponential(multiplier=self.retry.base_s, max=self.retry.cap_s),
            retry=retry_if_exception(lambda exc: isinstance(exc, CloudError) and exc.retryable),
            before_sleep=lambda state: self._report(state.outcome.exception(),
                                                    state.attempt_number, True),
            reraise=True)
        tries = 0

        def counted() -> T:
            nonlocal tries
            tries += 1
            return attempt()

        try:
            return retryer(counted)
        except CloudError as exc:
            self._report(exc, tries, False)
            raise

    def _report(self, exc: BaseException | None, attempt: int, will_retry: bool) -> None:
        if self.emit is None or not isinstance(exc, CloudError):
            return
        self.emit(CloudCallFailed(entry=self.entry, call=exc.call, code=exc.code,
                                  message=exc.message[:500], endpoint=self.endpoint,
                                  attempt=attempt, will_retry=will_retry, time=time.time()))


def _snake(action: str) -> str:
    """RunInstances -> run_instances (boto3's method names)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")
