"""The web service's /metrics: the pool as the event stream tells it (the same fold as
`burst status` and the dashboard), and how long each step of the flow took.

    burst_pool_jobs{state}                  jobs by state
    burst_pool_pilots{entry, state}         pilots by entry and state (exited and lost too)
    burst_pool_vms{provider, state}         VMs (pilots) by provider: pending, running, ...
    burst_pool_slots{state}                 claimed, unclaimed
    burst_flow_seconds{step}                histogram: services/views/latency.py's steps
    burst_web_events_folded_total, burst_web_caught_up
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.views.latency import STEPS

# Seconds: a local step takes milliseconds, a cloud VM's boot minutes.
FLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def flow_histogram() -> Histogram:
    """Not in the default registry: the dashboard's collector yields it (tests build many)."""
    histogram = Histogram("burst_flow_seconds", "Seconds each step of the flow took: "
                          + ", ".join(STEPS), ["step"], buckets=FLOW_BUCKETS, registry=None)
    for step in STEPS:
        histogram.labels(step)  # every step shows, at 0 until it happens
    return histogram


class PoolGauges:
    def __init__(self, dashboard: Any):
        self.dashboard = dashboard

    def collect(self) -> Iterator[Metric]:
        dashboard = self.dashboard
        with dashboard.lock:
            pool = dashboard.timeline.pool
            jobs, slots, vms = pool.job_counts(), pool.slots(), pool.vms()
            pilots = {name: pool.pilot_counts(name) for name in pool.entries}
            folded = dashboard.timeline.seq
        yield _gauge("burst_pool_jobs", "Jobs by state, folded from the event stream",
                     ["state"], {(state,): n for state, n in jobs.items()})
        yield _gauge("burst_pool_pilots", "Pilots by entry and state, folded from the event "
                     "stream", ["entry", "state"],
                     {(entry, state): n for entry, counts in pilots.items()
                      for state, n in counts.items()})
        yield _gauge("burst_pool_vms", "VMs (pilots) by provider and state, folded from the "
                     "event stream", ["provider", "state"],
                     {(provider, state): n for provider, counts in vms.items()
                      for state, n in counts.items()})
        yield _gauge("burst_pool_slots", "Slots claimed by jobs and unclaimed", ["state"],
                     {(state,): n for state, n in slots.items()})
        yield from dashboard.flow.collect()
        counter = CounterMetricFamily("burst_web_events_folded", "Events folded since start")
        counter.add_metric([], folded)
        yield counter
        yield _gauge("burst_web_caught_up", "1 once the fold has caught up with the event log",
                     [], {(): int(dashboard.caught_up.is_set())})


def _gauge(name: str, documentation: str, labels: list[str],
           values: dict[tuple[str, ...], int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=labels)
    for key, n in sorted(values.items()):
        gauge.add_metric(list(key), n)
    return gauge
