"""Cloud API calls that failed, as the factory's drivers saw them.

    factory (ec2 driver) ──cloud.call_failed──▶ burst.events ──▶ burst events, web, reaper

One event per failed attempt, throttled ones included, so an operator sees a
cloud pushing back before launches stop; `will_retry` says whether the
driver tries again. The message is the cloud's own text (no credentials:
the driver never puts them in a request it could echo).
"""

from __future__ import annotations

from ._base import ClassVar, message


@message
class CloudCallFailed:
    NAME: ClassVar[str] = "cloud.call_failed"
    VERSION: ClassVar[int] = 1
    entry: str
    call: str  # the API action: RunInstances, DescribeInstances, TerminateInstances, ...
    code: str  # the cloud's error code (RequestLimitExceeded, ...) or the client's error class
    message: str
    endpoint: str = ""
    attempt: int = 1
    will_retry: bool = False
    time: float = 0.0
