"""Frontend provisioning policy: how many pilots one group asks for at each entry.

One pure call per group per cycle; the handler does the I/O around it:

    demand.autoclusters (per schedd) ─┐
    entry.advertised (ads, sites) ────┤                ┌─▶ EntryRequest per entry ─▶ glidein.request
    pilots of this group per entry ───┼─▶ plan_group ──┤
    last cycle's EntryRequests ───────┘                └─▶ unmatched reasons ──────▶ match.analysis

The math follows GlideinWMS (glideinFrontendElement, glideinFrontendLib),
reworked for partitionable cloud pilots:

1. Matching. An autocluster can run at an entry when the job's Requirements
   accept the entry's prototype slot ad, the group's match expression accepts
   the pair, the entry is at one of the autocluster's DESIRED_Sites (if any),
   one job fits in one pilot, and the group holds a credential for the entry's
   trust domain (a readable one, where the entry needs a secret: an EC2 key
   pair, a token, a proxy). Only the job side is evaluated: the pilot's START
   is not known before it boots.
2. Demand. Idle jobs are split evenly among the entries that can run them
   (GlideinWMS "prop_jobs"), so one queue does not raise pilots everywhere.
   Jobs become pilots by packing: a pilot with C cpus and M MB takes
   min(C // RequestCpus, M // RequestMemory) jobs of one autocluster, so 40
   one-cpu jobs need 10 four-cpu pilots. The fractional pilots of all
   autoclusters at an entry are added up, then rounded up once.
3. Request. idle_target is the number of pilots the group wants waiting
   (pending or idle) at the entry, as glidein.request v2 defines it; the
   factory launches idle_target - waiting. Only the growth (new pilots) is
   limited, never the pilots already there: capped by max_idle and
   max_running, halved when idle pilots reach curb_idle (GlideinWMS curb),
   zero when too many pilots are held, bounded by the ramp (below), then the
   group totals are shared fairly (max-min) among entries.
4. Ramp. A target may grow at most max(ramp_step, ramp_growth * base) per
   cycle, base being last cycle's target or the pilots now waiting, whichever
   is larger: slow start, 0 → 20 → 40 → 80 with the defaults. This replaces
   GlideinWMS' "ask for a third" attenuation, which was needed there because
   its factory could not see the glideins already requested.
5. Removal. Pilots are in surplus when nothing waits for them (no demand) or
   more are waiting than the demand. After `settle_cycles` surplus cycles in a
   row (demand often dips between two submissions) the request says IDLE
   when there is no demand at all (retire idle and never-registered pilots)
   and WAIT when there is still some (cancel only never-registered pilots:
   idle ones will take the remaining jobs). NO otherwise. ALL is never chosen
   here; it is left to an operator's command.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import classad2

from schemas.demand import AutoCluster
from schemas.provisioning import EntryAdvertised, GlideinRequest
from services.runtime.fairness import fair_share

# Float sums like 0.1 * 30 land a hair above the integer; don't round that up.
_ROUNDING_SLACK = 1e-9


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GroupLimits:
    max_idle: int = 100  # per entry: most pilots wanted waiting at once
    curb_idle: int = 50  # per entry: this many idle pilots halve the growth
    max_running: int = 10000  # per entry: most pilots of the group, all states
    max_held: int = 50  # per entry: more held pilots than this stop new requests
    total_max_idle: int = 1000  # all entries together
    total_max_running: int = 10000  # all entries together
    ramp_step: int = 20  # a target may always grow by this much per cycle ...
    ramp_growth: float = 1.0  # ... or by this fraction of itself, if more
    settle_cycles: int = 2  # surplus cycles in a row before pilots are removed


@dataclass(frozen=True)
class GroupPolicy:
    """What one frontend group needs to decide; built once from the config."""

    name: str
    match_expr: str = "true"  # ClassAd: MY is the job, TARGET the entry's glidein
    trust_domains: frozenset[str] = frozenset()  # domains we hold credentials for
    secretless: frozenset[str] = frozenset()  # ... of which these with the reference "none"
    idle_lifetime_s: float = 0.0
    limits: GroupLimits = field(default_factory=GroupLimits)

    def __post_init__(self) -> None:
        # A typo in the match expression would silently match nothing: fail at startup.
        try:
            classad2.ExprTree(self.match_expr)
        except (classad2.ClassAdException, TypeError, ValueError) as exc:
            raise ValueError(
                f"group {self.name}: match expression {self.match_expr!r} does not parse"
            ) from exc

    @classmethod
    def from_config(cls, config: Any) -> GroupPolicy:
        """From services.runtime.config.GroupConfig; knobs it lacks keep our defaults."""
        limits = getattr(config, "limits", None)
        values = {}
        if dataclasses.is_dataclass(limits):
            for knob in dataclasses.fields(limits):
                ours = _CONFIG_LIMIT_NAMES.get(knob.name, knob.name)
                if ours in GroupLimits.__dataclass_fields__:
                    values[ours] = getattr(limits, knob.name)
        return cls(
            name=config.name,
            match_expr=getattr(config, "match", "") or "true",
            trust_domains=frozenset(getattr(config, "credentials", None) or ()),
            secretless=frozenset(domain for domain, ref in
                                 (getattr(config, "credentials", None) or {}).items()
                                 if ref == "none"),
            idle_lifetime_s=float(getattr(config, "idle_lifetime_s", 0.0)),
            limits=GroupLimits(**values),
        )


_CONFIG_LIMIT_NAMES = {  # the TOML's spelling -> ours
    "max_idle_per_entry": "max_idle",
    "curb_idle_per_entry": "curb_idle",
    "max_running_per_entry": "max_running",
    "max_held_per_entry": "max_held",
}


# ----------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EntryInfo:
    name: str
    site: str
    ad: str  # prototype slot ad a pilot of this entry will advertise
    trust_domain: str = ""  # "" needs no credential (e.g. local process pilots)
    cpus: int = 1
    memory_mb: int = 1024
    credential: str = "none"  # the kind of secret the entry needs: none, ec2-keypair, ...

    @property
    def needs_secret(self) -> bool:
        return bool(self.trust_domain) and self.credential not in ("", "none")

    @classmethod
    def from_advertised(cls, adv: EntryAdvertised) -> EntryInfo:
        return cls(adv.entry, adv.site, adv.ad, adv.trust_domain, adv.cpus, adv.memory_mb,
                   adv.credential or "none")


@dataclass(frozen=True)
class PilotCounts:
    """This group's pilots at one entry."""

    pending: int = 0  # launched, not registered yet
    idle: int = 0  # registered, no claim
    busy: int = 0  # running jobs
    retiring: int = 0  # finishing their jobs, take no new ones
    held: int = 0  # failed to start or stuck; need an operator or the factory

    @property
    def waiting(self) -> int:
        """Pilots that will take idle jobs soon, so they already cover demand."""
        return self.pending + self.idle

    @property
    def total(self) -> int:
        return self.pending + self.idle + self.busy + self.retiring + self.held

    @classmethod
    def from_states(cls, states: Mapping[str, int]) -> PilotCounts:
        """From a state -> count map as `burst status` shows it; lost pilots are gone."""
        return cls(
            pending=states.get("pending", 0),
            idle=states.get("idle", 0),
            busy=states.get("busy", 0),
            retiring=states.get("retiring", 0),
            held=states.get("held", 0) + states.get("failed", 0),
        )


