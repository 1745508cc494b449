"""Factory decisions: what one entry does this reconcile cycle.

    latest glidein.request of every frontend group ─┐
    the entry's pilots (state, age, group) ─────────┼─▶ decide_entry ─▶ EntryActions
    entry limits, seconds since the last launch ────┘                    launch {client: n}
                                                                         retire [pilot ids]
                                                                         kill   [pilot ids]

A cycle reads the desired state (requests) and the observed one (pilots) and
returns the few actions that close the gap, so a factory that crashed and
restarted simply decides again (GlideinWMS glideFactoryLib.keepIdleGlideins
and its removal of excess glideins, for cloud pilots):

- Launch, per group: idle_target - waiting (pending + idle pilots of that
  group), never past the group's max_glideins, then shared fairly among the
  groups within the entry's room (max_pilots) and its rate limit
  (max_launch_per_cycle, and nothing until launch_interval_s has passed).
- Retire, per group, by remove_excess; the surplus is the larger of the
  waiting pilots above idle_target and all pilots above max_glideins:
      NO    nothing
      WAIT  surplus pending pilots only (not booted: cheap to cancel)
      IDLE  surplus pending pilots, then surplus idle ones
      ALL   every pending and idle pilot of the group, and no launch
  A busy pilot is never retired: it finishes its job, turns idle, and a later
  cycle retires it if still in surplus. Pending pilots go first because an
  idle pilot can take a job now, a pending one only after booting; among
  pending, the youngest (furthest from booting), among idle the one idle
  longest (no job has wanted it the longest).
- Kill: pilots that are broken rather than in surplus: pending past
  pending_timeout_s (never registered) and held past held_grace_s (the grace
  lets the frontend see them and stop asking; see its max_held).
- An entry above max_pilots (an operator lowered it; 0 drains the entry)
  retires pending and idle pilots of any group down to it.

Retire means: an idle pilot gets pilot.retire (only_if_idle, so one that just
took a job refuses), a pending one is cancelled at the driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.runtime.fairness import fair_share

REMOVE_MODES = ("NO", "WAIT", "IDLE", "ALL")
LIVE_STATES = ("pending", "idle", "busy", "retiring", "held")  # lost and exited are gone


@dataclass(frozen=True)
class EntryPolicy:
    max_pilots: int = 10  # all pilots of the entry, every group; 0 drains the entry
    max_launch_per_cycle: int = 5
    launch_interval_s: float = 0.0  # no launch sooner than this after the previous one
    pending_timeout_s: float = 300.0  # not registered by then: killed
    held_grace_s: float = 600.0  # held this long: killed

    @classmethod
    def from_config(cls, entry_config: Any) -> EntryPolicy:
        """From services.runtime.config.EntryConfig; knobs it lacks keep our defaults."""
        limits = getattr(entry_config, "limits", None)
        if not dataclasses.is_dataclass(limits):
            return cls()
        ours = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dataclasses.asdict(limits).items() if k in ours})


@dataclass(frozen=True)
class Pilot:
    pilot_id: str
    client: str  # client_name() of the request that launched it
    state: str  # pending | idle | busy | retiring | held | lost
    age_s: float = 0.0  # since launch
    state_age_s: float = 0.0  # since it entered this state: how long idle, how long held


@dataclass(frozen=True)
class EntryActions:
    launch: dict[str, int]  # client -> pilots to launch now
    retire: tuple[str, ...]  # pilot ids no longer needed; never a busy pilot
    kill: tuple[str, ...]  # pilot ids that are broken
    reason: str

    @property
    def nothing_to_do(self) -> bool:
        return not (self.launch or self.retire or self.kill)


def client_name(frontend: str, group: str) -> str:
    """Who a pilot belongs to, as GlideinWMS names a request's client: frontend.group.

    Put it in PilotLaunched.group so a restarted factory can tell pilots apart.
    """
    return f"{frontend}.{group}"


# ---------------------------------------------------------------------- pieces


def _broken(pilots: Iterable[Pilot], policy: EntryPolicy) -> list[Pilot]:
    return [
        p
        for p in pilots
        if (p.state == "pending" and p.age_s >= policy.pending_timeout_s)
        or (p.state == "held" and p.state_age_s >= policy.held_grace_s)
    ]


def _removal_order(pilots: Iterable[Pilot], with_idle: bool = True) -> list[Pilot]:
    """Cheapest to lose first: pending (youngest first), then idle (idle longest first)."""
    pilots = list(pilots)  # read twice below
    pending = sorted(
        (p for p in pilots if p.state == "pending"), key=lambda p: (p.age_s, p.pilot_id)
    )
    if not with_idle:
        return pending
    idle = sorted(
        (p for p in pilots if p.state == "idle"), key=lambda p: (-p.state_age_s, p.pilot_id)
    )
    return pending + idle


@dataclass(frozen=True)
class _GroupDecision:
    client: str
    want: int  # launches wanted before entry-wide limits
    retire: tuple[Pilot, ...]
    summary: str


def _decide_group(request: Any, mine: Sequence[Pilot], broken: set[str]) -> _GroupDecision:
    """Launches wanted and pilots to retire for one (frontend, group) request."""
    client = client_name(request.frontend, request.group)
    mode = request.remove_excess if request.remove_excess in REMOVE_MODES else "NO"
    healthy = [p for p in mine if p.pilot_id not in broken]
    waiting = [p for p in healthy if p.state in ("pending", "idle")]
    # Broken pilots stop counting as waiting (they will not take jobs) but still
    # hold their place under max_glideins until they are gone.
    total = len(mine)
    room = max(request.max_glideins - total, 0)
    want = 0 if mode == "ALL" else min(max(request.idle_target - len(waiting), 0), room)
    surplus = max(len(waiting) - request.idle_target, total - request.max_glideins, 0)
    if mode == "ALL":
        retire = _removal_order(healthy)
    elif mode in ("WAIT", "IDLE"):
        retire = _removal_order(healthy, with_idle=mode == "IDLE")[:surplus]
    else:
        retire = []
    busy = sum(p.state == "busy" for p in mine)
    summary = (
        f"{client}: target {request.idle_target} waiting, have {len(waiting)}, {busy} busy, "
        f"{total}/{request.max_glideins} pilots, remove {mode}"
    )
    return _GroupDecision(client, want, tuple(retire), summary)


def _latest_requests(requests: Iterable[Any]) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for request in requests:
        client = client_name(request.frontend, request.group)
        if client not in latest or (request.seq, request.time) >= (
            latest[client].seq,
            latest[client].time,
        ):
            latest[client] = request
    return latest


def _launch_budget(
    live: int, policy: EntryPolicy, since_last_launch_s: float | None
) -> tuple[int, str]:
    room = max(policy.max_pilots - live, 0)
    if since_last_launch_s is not None and since_last_launch_s < policy.launch_interval_s:
        return 0, (
            f"last launch {since_last_launch_s:.0f}s ago < interval {policy.launch_interval_s:.0f}s"
        )
    budget = min(room, policy.max_launch_per_cycle)
    note = (
        f"room {room} of max_pilots {policy.max_pilots}, rate {policy.max_launch_per_cycle}/cycle"
    )
    return budget, note


def _drain(
    pilots: Sequence[Pilot], chosen: set[str], live: int, policy: EntryPolicy
) -> list[Pilot]:
    """More pilots to retire when the entry holds more than max_pilots."""
    over = live - len(chosen) - policy.max_pilots
    if over <= 0:
        return []
    return _removal_order(p for p in pilots if p.pilot_id not in chosen)[:over]


# ----------------------------------------------------------------------- cycle


def decide_entry(
    requests: Iterable[Any],
    pilots: Sequence[Pilot],
    policy: EntryPolicy,
    since_last_launch_s: float | None = None,
) -> EntryActions:
    """One reconcile cycle of one entry.

    requests: the latest GlideinRequest (or anything with frontend, group,
    idle_target, max_glideins, remove_excess, seq, time) of every group that
    asked this entry; a group without a request gets nothing launched or
    retired (its pilots keep counting toward max_pilots). pilots: every
    pilot of the entry, any state. since_last_launch_s: None if never.
    """
    live_pilots = [p for p in pilots if p.state in LIVE_STATES]
    broken = _broken(live_pilots, policy)
    broken_ids = {p.pilot_id for p in broken}
    decisions = [
        _decide_group(request, [p for p in live_pilots if p.client == client], broken_ids)
        for client, request in sorted(_latest_requests(requests).items())
    ]
    budget, budget_note = _launch_budget(len(live_pilots), policy, since_last_launch_s)
    shares = fair_share({d.client: d.want for d in decisions}, budget)
    launch = {client: n for client, n in shares.items() if n > 0}
    retire = [p for d in decisions for p in d.retire]
    chosen = broken_ids | {p.pilot_id for p in retire}
    retire += _drain(live_pilots, chosen, len(live_pilots), policy)
    reason = "; ".join(
        [d.summary + f", launch {shares[d.client]} of {d.want}" for d in decisions]
        + [budget_note, f"retire {len(retire)}, kill {len(broken)}"]
    )
    return EntryActions(
        launch=launch,
        retire=tuple(p.pilot_id for p in retire),
        kill=tuple(sorted(broken_ids)),
        reason=reason,
    )
