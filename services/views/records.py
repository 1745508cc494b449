"""One event as people and programs read it: the JSON record of `burst events --json`,
the one-line summary of `burst events` and of the dashboard's feed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import schemas
from services.runtime.codec import Envelope

# Fields too long or too private for a one-line summary (ads, file contents, demand lists).
UNSUMMARISED = ("ad", "job_ad", "time", "files", "autoclusters")
# The ids a feed line carries, so the dashboard can link a job and filter on the rest.
IDS = ("job_id", "pilot_id", "entry", "owner", "cluster")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time(env: Envelope, event: Any) -> float:
    """When it happened: the event's own `time` (sub-second) where it has one, else the
    AMQP timestamp (whole seconds)."""
    return float(getattr(event, "time", 0.0) or env.timestamp)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def event_record(env: Envelope, event: Any) -> dict[str, Any]:
    """Every field of the event, plus key, time and message_id (the --json line)."""
    fields = schemas.to_plain(event) if event is not None else {"undecodable": True}
    record = {**jsonable(fields), "key": env.routing_key, "time": iso(env.timestamp),
              "message_id": env.message_id}
    if env.correlation_id:
        record["correlation_id"] = env.correlation_id
    return record


def summary(event: Any) -> str:
    """The event's short fields as key=value, for one line."""
    if event is None:
        return "(undecodable)"
    parts = []
    for key, value in schemas.to_plain(event).items():
        if key in UNSUMMARISED or value in ("", None, [], {}):
            continue
        text = json.dumps(jsonable(value)) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key}={text[:80]}")
    if event.NAME == "demand.autoclusters":
        idle = sum(ac.idle for ac in event.autoclusters)
        parts.append(f"autoclusters={len(event.autoclusters)} idle={idle}")
    return " ".join(parts)


def feed_record(env: Envelope, event: Any, seq: int) -> dict[str, Any]:
    """What the dashboard's feed and job pages keep of an event: small and linkable."""
    record: dict[str, Any] = {"seq": seq, "key": env.routing_key, "t": event_time(env, event),
                              "time": iso(env.timestamp), "message_id": env.message_id,
                              "summary": summary(event)}
    for name in IDS:
        value = getattr(event, name, None)
        if value not in (None, ""):
            record[name] = value
    if event is not None and event.NAME == "job.submitted":
        record["jobs"] = list(event.jobs)
    return record