# ---------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class EntryRequest:
    entry: str
    idle_target: int  # pilots wanted waiting (pending or idle) at the entry
    max_glideins: int  # ceiling on all the group's pilots at the entry
    remove_excess: str  # NO | WAIT | IDLE (ALL only from operators)
    reason: str  # one line an operator can read in the logs
    demand_pilots: int  # pilots the idle jobs here would fill
    idle_jobs: float  # idle jobs attributed to this entry after the split
    new_pilots: int  # what the factory should launch now: idle_target - waiting
    pilots: PilotCounts = field(default_factory=PilotCounts)
    quiet_cycles: int = 0  # surplus cycles in a row; read back next cycle


@dataclass(frozen=True)
class GroupPlan:
    requests: dict[str, EntryRequest]  # entry name -> request, for every entry
    unmatched: dict[str, dict[str, str]]  # schedd -> autocluster id -> why no entry runs it
    matched: dict[str, dict[str, tuple[str, ...]]]  # schedd -> autocluster id -> entries


def glidein_request(
    frontend: str, policy: GroupPolicy, request: EntryRequest, *, seq: int = 0, now: float = 0.0
) -> GlideinRequest:
    """The message for the factory; the handler adds the sealed credentials."""
    return GlideinRequest(
        frontend=frontend,
        group=policy.name,
        entry=request.entry,
        idle_target=request.idle_target,
        max_glideins=request.max_glideins,
        remove_excess=request.remove_excess,
        idle_lifetime_s=policy.idle_lifetime_s,
        seq=seq,
        time=now,
    )


