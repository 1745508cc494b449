"""The slot ad a pilot of an entry will advertise, before any pilot exists.

The frontend matches idle jobs against it to decide where pilots are worth
requesting, so it must agree with what the glidein really advertises: it is
built by the same slot ad code the glidein advertises with (services/condor/slot.py),
from the entry's configuration.
"""

from __future__ import annotations

from services.condor.pilot import PilotContext
from services.condor.slot import Resources, slot_ad
from services.runtime.config import EntryConfig


def prototype_ad(entry: EntryConfig, factory: str) -> str:
    context = PilotContext(
        pilot_id=f"{entry.name}-prototype", entry=entry.name, site=entry.site, factory=factory,
        provider=entry.provider, cpus=entry.cpus, memory_mb=entry.memory_mb,
        disk_mb=entry.disk_mb, resources=entry.custom_resources(),
        idle_timeout_s=entry.idle_timeout_s,
        max_lifetime_s=entry.max_lifetime_s, instance_type=entry.instance_type,
        attributes=dict(entry.attributes))
    free = Resources(entry.cpus, entry.memory_mb, entry.disk_mb, entry.custom_resources())
    return str(slot_ad(context, free))
