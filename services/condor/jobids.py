"""Job ids as users write them: "12" (a whole cluster) or "12.3" (one job). Pure.

The CLI checks ids with these before it sends anything; the schedd reads them
the same way.
"""

from __future__ import annotations

import re

_JOB_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")


def parse_job_id(text: str) -> tuple[int, int | None]:
    """'12' -> (12, None) for a whole cluster, '12.3' -> (12, 3); ValueError otherwise."""
    match = _JOB_ID.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a job id (CLUSTER or CLUSTER.PROC)")
    cluster, proc = match.groups()
    return int(cluster), int(proc) if proc is not None else None


def job_id(cluster: int, proc: int) -> str:
    return f"{cluster}.{proc}"