# --------------------------------------------------------------------- matching


@dataclass(frozen=True)
class PairMatch:
    """What one autocluster ad and one entry ad say about each other."""

    requirements: bool  # the job's Requirements accept the entry's glidein
    group: bool  # the group's match expression accepts the pair
    request_cpus: int
    request_memory_mb: int  # 0 when the job does not say
    # Custom resources (request_gpus, request_<name>) it asks for, with what one pilot of
    # the entry has of each (its prototype's Total<name>; 0 where it has none)
    custom: tuple[tuple[str, int, int], ...] = ()


class Matcher:
    """Memo of ClassAd parsing and matching; keep one per frontend process.

    classad2 evaluates ~80k pairs/s and the same autoclusters meet the same
    entries every cycle, so each (job ad, entry ad, expression) is evaluated
    once. When the memo grows past `max_pairs` it is emptied: ads change over
    hours, and a stale pair costs one re-evaluation.
    """

    def __init__(self, max_pairs: int = 200_000) -> None:
        self.max_pairs = max_pairs
        self.evaluations = 0  # pairs actually evaluated, for tests and metrics
        self._ads: dict[str, classad2.ClassAd | None] = {}
        self._exprs: dict[str, classad2.ExprTree] = {}
        self._pairs: dict[tuple[str, str, str], PairMatch] = {}

    def ad(self, text: str) -> classad2.ClassAd | None:
        """The parsed ad, or None when the text is not a ClassAd."""
        if text not in self._ads:
            if len(self._ads) > self.max_pairs:
                self._ads.clear()
            try:
                self._ads[text] = classad2.ClassAd(text)
            except (classad2.ClassAdException, TypeError, ValueError):
                self._ads[text] = None
        return self._ads[text]

    def pair(self, job_text: str, entry_text: str, match_expr: str) -> PairMatch | None:
        """None when either ad does not parse."""
        key = (job_text, entry_text, match_expr)
        found = self._pairs.get(key)
        if found is not None:
            return found
        job, entry = self.ad(job_text), self.ad(entry_text)
        if job is None or entry is None:
            return None
        if len(self._pairs) > self.max_pairs:
            self._pairs.clear()
        self.evaluations += 1
        requirements = job.lookup("Requirements") if "Requirements" in job else None
        found = PairMatch(
            requirements=requirements is None or _is_true(_evaluate(requirements, job, entry)),
            group=_is_true(_evaluate(self._expr(match_expr), job, entry)),
            request_cpus=max(_request(job, entry, "RequestCpus", 1), 1),
            request_memory_mb=_request(job, entry, "RequestMemory", 0),
            custom=_custom_requests(job, entry),
        )
        self._pairs[key] = found
        return found

    def _expr(self, text: str) -> classad2.ExprTree:
        if text not in self._exprs:
            self._exprs[text] = classad2.ExprTree(text)
        return self._exprs[text]


