"""How the queue groups and shows jobs: autoclusters, job ids, requests, `burst q`'s view. Pure.

    job ad ──autocluster_of()──▶ id (hash of owner + the attributes that decide where it runs)
                                 └─ idle jobs per autocluster are the demand the schedd publishes
    "12" / "12.3" ──parse_job_id()──▶ (12, None) / (12, 3)
    jobs row ──job_view()──▶ JobInfo, with why an idle job waits (from match.analysis)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import classad2

from schemas.job import JobInfo
from services.condor import jobad
from services.condor.syntax import format_arguments

# Attributes that decide where a job can run. Attributes its Requirements or
# Rank read from the job itself (MY.x, or a bare name defined in the ad) are
# added per job: two jobs that differ in those must not share an autocluster.
SIGNIFICANT = ("Requirements", "Rank", "RequestCpus", "RequestMemory", "RequestDisk",
               "DESIRED_Sites", "JobUniverse", "AccountingGroup", "ConcurrencyLimits")

_JOB_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")


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


def parse_job_id(text: str) -> tuple[int, int | None]:
    """'12' -> (12, None) for a whole cluster, '12.3' -> (12, 3); ValueError otherwise."""
    match = _JOB_ID.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a job id (CLUSTER or CLUSTER.PROC)")
    cluster, proc = match.groups()
    return int(cluster), int(proc) if proc is not None else None


def job_id(cluster: int, proc: int) -> str:
    return f"{cluster}.{proc}"


def resource_requests(ad: classad2.ClassAd) -> tuple[int, int, int]:
    """(cpus, memory MiB, disk MiB) a job asks for; RequestDisk is KiB in job ads."""
    cpus = _int(ad.eval("RequestCpus") if "RequestCpus" in ad else 1, 1)
    memory = _int(ad.eval("RequestMemory") if "RequestMemory" in ad else 0, 0)
    disk_kib = _int(ad.eval("RequestDisk") if "RequestDisk" in ad else 0, 0)
    return cpus, memory, (disk_kib + 1023) // 1024


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


def job_view(row: dict, reasons_by_source: dict[str, dict[str, str]], *,
             details: bool = True) -> JobInfo:
    """What `burst q` shows of a job; without `details` (another owner's job) only what the
    public event stream says anyway: no command, arguments or reasons."""
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
        idle_reason=idle_reason(reasons_by_source, row["autocluster"])
        if state == "idle" and not row["claim_id"] else "",
        request_cpus=row["request_cpus"],
        request_memory_mb=row["request_memory_mb"],
        request_disk_mb=row["request_disk_mb"],
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        runs=row["runs"],
    )
