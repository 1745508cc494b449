"""The job event log a submit file asks for with `log = FILE` (HTCondor's user log).

Events are appended in HTCondor's text format, so tools that read user logs
(and people used to them) find what they expect:

    000 (012.003.000) 2026-11-25 12:00:00 Job submitted from host: <schedd>
    ...

The log lives inside the job's initialdir and is written there only
(confined.py); `burst submit` refuses a log whose directory is missing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from services.condor import jobad

from . import confined

log = logging.getLogger("burst.schedd")

SUBMITTED, EXECUTING, EVICTED, ABORTED, TERMINATED, HELD, RELEASED = 0, 1, 4, 9, 5, 12, 13


def event_text(code: int, cluster: int, proc: int, message: str, detail: str = "",
               when: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when or time.time()))
    lines = [f"{code:03d} ({cluster:03d}.{proc:03d}.000) {stamp} {message}"]
    if detail:
        lines.append(f"\t{detail}")
    lines.append("...")
    return "\n".join(lines) + "\n"


def append(path: str, text: str, *, iwd: str, owner: str, private_dir: Path | None = None
           ) -> None:
    """Append an event to the log at `path`, inside `iwd`, as `owner`'s file. A log that
    cannot be written must not fail the job's transition: it is logged, loudly."""
    if not path:
        return
    try:
        confined.refuse_private(Path(iwd), private_dir)
        confined.append(Path(iwd), jobad.below(Path(iwd), path), text,
                        confined.account_of(owner))
    except (ValueError, confined.Refused) as exc:
        log.warning("event=user_log_not_written path=%s owner=%s reason=%r", path, owner,
                    str(exc))
