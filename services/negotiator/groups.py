"""Accounting groups and concurrency limits, as HTCondor's negotiator has them (one level).

    job ad: AccountingGroup "physics.alice" ──charge_of()──▶ principal "physics.alice", group
            "physics" (a configured one, else <none>); no AccountingGroup: the owner, <none>;
            the nice-user group: served last, on what nobody else took
    [[accounting_group]] quotas, pool cpus ──quotas()──▶ cpus per group; <none> the remainder
    quotas, usage, requests ──targets()──▶ cpus each group may hold after this round
    ConcurrencyLimits "db,license_a:2" ──▶ (("db", 1.0), ("license_a", 2.0)), counted against
        [concurrency_limits] (HTCondor's NAME_LIMIT) or CONCURRENCY_LIMIT_DEFAULT

HTCondor's hierarchical group quotas, flattened: static quotas first (scaled
down if they exceed the pool), dynamic ones share what is left (scaled if
their fractions sum above 1), <none> gets the remainder. Each group may hold
min(request, quota); the surplus goes to groups that accept it (always
<none>), in proportion to their quotas; whole cpus left in fractions go one
by one to the most starved accepting groups. Groups negotiate most starved
first (usage / quota), <none> last. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

ROOT = "<none>"
NICE_USER_GROUP = "nice-user"  # condor_submit's nice_user (HTCondor 9+): served last
CONCURRENCY_LIMIT_DEFAULT = 2_308_032.0  # HTCondor's default: no limit to speak of
_EPSILON = 1e-9


@dataclass(frozen=True)
class GroupQuota:
    name: str
    quota: float  # cpus, or a fraction of the pool when dynamic
    dynamic: bool
    accept_surplus: bool


@dataclass(frozen=True)
class Charge:
    """What a job counts against: its principal's fair share, a group, limits."""

    principal: str
    group: str  # a configured group, ROOT, or NICE_USER_GROUP
    limits: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class FairSharePolicy:
    groups: tuple[GroupQuota, ...] = ()
    limits: tuple[tuple[str, float], ...] = ()  # lower-case name -> how many may run
    limit_default: float = CONCURRENCY_LIMIT_DEFAULT

    @classmethod
    def from_pool(cls, pool) -> FairSharePolicy:
        """From the `[negotiator]`, `[[accounting_group]]` and `[concurrency_limits]` tables."""
        default_surplus = pool.negotiator.accept_surplus
        groups = tuple(
            GroupQuota(g.name, g.quota_fraction if g.quota is None else g.quota,
                       dynamic=g.quota is None,
                       accept_surplus=default_surplus if g.accept_surplus is None
                       else g.accept_surplus)
            for g in pool.accounting_groups)
        limits = tuple(sorted((name.lower(), float(n))
                              for name, n in pool.concurrency_limits.items()))
        return cls(groups, limits, float(pool.negotiator.concurrency_limit_default))

    def charge_of(self, accounting_group: object, owner: str,
                  concurrency_limits: object) -> Charge:
        principal = accounting_group if isinstance(accounting_group, str) and accounting_group \
            else owner
        group, dot, _ = principal.rpartition(".")
        if not dot or group not in self._names:
            group = NICE_USER_GROUP if group == NICE_USER_GROUP else ROOT
        return Charge(principal, group, parse_limits(concurrency_limits))

    def limit(self, name: str) -> float:
        return self._limits.get(name, self.limit_default)

    def quotas(self, pool_cpus: float) -> dict[str, float]:
        static = [g for g in self.groups if not g.dynamic]
        dynamic = [g for g in self.groups if g.dynamic]
        static_sum = sum(g.quota for g in static)
        static_given = min(static_sum, pool_cpus)
        dynamic_pool = max(0.0, pool_cpus - static_given)
        fractions = max(1.0, sum(g.quota for g in dynamic))
        quotas = {g.name: g.quota * static_given / static_sum if static_sum else 0.0
                  for g in static}
        quotas.update({g.name: g.quota * dynamic_pool / fractions for g in dynamic})
        quotas[ROOT] = max(0.0, pool_cpus - sum(quotas.values()))
        return quotas

    def accepts_surplus(self, group: str) -> bool:
        return group == ROOT or self._surplus.get(group, False)

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(g.name for g in self.groups)

    @cached_property
    def _limits(self) -> dict[str, float]:
        return dict(self.limits)

    @cached_property
    def _surplus(self) -> dict[str, bool]:
        return {g.name: g.accept_surplus for g in self.groups}


