"""How the CLI prints: tables for people, JSON in the shapes DESIGN.md fixes."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from rich.console import Console, Group
from rich.status import Status
from rich.table import Table
from rich.text import Text

from services.runtime.codec import Envelope
from services.views import records, since

# Piped output is not cut at 80 columns: a reason or a command stays on one line.
console = Console(width=None if sys.stdout.isatty() else 200)


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


def status_view(result: dict[str, Any]) -> Group:
    """`burst status` as rich renderables: printed once, or redrawn by --watch."""
    table = Table(title="entries", box=None, pad_edge=False)
    for column in ("ENTRY", "SITE", "DRIVER", "PROVIDER", "PILOTS"):
        table.add_column(column)
    for entry in result["entries"]:
        pilots = " ".join(f"{state}={n}" for state, n in sorted(entry["pilots"].items()))
        table.add_row(entry["name"], entry["site"], entry["driver"], entry["provider"], pilots)
    jobs = " ".join(f"{k}={v}" for k, v in result["jobs"].items())
    lines = [f"jobs:  {jobs}",
             f"slots: claimed={result['slots']['claimed']} "
             f"unclaimed={result['slots']['unclaimed']}"]
    for provider, states in sorted(result["vms"].items()):
        lines.append(f"vms {provider}: " + " ".join(f"{k}={v}" for k, v in states.items()))
    services = result["services"]
    lines.append("services: " + " ".join(f"{name}={'up' if st['alive'] else 'down'}"
                                         for name, st in services.items()))
    url = services.get("web", {}).get("url")
    if url:
        lines.append(f"dashboard: {url}")
    return Group(table, *(Text(line) for line in lines))


def print_status(result: dict[str, Any]) -> None:
    console.print(status_view(result))


def event_json(env: Envelope, event: Any) -> str:
    return json.dumps(records.event_record(env, event))


def event_line(env: Envelope, event: Any) -> str:
    return f"{records.iso(env.timestamp)} {env.routing_key:<26} {records.summary(event)}"


def parse_since(text: str) -> float:
    """services.views.since.parse_since, with a usage error (exit 2) for nonsense."""
    try:
        return since.parse_since(text)
    except ValueError as exc:
        from .main import EXIT_USAGE, Failure

        raise Failure(str(exc), EXIT_USAGE) from None
