"""What the dashboard's API answers, as plain data from a Timeline: pure, no I/O.

    Timeline ──pool_json──▶ /api/pool     counts now, entries with price and cost, latency
             ──series_json─▶ /api/series  points over a window (at most N), launches
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Any

from services.views import Point, Timeline
from services.views.pool import Launch

MAX_POINTS = 2000


def latency_summary(launches: list[Launch]) -> dict[str, Any]:
    """Seconds from pilot.launched to pilot.registered: count, median, p90, max."""
    seconds = sorted(launch.seconds for launch in launches)
    if not seconds:
        return {"n": 0, "median_s": None, "p90_s": None, "max_s": None}
    p90 = seconds[min(len(seconds) - 1, math.ceil(0.9 * len(seconds)) - 1)]
    return {"n": len(seconds), "median_s": round(statistics.median(seconds), 3),
            "p90_s": round(p90, 3), "max_s": round(seconds[-1], 3)}


def pool_json(timeline: Timeline, now: float, *, detail: bool = True) -> dict[str, Any]:
    """The fold as JSON: `burst status`'s shape, plus prices, cost, latency and (with
    `detail`) every pilot and job by id."""
    pool = timeline.pool
    cost = pool.cost(now)
    entries = []
    for row in pool.entry_rows():
        name = row["name"]
        launches = [launch for launch in pool.launches if launch.entry == name]
        entries.append({**row, "price_per_hour": pool.prices.get(name),
                        "cost": _rounded(cost.get(name)), "latency": latency_summary(launches)})
    known = [c for c in cost.values() if c is not None]
    result: dict[str, Any] = {
        "now": now, "events": timeline.seq, "entries": entries, "jobs": pool.job_counts(),
        "slots": pool.slots(), "vms": pool.vms(), "vm_totals": pool.vm_totals(),
        "running_by_entry": pool.running_jobs_by_entry(),
        "latency": latency_summary(pool.launches),
        "cost": _rounded(sum(known)) if known else None,
    }
    if detail:
        result["pilots_by_id"] = {pid: vars(p).copy() for pid, p in pool.pilots.items()}
        result["jobs_by_id"] = {jid: vars(j).copy() for jid, j in pool.jobs.items()}
    return result


def series_json(timeline: Timeline, now: float, since: float,
                max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Points from `since` to now, at most `max_points`, the last one carried to now
    (the counts hold until something changes), and each pilot's launch latency."""
    points = downsample(timeline.series.since(since), max_points)
    if points and points[-1].t < now:
        points.append(replace(points[-1], t=now))
    entries = sorted({*timeline.pool.entries, *(e for p in points for e in p.jobs_running)})
    launches = [{"pilot_id": launch.pilot_id, "entry": launch.entry, "t": launch.launched_at,
                 "seconds": round(launch.seconds, 3)}
                for launch in timeline.pool.launches if launch.launched_at >= since]
    return {"now": now, "since": since, "entries": entries,
            "points": [p.as_json() for p in points], "launches": launches}


def downsample(points: list[Point], max_points: int) -> list[Point]:
    """At most `max_points` points: each bucket of neighbours becomes one point at the
    bucket's last time holding each count's highest value, so no peak disappears."""
    if len(points) <= max_points:
        return list(points)
    size = math.ceil(len(points) / max_points)
    return [_peak(points[i:i + size]) for i in range(0, len(points), size)]


def _peak(bucket: list[Point]) -> Point:
    running: dict[str, int] = {}
    for point in bucket:
        for entry, n in point.jobs_running.items():
            running[entry] = max(running.get(entry, 0), n)
    return Point(t=bucket[-1].t, vms_pending=max(p.vms_pending for p in bucket),
                 vms_running=max(p.vms_running for p in bucket),
                 claimed=max(p.claimed for p in bucket),
                 unclaimed=max(p.unclaimed for p in bucket),
                 jobs_idle=max(p.jobs_idle for p in bucket), jobs_running=running)


def job_json(timeline: Timeline, job_id: str) -> dict[str, Any] | None:
    """A job as its events tell it, or None when the window holds none of its events."""
    job = timeline.pool.jobs.get(job_id)
    events = timeline.job_events.get(job_id, [])
    if job is None and not events:
        return None
    state = vars(job).copy() if job is not None else {"state": "unknown"}
    return {"id": job_id, **state, "events": list(events)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
