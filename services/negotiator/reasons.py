"""Why an autocluster got nothing this pass: the first cause that holds, in words.

    no slots ─▶ none at its DESIRED_Sites ─▶ a custom resource no slot offers ─▶ too big
    for every slot ─▶ Requirements (its own, or the slots') ─▶ a concurrency limit ─▶ its
    group's quota ─▶ nice_user ─▶ its principal's fair share ─▶ "N slots match but not
    enough Boats free" ─▶ "N slots match but none has that free"

Slots are looked at by kind and advertised totals (Partition.totals), one
evaluation per kind, cached like the pass's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from .custom import Amounts, amount_of, covers
from .groups import NICE_USER_GROUP, ROOT
from .jobs import Resources

TotalsKey = tuple[str, int, int, int, Amounts]  # (kind text, cpus, MiB, MB disk, custom)


class Explainer:
    def __init__(self, table, layout, matcher, run) -> None:
        self.table = table
        self.pool = table.pool
        self.layout = layout
        self.matcher = matcher
        self.run = run
        self._sites: list[str] | None = None

    def explain(self, d) -> str:
        pool = self.pool
        if not pool.usable:
            retiring = f" ({pool.retiring} retiring)" if pool.retiring else ""
            return "no slots in the pool" + retiring
        job = d.job
        part = self.layout[job.refs]
        view = part.view(job.refs)
        classes = dict(part.totals)
        if job.sites is not None:
            classes = {k: n for k, n in classes.items()
                       if part.kind(k[0]).site.casefold() in job.sites}
            if not classes:
                return self._no_site(d)
        request = job.request
        for name, amount in request.custom:
            if not any(amount_of(k[4], name.lower()) > 0 for k in classes):
                return f"no slot offers {name} (it asks for {amount})"
        big_enough = {k: n for k, n in classes.items() if request.fits_in(*k[1:])}
        if not big_enough:
            return _too_big(request, classes)
        seen = {k: view.get(k[0]) or part.see(view, job.refs, k[0]) for k in big_enough}
        matching = [k for k in big_enough if self.matcher.matches(job, (seen[k], *k[1:]))]
        if not matching:
            return self._requirements(d, big_enough, seen)
        return self._after_matching(d, sum(big_enough[k] for k in matching),
                                    {k[0] for k in matching})

    def _after_matching(self, d, count: int, kinds: set[str]) -> str:
        run, charge = self.run, d.job.charge
        if d.limited_by:
            used = run.limit_usage.get(d.limited_by, 0.0)
            limit = run.policy.limit(d.limited_by)
            return f"concurrency limit {d.limited_by}: {used:g} of {limit:g} in use"
        if charge.group == NICE_USER_GROUP:
            return "nice_user: runs only on what nobody else wants, and nothing was left"
        if charge.group in run.targets:
            usage = run.group_usage.get(charge.group, 0.0)
            if usage + d.job.request.cpus > run.targets[charge.group] + 1e-9:
                name = "(no accounting group)" if charge.group == ROOT else charge.group
                return (f"accounting group {name} is at its quota: {usage:g} cpus in use, "
                        f"quota {run.quotas[charge.group]:g}")
        if d.share_limited:
            got = run.cpus_by_principal.get(charge.principal, 0)
            who = "owner" if charge.principal == d.ac.owner else "submitter"
            return (f"fair share: {who} {charge.principal} got their share this cycle "
                    f"({got} cpus)")
        verb = "matches" if count == 1 else "match"
        short = self._short_of(d.job, kinds)
        if short:
            return f"{_slots(count)} {verb} but not enough {short} free"
        return f"{_slots(count)} {verb} but none has {d.job.request} free"

    def _short_of(self, job, kinds: set[str]) -> str:
        """The custom resource the matching slots lack, when they have the cpus, memory
        and disk free (as the pass left them)."""
        if not job.wants:
            return ""
        rc, rm, rd = job.request
        free = [x for c, m, disk, x, kind in self.matcher.work_of(self.layout[job.refs])
                if kind in kinds and c >= rc and m >= rm and disk >= rd]
        if not free:
            return ""
        for name, amount in job.request.custom:
            wanted = ((name.lower(), amount),)
            if not any(covers(x, wanted) for x in free):
                return name
        return ""

    def _no_site(self, d) -> str:
        if self._sites is None:
            self._sites = sorted({rec.site for rec in self.pool.records.values()
                                  if rec.usable and rec.site})
        sites = self._sites
        shown = ", ".join(sites[:4]) + (", …" if len(sites) > 4 else "")
        where = f" (slots are at {shown})" if shown else ""
        return f"DESIRED_Sites {d.ac.desired_sites}: no slot at those sites{where}"

    def _requirements(self, d, classes: Mapping[TotalsKey, int], seen) -> str:
        """Tell a job that wants none of the slots from slots that do not want the job."""
        wanted = considered = 0
        for key, count in classes.items():
            considered += count
            if self._wants(d.job, (seen[key], *key[1:])):
                wanted += count
        if wanted:
            verb = "satisfies" if wanted == 1 else "satisfy"
            return (f"{wanted} of {_slots(considered)} {verb} its Requirements, "
                    "but their own Requirements reject it")
        return f"no slot matches its Requirements ({_slots(considered)} considered)"


    def _wants(self, job, vkey) -> bool:
        """Whether the job's own Requirements accept slots of the class (cached)."""
        found = job.wanted.get(vkey)
        if found is None:
            ad = self.matcher.slot_ad(vkey)
            # a.matches(b) evaluates b's Requirements against a: here the job's.
            found = job.wanted[vkey] = ad is not None and ad.matches(job.ad) is True
        return found


def _too_big(request: Resources, classes: Mapping[TotalsKey, int]) -> str:
    most = Resources(*(max(key[i] for key in classes) for i in (1, 2, 3)), tuple(
        (name, max(amount_of(key[4], name.lower()) for key in classes))
        for name, _ in request.custom))
    return f"requests {request}, more than any slot has (at most {most})"


def _slots(count: int) -> str:
    return f"{count} slot" if count == 1 else f"{count} slots"
