"""The job event log a submit file asks for with `log = FILE` (HTCondor's user log).

Events are appended in HTCondor's text format, so tools that read user logs
(and people used to them) find what they expect:

    000 (012.003.000) 2026-11-25 12:00:00 Job submitted from host: <schedd>
    ...
"""

from __future__ import annotations

import time
from pathlib import Path

SUBMITTED, EXECUTING, ABORTED, TERMINATED, HELD, RELEASED = 0, 1, 9, 5, 12, 13


def event_text(code: int, cluster: int, proc: int, message: str, detail: str = "",
               when: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when or time.time()))
    lines = [f"{code:03d} ({cluster:03d}.{proc:03d}.000) {stamp} {message}"]
    if detail:
        lines.append(f"\t{detail}")
    lines.append("...")
    return "\n".join(lines) + "\n"


def append(path: str, text: str) -> None:
    """Best effort: a log that cannot be written must not fail the job's transition."""
    if not path:
        return
    try:
        with open(Path(path), "a") as log:
            log.write(text)
    except OSError:
        pass
