"""Reading the event log for a live view: the backlog first, then new events as they
come, across lost connections.

    history(since) ─▶ e1 e2 … en ─▶ CAUGHT_UP ─▶ history(since=last second, follow) ─▶ …
                                                   (reconnects; skips what was seen)

`history` is the bus's (`Bus.history`) or `read_event_log` bound to settings.
Event timestamps are whole seconds, so a resumed read starts at the last seen
second and drops the message ids already read in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from services.runtime.codec import Envelope

log = logging.getLogger("burst.views")

CAUGHT_UP = None  # yielded once, when the backlog has been read
RETRY_S = (0.5, 1.0, 2.0, 5.0)

History = Callable[..., Iterator[Envelope]]


def replay_then_follow(history: History, since: float | None, *, patient: bool = True,
                       stop: Callable[[], bool] = lambda: False) -> Iterator[Envelope | None]:
    """Envelopes from `since` on, CAUGHT_UP after the backlog, then live ones until
    stop() (checked after each event). Read errors are retried with a delay, except
    before the backlog was read when not `patient` (a command fails at once instead)."""
    last_second: float | None = since
    seen_in_last_second: set[str] = set()
    follow, failures = False, 0
    while not stop():
        try:
            for env in history(since=last_second, follow=follow, idle_timeout=0.5):
                if env.timestamp == last_second and env.message_id in seen_in_last_second:
                    continue
                if env.timestamp != last_second:
                    last_second, seen_in_last_second = env.timestamp, set()
                seen_in_last_second.add(env.message_id)
                failures = 0
                yield env
                if stop():
                    return
        except Exception as exc:  # the broker went away: any client error; read again
            if not (patient or follow):
                raise
            log.warning("event=event_log_read_failed reason=%r", str(exc))
            time.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1
            continue
        if not follow:
            follow = True
            yield CAUGHT_UP
