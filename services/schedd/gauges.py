"""The schedd's /metrics beyond the bus's: its queue by state, read when /metrics is read."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from .store import Store

STATES = ("idle", "running", "completed", "held", "removed")


class JobGauges:
    def __init__(self, name: str, store: Store):
        self.name, self.store = name, store

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("burst_schedd_jobs", "Jobs in the schedd's queue, by state "
                                 "(as burst q lists them)", labels=["schedd", "state"])
        rows = self.store.read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        counts = {**dict.fromkeys(STATES, 0), **{row["state"]: row["n"] for row in rows}}
        for state, n in sorted(counts.items()):
            jobs.add_metric([self.name, state], n)
        yield jobs