def _evaluate(expr: classad2.ExprTree, job: classad2.ClassAd, entry: classad2.ClassAd) -> Any:
    try:
        value = expr.eval(job, entry)
        if isinstance(value, classad2.Value) and value == classad2.Value.Undefined:
            # HTCondor's matchmaking looks an unscoped name up in MY, then in
            # TARGET; classad2's eval looks only in MY. Overlay the job on the
            # entry so `Arch == "X86_64"` works as users expect.
            merged = classad2.ClassAd()
            merged.update(entry)
            merged.update(job)
            value = expr.eval(merged, entry)
        return value
    except (classad2.ClassAdException, TypeError, ValueError):
        return classad2.Value.Error


def _is_true(value: Any) -> bool:
    # classad2.Value is an IntEnum and Value.Error == 1: rule it out before
    # treating a result as a number.
    if isinstance(value, classad2.Value):
        return False
    if isinstance(value, (bool, int, float)):
        return bool(value)
    return False


def _request(job: classad2.ClassAd, entry: classad2.ClassAd, attr: str, default: int) -> int:
    if attr not in job:
        return default
    value = _evaluate(job.lookup(attr), job, entry)  # may depend on TARGET (whole-node jobs)
    if isinstance(value, (classad2.Value, bool)) or not isinstance(value, (int, float)):
        return default
    return max(math.ceil(value), 0)


_BUILTIN_REQUESTS = ("requestcpus", "requestmemory", "requestdisk")


def _custom_requests(job: classad2.ClassAd, entry: classad2.ClassAd
                     ) -> tuple[tuple[str, int, int], ...]:
    """(name, asked, one pilot's total) of each custom resource the job asks for."""
    found = []
    for attr in job:
        if attr.lower().startswith("request") and attr.lower() not in _BUILTIN_REQUESTS:
            asked = _request(job, entry, attr, 0)
            if asked > 0:
                name = attr[len("Request"):]
                total = entry.eval(f"Total{name}") if f"Total{name}" in entry else 0
                found.append((name, asked, total if isinstance(total, int)
                              and not isinstance(total, bool) else 0))
    return tuple(found)


