"""A pilot's slot ad: the ClassAd a partitionable slot advertises, and the resources it counts in.

    PilotContext (who, where, totals) ─┐
    Resources free now ────────────────┴─▶ slot_ad() ─▶ ClassAd the negotiator matches jobs against

As in HTCondor, the partitionable slot advertises what is *free* as Cpus,
Memory (MiB) and Disk (KiB), and its totals as TotalCpus/TotalMemory/TotalDisk;
custom resources an entry declares (gpus = 1, resources = { Boats = 2 }) the
same way: GPUs / Boats free, TotalGPUs, TotalSlotGPUs, DetectedGPUs, and all of
them named in MachineResources.
The glidein advertises it (carving claims out of it, services/glidein/logic.py)
and the factory builds an entry's prototype with it before any pilot exists,
so both always agree. Pure: no I/O, no clock (the host's CPU name aside).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import classad2

from .pilot import PilotContext

# Requests a job ad may lack: a missing RequestCpus means one core (HTCondor's
# default), missing memory/disk requests ask for nothing. Written this way the
# expression is never undefined, so an odd job is simply matched or not.
REQUIREMENTS = (
    "ifThenElse(isUndefined(TARGET.RequestCpus), 1, TARGET.RequestCpus) <= MY.Cpus"
    " && ifThenElse(isUndefined(TARGET.RequestMemory), 0, TARGET.RequestMemory) <= MY.Memory"
    " && ifThenElse(isUndefined(TARGET.RequestDisk), 0, TARGET.RequestDisk) <= MY.Disk"
)

# Attributes the pilot itself sets; context attributes cannot override them.
BUILTIN = (
    "Name", "Machine", "SlotType", "PartitionableSlot", "Cpus", "Memory", "Disk",
    "TotalCpus", "TotalMemory", "TotalDisk", "IsGlidein", "PilotId", "GLIDEIN_Site",
    "GLIDEIN_Entry_Name", "GLIDEIN_Factory", "GLIDEIN_Name", "GLIDEIN_ToDie",
    "GLIDECLIENT_Group", "CloudProvider", "CloudInstanceID", "CloudInstanceType", "CloudSpot",
    "Arch", "OpSys", "Start", "Requirements", "BurstJobIsolation", "BurstJobs",
)


@dataclass(frozen=True)
class Resources:
    cpus: int
    memory_mb: int
    disk_mb: int
    custom: Mapping[str, int] = field(default_factory=dict)  # GPUs, Boats, ... by slot ad name

    def fits_in(self, other: Resources) -> bool:
        return (self.cpus <= other.cpus and self.memory_mb <= other.memory_mb
                and self.disk_mb <= other.disk_mb
                and all(amount <= other.amount(name) for name, amount in self.custom.items()))

    def amount(self, name: str) -> int:
        """How much of custom resource `name` (any case, as ClassAd names) there is."""
        return next((have for known, have in self.custom.items()
                     if known.lower() == name.lower()), 0)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpus - other.cpus, self.memory_mb - other.memory_mb,
                         self.disk_mb - other.disk_mb,
                         {name: have - other.amount(name) for name, have in self.custom.items()})

    def __str__(self) -> str:
        custom = "".join(f", {amount} {name}" for name, amount in self.custom.items())
        return f"{self.cpus} cpus, {self.memory_mb} MiB memory, {self.disk_mb} MB disk{custom}"


def slot_ad(ctx: PilotContext, free: Resources, *, host: str = "",
            started_at: float | None = None, isolation: str | None = None,
            jobs: Sequence[str] | None = None) -> classad2.ClassAd:
    """The partitionable slot's ClassAd, with GlideinWMS and cloud attributes.

    `started_at` (epoch seconds) adds GLIDEIN_ToDie, when the pilot will be
    gone at the latest, which jobs may use to avoid pilots about to leave.
    A running pilot also says how its jobs are isolated (BurstJobIsolation:
    "uid", each job as a slot user of its own, or "none", as the pilot's user)
    and which jobs it holds (BurstJobs, a list of job ids), so a schedd can
    requeue a job claimed to it that it no longer has.
    """
    ad = classad2.ClassAd()
    own = {name.lower() for name in (*BUILTIN, *_resource_attributes(ctx.resources))}
    for name, value in ctx.attributes.items():
        if name.lower() not in own:
            ad[name] = value
    ad["Name"] = f"slot1@{ctx.pilot_id}"
    ad["Machine"] = host or ctx.pilot_id
    ad["SlotType"] = "Partitionable"
    ad["PartitionableSlot"] = True
    ad["Cpus"], ad["Memory"], ad["Disk"] = free.cpus, free.memory_mb, free.disk_mb * 1024
    ad["TotalCpus"], ad["TotalMemory"] = ctx.cpus, ctx.memory_mb
    ad["TotalDisk"] = ctx.disk_mb * 1024  # KiB, as HTCondor advertises Disk
    _set_custom(ad, ctx.resources, free)
    ad["IsGlidein"] = True
    ad["PilotId"] = ctx.pilot_id
    _set_glidein(ad, ctx, started_at)
    ad["CloudProvider"] = ctx.provider
    ad["CloudInstanceID"] = ctx.instance_id
    ad["CloudInstanceType"] = ctx.instance_type
    ad["CloudSpot"] = ctx.spot
    ad["Arch"] = arch()
    ad["OpSys"] = "LINUX"
    ad["Start"] = True
    ad["Requirements"] = classad2.ExprTree(
        " && ".join([REQUIREMENTS, *(_request_fits(name) for name in ctx.resources)]))
    if isolation is not None:
        ad["BurstJobIsolation"] = isolation
    if jobs is not None:
        ad["BurstJobs"] = list(jobs)
    return ad


def _resource_attributes(resources: Mapping[str, int]) -> list[str]:
    return [f"{prefix}{name}" for name in resources
            for prefix in ("", "Total", "TotalSlot", "Detected")]


def _set_custom(ad: classad2.ClassAd, totals: Mapping[str, int], free: Resources) -> None:
    """Custom resources as HTCondor advertises machine resources of a partitionable slot."""
    for name, total in totals.items():
        ad[name] = free.amount(name)
        ad[f"Total{name}"] = ad[f"TotalSlot{name}"] = ad[f"Detected{name}"] = total
    ad["MachineResources"] = " ".join(["Cpus", "Memory", "Disk", *totals])


def _request_fits(name: str) -> str:
    """The slot's side of a custom resource: a job asks for no more than is free."""
    return (f"ifThenElse(isUndefined(TARGET.Request{name}), 0, TARGET.Request{name})"
            f" <= MY.{name}")


def _set_glidein(ad: classad2.ClassAd, ctx: PilotContext, started_at: float | None) -> None:
    ad["GLIDEIN_Site"] = ctx.site
    ad["GLIDEIN_Entry_Name"] = ctx.entry
    ad["GLIDEIN_Factory"] = ctx.factory
    ad["GLIDEIN_Name"] = ctx.factory
    if ctx.group:
        ad["GLIDECLIENT_Group"] = ctx.group
    if started_at is not None:
        ad["GLIDEIN_ToDie"] = int(started_at + ctx.max_lifetime_s)


def arch(machine: str | None = None) -> str:
    """HTCondor's Arch names for the host's CPU."""
    machine = (machine or platform.machine()).lower()
    return {"x86_64": "X86_64", "amd64": "X86_64", "aarch64": "aarch64",
            "arm64": "aarch64", "ppc64le": "ppc64le"}.get(machine, machine.upper())


def matches(slot: classad2.ClassAd, job: classad2.ClassAd) -> bool:
    """Whether the slot would take the job (its Requirements only), as a plain bool.

    classad2 returns Value.Undefined/Error (an IntEnum) for expressions it
    cannot decide; those are no match, never truthy ints.
    """
    result: Any = slot.lookup("Requirements").eval(scope=slot, target=job)
    return result is True
