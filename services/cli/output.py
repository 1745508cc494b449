"""How the CLI prints: tables for people, JSON in the shapes DESIGN.md fixes."""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

import schemas
from services.runtime.codec import Envelope, decode_or_none

# Piped output is not cut at 80 columns: a reason or a command stays on one line.
console = Console(width=None if sys.stdout.isatty() else 200)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def job_json(job: Any) -> dict[str, Any]:
    return {
        "id": job.id, "state": job.state, "exit_code": job.exit_code, "owner": job.owner,
        "entry": job.entry, "site": job.site, "provider": job.provider,
        "pilot": job.pilot_id, "cmd": job.cmd, "args": job.args,
        "hold_reason": job.hold_reason or None, "idle_reason": job.idle_reason or None,
        "request_cpus": job.request_cpus, "request_memory_mb": job.request_memory_mb,
        "submitted_at": job.submitted_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "runs": job.runs,
    }


def print_jobs(jobs: list) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "OWNER", "STATE", "EXIT", "WHERE"):
        table.add_column(column, no_wrap=True)
    table.add_column("CMD", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("NOTE", overflow="fold")
    for job in jobs:
        where = f"{job.site}/{job.entry}" if job.site else ""
        note = job.hold_reason or job.idle_reason
        exit_code = "" if job.exit_code is None else str(job.exit_code)
        cmd = " ".join(filter(None, [job.cmd.rsplit("/", 1)[-1], job.args]))
        table.add_row(job.id, job.owner, job.state, exit_code, where, cmd, note)
    console.print(table)
    counts = Counter(j.state for j in jobs)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    console.print(f"{len(jobs)} jobs" + (f": {summary}" if summary else ""))


class Progress:
    """How `burst wait` shows its jobs' counts while it waits, on stderr.

    On a terminal: one status line with a spinner, redrawn in place (rich), left
    on screen when done. Otherwise (a log, a pipe, a test): a plain line each
    time the counts change, and no control characters.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.last = ""
        self.status: Status | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()

    def show(self, jobs: list) -> None:
        counts = Counter(j.state for j in jobs)
        line = (f"{counts['completed']}/{len(jobs)} completed, {counts['running']} running, "
                f"{counts['idle']} idle")
        if line == self.last:
            return
        self.last = line
        if not self.console.is_terminal:
            self.console.print(Text(line))
        elif self.status is None:
            self.status = self.console.status(Text(line))
            self.status.start()
        else:
            self.status.update(Text(line))

    def done(self) -> None:
        """Stop redrawing (and show the cursor again); safe to call more than once."""
        if self.status is not None:
            self.status.stop()
            self.status = None
            self.console.print(Text(self.last))


def print_status(result: dict[str, Any]) -> None:
    table = Table(title="entries", box=None, pad_edge=False)
    for column in ("ENTRY", "SITE", "DRIVER", "PROVIDER", "PILOTS"):
        table.add_column(column)
    for entry in result["entries"]:
        pilots = " ".join(f"{state}={n}" for state, n in sorted(entry["pilots"].items()))
        table.add_row(entry["name"], entry["site"], entry["driver"], entry["provider"], pilots)
    console.print(table)
    jobs = " ".join(f"{k}={v}" for k, v in result["jobs"].items())
    console.print(f"jobs:  {jobs}")
    console.print(f"slots: claimed={result['slots']['claimed']} "
                  f"unclaimed={result['slots']['unclaimed']}")
    for provider, states in sorted(result["vms"].items()):
        console.print(f"vms {provider}: " + " ".join(f"{k}={v}" for k, v in states.items()))
    services = " ".join(f"{name}={'up' if st['alive'] else 'down'}"
                        for name, st in result["services"].items())
    console.print(f"services: {services}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_json(env: Envelope) -> str:
    event = decode_or_none(env)
    fields = schemas.to_plain(event) if event is not None else {"undecodable": True}
    record = {**_jsonable(fields), "key": env.routing_key, "time": iso(env.timestamp),
              "message_id": env.message_id}
    if env.correlation_id:
        record["correlation_id"] = env.correlation_id
    return json.dumps(record)


def event_line(env: Envelope) -> str:
    event = decode_or_none(env)
    if event is None:
        return f"{iso(env.timestamp)} {env.routing_key} (undecodable)"
    parts = []
    for key, value in schemas.to_plain(event).items():
        if key in ("ad", "job_ad", "time", "files", "autoclusters") or value in ("", None, [], {}):
            continue
        text = json.dumps(_jsonable(value)) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key}={text[:80]}")
    if event.NAME == "demand.autoclusters":
        idle = sum(ac.idle for ac in event.autoclusters)
        parts.append(f"autoclusters={len(event.autoclusters)} idle={idle}")
    return f"{iso(env.timestamp)} {env.routing_key:<26} {' '.join(parts)}"


def parse_since(text: str) -> float:
    """Epoch seconds, an ISO 8601 time, or an age (30s, 10m, 2h, 1d) before now, as the
    start of the whole second it falls in.

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
        from .main import EXIT_USAGE, Failure

        raise Failure(f"--since {text!r}: use epoch seconds, ISO time or an age like 10m",
                      EXIT_USAGE) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.timestamp()