def parse_limits(value: object) -> tuple[tuple[str, float], ...]:
    """HTCondor's ConcurrencyLimits: "name[:amount]" items, case-insensitive, 1 by default."""
    if not isinstance(value, str):
        return ()
    amounts: dict[str, float] = {}
    for item in re.split(r"[,\s]+", value.strip().lower()):
        name, _, amount = item.partition(":")
        try:
            count = float(amount) if amount else 1.0
        except ValueError:
            continue  # condor_submit refuses these; an odd ad is not worth a crash
        if name and count > 0:
            amounts[name] = amounts.get(name, 0.0) + count
    return tuple(sorted(amounts.items()))


def targets(policy: FairSharePolicy, quotas: Mapping[str, float],
            requested: Mapping[str, float], usage: Mapping[str, float]) -> dict[str, float]:
    """Cpus each group may hold after this round (usage included): HTCondor's fair share
    of quotas, surplus to the groups that accept it, fractions recovered as whole cpus."""
    allocated = {g: min(requested.get(g, 0.0), q) for g, q in quotas.items()}
    wanting = {g: requested.get(g, 0.0) - allocated[g] for g in quotas
               if policy.accepts_surplus(g) and requested.get(g, 0.0) - allocated[g] > _EPSILON}
    surplus = sum(q - allocated[g] for g, q in quotas.items())
    if surplus >= sum(wanting.values()):
        for g, want in wanting.items():
            allocated[g] += want
            surplus -= want
    else:
        surplus = _share_surplus(surplus, wanting, allocated, quotas, by_quota=True)
        surplus = _share_surplus(surplus, wanting, allocated, quotas, by_quota=False)
    spare = sum(a - math.floor(a + _EPSILON) for a in allocated.values())
    allocated = {g: math.floor(a + _EPSILON) for g, a in allocated.items()}
    for g in starvation_order(quotas, usage):
        if spare < 1 - _EPSILON:
            break
        if g in wanting and allocated[g] < requested.get(g, 0.0):
            allocated[g] += 1
            spare -= 1
    return allocated


def _share_surplus(surplus: float, wanting: dict[str, float], allocated: dict[str, float],
                   quotas: Mapping[str, float], by_quota: bool) -> float:
    """hgq_allocate_surplus_loop: in proportion to quota (or equally among zero quotas),
    each capped at what it still wants, until the surplus or the wants run out."""
    while surplus > _EPSILON:
        weights = {g: (quotas[g] if by_quota else 1.0) for g, want in wanting.items()
                   if want > _EPSILON and (quotas[g] > 0) == by_quota}
        total = sum(weights.values())
        if total <= 0:
            break
        given = 0.0
        for g, weight in weights.items():
            share = min(surplus * weight / total, wanting[g])
            allocated[g] += share
            wanting[g] -= share
            given += share
        surplus -= given
        if given <= _EPSILON:
            break
    return surplus


def starvation_order(quotas: Mapping[str, float], usage: Mapping[str, float]) -> list[str]:
    """HTCondor's default GROUP_SORT_EXPR: least usage per quota first, groups without a
    quota after, <none> last."""
    def key(group: str) -> tuple[float, str]:
        if group == ROOT:
            return (3.4e38, group)
        quota = quotas.get(group, 0.0)
        return (usage.get(group, 0.0) / quota if quota > 0 else 3.3e38, group)
    return sorted(quotas, key=key)
