"""The slot ad a pilot of an entry will advertise, before any pilot exists.

The frontend matches idle jobs against it to decide where pilots are worth
requesting; it must agree with what the glidein really advertises, so it is
built by the glidein's own slot ad code from the entry's configuration.
"""

from __future__ import annotations

import classad2

from services.runtime.config import EntryConfig


def prototype_ad(entry: EntryConfig, factory: str) -> str:
    ad = classad2.ClassAd({
        "GLIDEIN_Site": entry.site, "GLIDEIN_Entry_Name": entry.name,
        "GLIDEIN_Factory": factory, "CloudProvider": entry.provider,
        "CloudInstanceType": entry.instance_type, "Cpus": entry.cpus,
        "Memory": entry.memory_mb, "Disk": entry.disk_mb * 1024, "Arch": "X86_64",
        "OpSys": "LINUX", "IsGlidein": True, **entry.attributes,
    })
    return str(ad)