def _jobs_per_pilot(pair: PairMatch, entry: EntryInfo) -> int:
    """How many jobs of one autocluster one pilot of the entry takes; 0: none fits."""
    fits = [entry.cpus // pair.request_cpus,
            *(total // asked for _name, asked, total in pair.custom)]
    if pair.request_memory_mb > 0:
        fits.append(entry.memory_mb // pair.request_memory_mb)
    return min(fits)


def _sites(desired_sites: str) -> set[str]:
    # Compared here rather than in a ClassAd: site names are matched ignoring case.
    return {site.strip().casefold() for site in desired_sites.split(",") if site.strip()}


def _too_big(pairs: Mapping[str, PairMatch | None], entries: Sequence[EntryInfo]) -> str:
    """The usual reason nothing matches, said plainly: no pilot is that large, or has none
    of a custom resource the job asks for."""
    pair = next((p for p in pairs.values() if p is not None), None)
    if pair is None:
        return ""
    for name, asked, _ in pair.custom:
        most = max((total for p in pairs.values() if p is not None
                    for n, _asked, total in p.custom if n == name), default=0)
        if most == 0:
            return f"no entry offers {name} (it asks for {asked})"
        if most < asked:
            return f"no entry has pilots with {asked} {name} (the most: {most})"
    most_memory = max(e.memory_mb for e in entries)
    most_cpus = max(e.cpus for e in entries)
    if pair.request_memory_mb > most_memory:
        return (f"no entry has pilots with {pair.request_memory_mb} MiB of memory "
                f"(the largest have {most_memory} MiB)")
    if pair.request_cpus > most_cpus:
        return (f"no entry has pilots with {pair.request_cpus} cpus "
                f"(the largest have {most_cpus})")
    return ""


def _names(entries: Sequence[EntryInfo], limit: int = 5) -> str:
    names = [e.name for e in entries[:limit]]
    more = f", +{len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(names) + more


@dataclass(frozen=True)
class _Placement:
    """Entries that can run one autocluster, each with jobs per pilot."""

    entries: tuple[tuple[EntryInfo, int], ...]
    why_not: str = ""  # set when `entries` is empty


def _place(
    autocluster: AutoCluster,
    entries: Sequence[EntryInfo],
    policy: GroupPolicy,
    matcher: Matcher,
    unusable: Mapping[str, str],
) -> _Placement:
    """Where an autocluster can run; the filters go from the job's own wishes
    to the group's means, and the first that leaves nothing gives the reason."""
    if not entries:
        return _Placement((), "no entries are advertised")
    if matcher.ad(autocluster.ad) is None:
        return _Placement((), "its ClassAd does not parse")
    pairs = {e.name: matcher.pair(autocluster.ad, e.ad, policy.match_expr) for e in entries}
    accepted = [e for e in entries if pairs[e.name] is not None and pairs[e.name].requirements]
    if not accepted:
        return _Placement((), _too_big(pairs, entries) or
                          f"no entry matches its Requirements ({len(entries)} entries: "
                          f"{_names(entries)})")
    allowed = [e for e in accepted if pairs[e.name].group]
    if not allowed:
        return _Placement(
            (),
            f"entries matching its Requirements ({_names(accepted)}) are "
            f"excluded by group {policy.name}'s match expression",
        )
    wanted_sites = _sites(autocluster.desired_sites)
    at_sites = [e for e in allowed if not wanted_sites or e.site.casefold() in wanted_sites]
    if not at_sites:
        return _Placement(
            (),
            f"DESIRED_Sites {autocluster.desired_sites}: no matching entry at "
            f"those sites (matching entries are at "
            f"{', '.join(sorted({e.site for e in allowed}))})",
        )
    fitting = [(e, _jobs_per_pilot(pairs[e.name], e)) for e in at_sites]
    fitting = [(e, n) for e, n in fitting if n > 0]
    if not fitting:
        pair = pairs[at_sites[0].name]
        biggest = max(at_sites, key=lambda e: (e.cpus, e.memory_mb))
        return _Placement(
            (),
            f"one job needs {pair.request_cpus} cpus and "
            f"{pair.request_memory_mb} MB; the largest matching pilot has "
            f"{biggest.cpus} cpus and {biggest.memory_mb} MB",
        )
    gaps = {e.name: _credential_gap(e, policy, unusable) for e, _ in fitting}
    usable = [(e, n) for e, n in fitting if not gaps[e.name]]
    if not usable:
        named = _names([e for e, _ in fitting])
        if set(gaps.values()) == {_NOT_HELD}:
            domains = ", ".join(sorted({e.trust_domain for e, _ in fitting}))
            return _Placement(
                (), f"no credentials for trust domain {domains} of matching entries ({named})")
        said = sorted({gap for gap in gaps.values() if gap != _NOT_HELD})
        return _Placement((), f"{'; '.join(said)} (matching entries: {named})")
    return _Placement(tuple(usable))


_NOT_HELD = "not held"


def _credential_gap(entry: EntryInfo, policy: GroupPolicy, unusable: Mapping[str, str]) -> str:
    """Why the group cannot have pilots at the entry for want of a credential; "" if it can.

    GlideinWMS' rule: a group needs a credential for an entry's trust domain; where the
    entry needs a secret, a reference that reads (`unusable` says which do not, now)."""
    domain = entry.trust_domain
    if not domain:
        return ""
    if domain not in policy.trust_domains:
        return _NOT_HELD
    if not entry.needs_secret:
        return ""
    if domain in policy.secretless:
        return (f"group {policy.name} holds no {entry.credential} credential for trust domain "
                f"{domain} (its reference is none)")
    if domain in unusable:
        return (f"group {policy.name}'s credential for trust domain {domain} cannot be read: "
                f"{unusable[domain]}")
    return ""


# ----------------------------------------------------------------------- demand


@dataclass(frozen=True)
class _EntryDemand:
    idle_jobs: float = 0.0
    pilots: float = 0.0  # fractional: rounded up once, after all autoclusters are added
    autoclusters: int = 0

    @property
    def whole_pilots(self) -> int:
        return max(math.ceil(self.pilots - _ROUNDING_SLACK), 0)


def _split_demand(placements: Sequence[tuple[AutoCluster, _Placement]]) -> dict[str, _EntryDemand]:
    jobs: dict[str, float] = defaultdict(float)
    pilots: dict[str, float] = defaultdict(float)
    autoclusters: dict[str, int] = defaultdict(int)
    for autocluster, placement in placements:
        if not placement.entries:
            continue
        share = autocluster.idle / len(placement.entries)
        for entry, jobs_per_pilot in placement.entries:
            jobs[entry.name] += share
            pilots[entry.name] += share / jobs_per_pilot
            autoclusters[entry.name] += 1
    return {name: _EntryDemand(jobs[name], pilots[name], autoclusters[name]) for name in jobs}


# ---------------------------------------------------------------------- request


@dataclass(frozen=True)
class _Draft:
    entry: str
    demand: int
    idle_jobs: float
    autoclusters: int
    counts: PilotCounts
    new_pilots: int  # before the group totals are shared
    notes: tuple[str, ...]


def _draft(
    entry: str,
    demand: _EntryDemand,
    counts: PilotCounts,
    limits: GroupLimits,
    previous: EntryRequest | None,
) -> _Draft:
    wanted = demand.whole_pilots
    new, notes = _growth(wanted, counts, limits, previous)
    return _Draft(entry, wanted, demand.idle_jobs, demand.autoclusters, counts, new, notes)


def _growth(
    wanted: int, counts: PilotCounts, limits: GroupLimits, previous: EntryRequest | None
) -> tuple[int, tuple[str, ...]]:
    """New pilots worth launching at one entry, and the limits that bit."""
    if counts.held > limits.max_held:
        return 0, (f"{counts.held} held pilots > max_held {limits.max_held}: no new pilots",)
    new = wanted - counts.waiting
    if new <= 0:
        return 0, ()
    notes = []
    caps = {
        f"max_idle {limits.max_idle}": limits.max_idle - counts.waiting,
        f"max_running {limits.max_running}": limits.max_running - counts.total,
    }
    for name, room in caps.items():
        if new > room:
            new = max(room, 0)
            notes.append(f"capped by {name}")
    if new > 0 and counts.idle >= limits.curb_idle:
        new = max(new // 2, 1)
        notes.append(f"halved: {counts.idle} idle pilots >= curb_idle {limits.curb_idle}")
    base = max(previous.idle_target if previous else 0, counts.waiting)
    ceiling = base + max(limits.ramp_step, math.floor(base * limits.ramp_growth))
    if counts.waiting + new > ceiling:
        new = max(ceiling - counts.waiting, 0)
        notes.append(f"ramp: at most {ceiling} waiting this cycle")
    return new, tuple(notes)


def _share_group_totals(
    drafts: Mapping[str, _Draft], limits: GroupLimits
) -> tuple[dict[str, int], dict[str, str]]:
    wants = {name: d.new_pilots for name, d in drafts.items()}
    notes: dict[str, str] = {}
    totals = (
        ("total_max_idle", limits.total_max_idle, sum(d.counts.waiting for d in drafts.values())),
        (
            "total_max_running",
            limits.total_max_running,
            sum(d.counts.total for d in drafts.values()),
        ),
    )
    for name, limit, used in totals:
        if sum(wants.values()) <= limit - used:
            continue
        shared = fair_share(wants, limit - used)
        for entry, share in shared.items():
            if share < wants[entry]:
                notes[entry] = f"group {name} {limit} shared among entries"
        wants = shared
    return wants, notes


def _remove_excess(
    wanted: int, counts: PilotCounts, limits: GroupLimits, previous: EntryRequest | None
) -> tuple[str, int]:
    surplus = wanted == 0 or counts.waiting > wanted
    quiet = (previous.quiet_cycles if previous else 0) + 1 if surplus else 0
    if quiet < limits.settle_cycles:
        return "NO", quiet
    return ("IDLE" if wanted == 0 else "WAIT"), quiet


def _finish(
    draft: _Draft, new: int, extra_note: str, limits: GroupLimits, previous: EntryRequest | None
) -> EntryRequest:
    counts = draft.counts
    idle_target = min(draft.demand, counts.waiting + new)
    # Busy, retiring and held pilots stay; the ceiling leaves room for them and the target.
    max_glideins = min(
        limits.max_running, counts.busy + counts.retiring + counts.held + idle_target
    )
    mode, quiet = _remove_excess(draft.demand, counts, limits, previous)
    notes = [*draft.notes, extra_note] if extra_note else list(draft.notes)
    reason = (
        f"{draft.idle_jobs:g} idle jobs ({draft.autoclusters} autoclusters) fill "
        f"{draft.demand} pilots; {counts.waiting} waiting ({counts.pending} pending, "
        f"{counts.idle} idle), {counts.busy} busy, {counts.held} held; +{new} -> "
        f"idle_target {idle_target}, max {max_glideins}, remove {mode}"
    )
    if notes:
        reason += "; " + "; ".join(notes)
    return EntryRequest(
        entry=draft.entry,
        idle_target=idle_target,
        max_glideins=max_glideins,
        remove_excess=mode,
        reason=reason,
        demand_pilots=draft.demand,
        idle_jobs=draft.idle_jobs,
        new_pilots=max(idle_target - counts.waiting, 0),
        pilots=counts,
        quiet_cycles=quiet,
    )


# ------------------------------------------------------------------------ cycle


def plan_group(
    policy: GroupPolicy,
    demand: Mapping[str, Sequence[AutoCluster]],
    entries: Sequence[EntryInfo],
    pilots: Mapping[str, PilotCounts],
    previous: Mapping[str, EntryRequest] | None = None,
    matcher: Matcher | None = None,
    unusable: Mapping[str, str] | None = None,
) -> GroupPlan:
    """One frontend cycle for one group.

    demand: schedd name -> its latest autoclusters. pilots: entry name -> this
    group's pilots there. previous: last cycle's plan.requests (ramp and
    removal read them). unusable: trust domain -> why the group's credential
    for it cannot be read now (the handler tried). A request is made for every
    entry, so an entry that lost its demand gets told to remove its pilots.
    """
    matcher = matcher or Matcher()
    previous = previous or {}
    unusable = unusable or {}
    placements: dict[tuple[str, str], tuple[AutoCluster, _Placement]] = {}
    for schedd, autoclusters in demand.items():
        for autocluster in autoclusters:
            if autocluster.idle > 0:
                placements[(schedd, autocluster.id)] = (
                    autocluster,
                    _place(autocluster, entries, policy, matcher, unusable),
                )
    per_entry = _split_demand(list(placements.values()))
    drafts = {
        e.name: _draft(
            e.name,
            per_entry.get(e.name, _EntryDemand()),
            pilots.get(e.name, PilotCounts()),
            policy.limits,
            previous.get(e.name),
        )
        for e in entries
    }
    new, notes = _share_group_totals(drafts, policy.limits)
    requests = {
        name: _finish(d, new[name], notes.get(name, ""), policy.limits, previous.get(name))
        for name, d in drafts.items()
    }
    unmatched: dict[str, dict[str, str]] = {}
    matched: dict[str, dict[str, tuple[str, ...]]] = {}
    for (schedd, ac_id), (_, placement) in placements.items():
        if placement.entries:
            matched.setdefault(schedd, {})[ac_id] = tuple(e.name for e, _ in placement.entries)
        else:
            unmatched.setdefault(schedd, {})[ac_id] = placement.why_not
    return GroupPlan(requests, unmatched, matched)
