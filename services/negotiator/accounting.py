"""Fair share: owner priorities with half-life decay, and the pie spin.

    slot ads / claims ──running cpus per owner──▶ Accountant.update(now, ...)
    Accountant.priorities(now) ──▶ negotiate() ──pie_shares()──▶ cpus per owner this round

An owner's real priority follows HTCondor's accountant: a decaying average of
the cpus it has in use,

    rp(t + dt) = rp(t) * 0.5 ** (dt / half_life) + cpus(t) * (1 - 0.5 ** (dt / half_life))

(cpus(t): what the update at t reported, taken to run until the next one),
so it converges to the cpus an owner keeps busy, and halves every half-life
once the owner stops. The effective priority is max(floor, rp) times the
owner's factor; lower is better. Everything here is a function of the times
the caller passes in, never of the wall clock, so a replay gives the same
priorities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

# HTCondor's PRIORITY_HALFLIFE default and its smallest user priority.
DEFAULT_HALF_LIFE_S = 86_400.0
DEFAULT_FLOOR = 0.5
# Below this an owner has no usage worth remembering.
_FORGET_BELOW = 1e-6


@dataclass(frozen=True)
class OwnerUsage:
    real_priority: float  # decayed average of cpus in use, at `time`
    running_cpus: float  # as last reported; assumed to continue until the next update
    accumulated_cpu_s: float  # undecayed total, for reports
    time: float


class Accountant:
    """Owner usage with exponential decay; deterministic given the times passed in.

    The negotiator calls `update(now, running_cpus_by_principal)` with what the
    demand says is running, then `priorities(now)` before each pass.
    `snapshot()`/`restore()` let it keep usage across restarts.
    """

    def __init__(
        self,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        floor: float = DEFAULT_FLOOR,
        factors: Mapping[str, float] | None = None,
    ) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self.floor = floor
        self.factors = dict(factors or {})
        self._owners: dict[str, OwnerUsage] = {}

    def update(self, now: float, running_cpus: Mapping[str, float]) -> None:
        """Fold in what each owner runs at `now`; owners not listed run nothing."""
        for owner in set(self._owners) | set(running_cpus):
            usage = self._advance(owner, now, float(running_cpus.get(owner, 0.0)))
            if usage.real_priority < _FORGET_BELOW and usage.running_cpus == 0:
                self._owners.pop(owner, None)
            else:
                self._owners[owner] = usage

    def usage(self, now: float) -> dict[str, float]:
        """Real priorities at `now` (decayed usage), without the floor or factors."""
        return {owner: self._project(u, now) for owner, u in self._owners.items()}

    def priorities(self, now: float) -> dict[str, float]:
        """Effective priority of every known owner at `now`; lower is better."""
        return {owner: self.priority(owner, now) for owner in self._owners}

    def priority(self, owner: str, now: float) -> float:
        """Effective priority of one owner; an unknown owner gets the floor."""
        usage = self._owners.get(owner)
        real = self._project(usage, now) if usage else 0.0
        return max(self.floor, real) * self.factors.get(owner, 1.0)

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {owner: asdict(u) for owner, u in self._owners.items()}

    def restore(self, snapshot: Mapping[str, Mapping[str, float]]) -> None:
        self._owners = {owner: OwnerUsage(**fields) for owner, fields in snapshot.items()}

    def _advance(self, owner: str, now: float, running: float) -> OwnerUsage:
        old = self._owners.get(owner)
        if old is None:
            return OwnerUsage(0.0, running, 0.0, now)
        dt = max(0.0, now - old.time)
        # What ran since the last update is what that update reported: usage is
        # known at the times it is reported, so the new figure counts from `now`.
        return OwnerUsage(
            real_priority=self._project(old, now),
            running_cpus=running,
            accumulated_cpu_s=old.accumulated_cpu_s + old.running_cpus * dt,
            time=max(now, old.time),
        )

    def _project(self, usage: OwnerUsage, now: float) -> float:
        dt = max(0.0, now - usage.time)
        return self._decay(usage.real_priority, dt) + usage.running_cpus * self._weight_new(dt)

    def _decay(self, value: float, dt: float) -> float:
        return value * 0.5 ** (dt / self.half_life_s)

    def _weight_new(self, dt: float) -> float:
        return 1.0 - 0.5 ** (dt / self.half_life_s)


def pie_shares(pie: float, priorities: Mapping[str, float]) -> dict[str, float]:
    """Split `pie` cpus between owners in inverse proportion to their priority."""
    # A zero or negative priority would divide by zero; treat it as the best possible.
    weights = {owner: 1.0 / max(p, 1e-9) for owner, p in priorities.items()}
    total = sum(weights.values())
    if total == 0:
        return {}
    return {owner: pie * w / total for owner, w in weights.items()}
