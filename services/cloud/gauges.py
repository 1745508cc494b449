"""The embedded cloud's /metrics: its VMs as its VM host sees them, by profile and state
(pending, running, stopped), read when /metrics is read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from .vmhost import VMHost


class CloudGauges:
    def __init__(self, vmhost: VMHost):
        self.vmhost = vmhost

    def collect(self) -> Iterator[Metric]:
        vms = GaugeMetricFamily("burst_cloud_vms", "VMs of the embedded cloud by provider "
                                "profile and state", labels=["provider", "state"])
        counts = Counter((vm.profile.name, vm.state) for vm in list(self.vmhost.vms.values()))
        for (provider, state), n in sorted(counts.items()):
            vms.add_metric([provider, state], n)
        yield vms
