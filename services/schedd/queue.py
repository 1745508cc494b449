"""How the queue groups and shows jobs: autoclusters, requests, `burst q`'s view. Pure.

    job ad ──autocluster_of()──▶ id (hash of owner + the attributes that decide where it runs)
                                 └─ idle jobs per autocluster are the demand the schedd publishes
    jobs row ──job_view()──▶ JobInfo, with why an idle job waits (from match.analysis)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import classad2

from schemas.job import JobInfo
from services.condor import jobad
from services.condor.jobids import job_id
from services.condor.syntax import format_arguments

# Attributes that decide where a job can run. Attributes its Requirements or
# Rank read from the job itself (MY.x, or a bare name defined in the ad) are
# added per job: two jobs that differ in those must not share an autocluster.
SIGNIFICANT = ("Requirements", "Rank", "RequestCpus", "RequestMemory", "RequestDisk",
               "DESIRED_Sites", "JobUniverse", "AccountingGroup", "ConcurrencyLimits")


@dataclass(frozen=True)
class AutoclusterKey:
    id: str
    ad: str  # ClassAd text of the significant attributes only
    desired_sites: str


def autocluster_of(ad: classad2.ClassAd, owner: str) -> AutoclusterKey:
    names = set(SIGNIFICANT)
    for expr_name in ("Requirements", "Rank"):
        expr = ad.get(expr_name)
        if isinstance(expr, classad2.ExprTree):
            names.update(_own_references(ad, expr))
    significant = classad2.ClassAd()
    for name in sorted(names):
        if name in ad:
            significant[name] = ad.lookup(name)
    text = significant.printOld()
    digest = hashlib.sha1(f"{owner}\n{text}".encode()).hexdigest()[:12]
    sites = ad.get("DESIRED_Sites", "")
    return AutoclusterKey(id=digest, ad=str(significant),
                          desired_sites=sites if isinstance(sites, str) else "")


def _own_references(ad: classad2.ClassAd, expr: classad2.ExprTree) -> set[str]:
    refs = set()
    for ref in list(ad.externalRefs(expr)) + list(ad.internalRefs(expr)):
        if ref.startswith("MY."):
            refs.add(ref[3:])
        elif ref and "." not in ref and ref in ad:
            refs.add(ref)
    return refs


def resource_requests(ad: classad2.ClassAd) -> tuple[int, int, int]:
    """(cpus, memory MiB, disk MiB) a job asks for; RequestDisk is KiB in job ads."""
    cpus = _int(ad.eval("RequestCpus") if "RequestCpus" in ad else 1, 1)
    memory = _int(ad.eval("RequestMemory") if "RequestMemory" in ad else 0, 0)
    disk_kib = _int(ad.eval("RequestDisk") if "RequestDisk" in ad else 0, 0)
    return cpus, memory, (disk_kib + 1023) // 1024


def custom_requests(ad: classad2.ClassAd) -> dict[str, int]:
    """Custom resources a job asks for (request_gpus, request_<name>: Request<Name> beyond
    cpus, memory and disk), by name, whole and above 0."""
    found = {}
    for attr in ad:
        name = attr[len("Request"):]
        if attr.lower().startswith("request") and name.lower() not in _BUILTIN_REQUESTS:
            amount = _int(ad.eval(attr), 0)
            if amount > 0:
                found[name] = amount
    return found


_BUILTIN_REQUESTS = ("cpus", "memory", "disk", "")


def _int(value: object, default: int) -> int:
    if isinstance(value, (bool, classad2.Value)):
        return default
    if isinstance(value, (int, float)):
        return int(value)
    return default


def idle_reason(reasons_by_source: dict[str, dict[str, str]], autocluster: str) -> str:
    """Why an idle job waits, from what the frontend and negotiator last said."""
    found = [reasons[autocluster] for _source, reasons in sorted(reasons_by_source.items())
             if reasons.get(autocluster)]
    return "; ".join(dict.fromkeys(found))


def waiting_reason(row: dict, reasons_by_source: dict[str, dict[str, str]], now: float) -> str:
    """Why an idle job without a claim waits: its deferral_time, or what the frontend and
    negotiator said of its autocluster."""
    if row.get("not_before") and row["not_before"] > now:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["not_before"]))
        return f"deferred until {when} (deferral_time)"
    return idle_reason(reasons_by_source, row["autocluster"])


def job_view(row: dict, reasons_by_source: dict[str, dict[str, str]], *,
             details: bool = True, now: float = 0.0) -> JobInfo:
    """What `burst q` shows of a job; without `details` (another owner's job) only what the
    public event stream says anyway: no command, arguments or reasons. `now` is when the
    view is made (a job deferred past it says so)."""
    state = row["state"]
    if not details:
        return JobInfo(id=job_id(row["cluster"], row["proc"]), owner=row["owner"], state=state,
                       exit_code=row["exit_code"],
                       entry=row["entry"] if state != "idle" else None,
                       site=row["site"] if state != "idle" else None,
                       provider=row["provider"] if state != "idle" else None,
                       request_cpus=row["request_cpus"],
                       request_memory_mb=row["request_memory_mb"],
                       request_disk_mb=row["request_disk_mb"],
                       submitted_at=row["submitted_at"], runs=row["runs"])
    ad = classad2.ClassAd(row["ad"])
    return JobInfo(
        id=job_id(row["cluster"], row["proc"]),
        owner=row["owner"],
        state=state,
        exit_code=row["exit_code"],
        entry=row["entry"] if state != "idle" else None,
        site=row["site"] if state != "idle" else None,
        provider=row["provider"] if state != "idle" else None,
        pilot_id=row["pilot_id"] if state != "idle" else None,
        cmd=str(ad.get("Cmd", "")),
        args=format_arguments(jobad.arguments(ad)),  # Arguments, or old-syntax Args
        hold_reason=row["hold_reason"] or "",
        idle_reason=waiting_reason(row, reasons_by_source, now)
        if state == "idle" and not row["claim_id"] else "",
        request_cpus=row["request_cpus"],
        request_memory_mb=row["request_memory_mb"],
        request_disk_mb=row["request_disk_mb"],
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        runs=row["runs"],
    )
