"""One ack policy for every consumer, whatever the bus.

    decode ──fails──────────────────────────────▶ dead-letter (reason header)
       │
    handler ──returns────────────────────────────▶ ack, once what it published is confirmed
       ├──raises PermanentError, ValueError, ───▶ dead-letter at once
       │  ArithmeticError (bad input)
       └──raises anything else──▶ retry count < max? ──yes──▶ delayed retry (count + 1)
                                                    └─no───▶ dead-letter

A ValueError (a bad id, text that does not parse, an unknown choice) or an
ArithmeticError (a number too large to store) comes from the message itself:
it fails the same way every time, so it is permanent wherever it is raised.
Other unexpected exceptions are treated as transient: an outage of a
dependency should not throw messages away on the first try, but a message
that keeps failing must not loop forever either.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_HEADER = "x-retry-count"
ERROR_HEADER = "x-burst-error"
QUEUE_HEADER = "x-burst-queue"
ROUTING_KEY_HEADER = "x-burst-routing-key"


class PermanentError(Exception):
    """The message can never be handled: dead-letter it with this reason."""


class TransientError(Exception):
    """The message could be handled later: retry it with a delay."""


PERMANENT = (PermanentError, ValueError, ArithmeticError)  # retrying cannot change these


@dataclass(frozen=True)
class Outcome:
    action: str  # "ack" | "retry" | "dead"
    reason: str = ""
    delay_s: float = 0.0
    retry_count: int = 0


ACK = Outcome("ack")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, retry_count: int) -> float:
        return min(self.first_delay_s * (2 ** retry_count), self.max_delay_s)


def after_failure(exc: BaseException, retry_count: int, policy: RetryPolicy) -> Outcome:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PERMANENT):
        return Outcome("dead", reason)
    if retry_count >= policy.max_retries:
        return Outcome("dead", f"gave up after {retry_count} retries: {reason}")
    return Outcome("retry", reason, policy.delay(retry_count), retry_count + 1)


def retry_count_of(headers: dict) -> int:
    value = headers.get(RETRY_HEADER, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
