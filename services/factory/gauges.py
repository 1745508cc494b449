"""The factory's /metrics beyond the bus's: its pilots and their VMs, read from its own
records when /metrics is read (the I/O thread keeps changing them: each is copied first).

    burst_factory_pilots{entry, state}            pending | idle | busy | retiring | held
    burst_factory_vms{entry, provider, state}     as the driver last listed them: running
                                                  (pending included) | stopped | gone
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

PILOT_STATES = ("pending", "idle", "busy", "retiring", "held")


class FactoryGauges:
    def __init__(self, factory: Any):
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        factory = self.factory
        pilots = GaugeMetricFamily("burst_factory_pilots", "Pilots of this factory by entry and "
                                   "state", labels=["factory", "entry", "state"])
        counts = Counter((p.entry, p.state) for p in list(factory.pilots.values()))
        for entry in sorted(factory.entries):
            for state in PILOT_STATES:
                pilots.add_metric([factory.name, entry, state], counts.get((entry, state), 0))
        yield pilots
        vms = GaugeMetricFamily("burst_factory_vms", "VMs (or pilot processes) of each entry by "
                                "state, as its driver last listed them",
                                labels=["factory", "entry", "provider", "state"])
        for entry, listed in sorted(dict(factory.listed).items()):
            provider = factory.entries[entry].provider
            for state, n in sorted(Counter(i.state for i in listed).items()):
                vms.add_metric([factory.name, entry, provider, state], n)
        yield vms
