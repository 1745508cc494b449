"""Where a view starts: `--since` of `burst status`, `burst events` and the web service."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str) -> float:
    """Epoch seconds, an ISO 8601 time, or an age (30s, 10m, 2h, 1d) before now, as the
    start of the whole second it falls in; ValueError for anything else.

    AMQP timestamps are whole seconds (the second an event was published in), so an
    event stamped 12:00:00 may have happened at 12:00:00.9, inside a window from
    12:00:00.5: the window starts at the whole second rather than drop such events.
    """
    return float(math.floor(_since_seconds(text.strip())))


def _since_seconds(text: str) -> float:
    match = _AGE.match(text)
    if match:
        number, unit = float(match.group(1)), match.group(2)
        return time.time() - number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: use epoch seconds, ISO time or an age like "
                         "10m") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.timestamp()
