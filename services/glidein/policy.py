"""When a pilot should leave: pure decisions over times and counts (no clock, no I/O).

    uptime >= max_lifetime_s ─────────────────────▶ "lifetime reached"  (drain: jobs finish)
    no claim for idle_timeout_s (since start or
    since the last job ended) ────────────────────▶ "idle for N s"
    pilot.retire(only_if_idle) while busy ────────▶ refused: a busy pilot is never retired

Retiring never kills a running job; only SIGTERM (factory, `burst down`) does.
"""

from __future__ import annotations


def why_retire(*, now: float, started_at: float, idle_since: float, busy: bool,
               idle_timeout_s: float, max_lifetime_s: float) -> str | None:
    """The reason to start retiring now, or None to carry on."""
    if now - started_at >= max_lifetime_s:
        return "lifetime reached"
    if not busy and now - idle_since >= idle_timeout_s:
        return f"idle for {now - idle_since:.0f} s"
    return None


def may_retire_on_request(*, only_if_idle: bool, busy: bool) -> bool:
    return not (only_if_idle and busy)
