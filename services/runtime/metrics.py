"""Prometheus metrics of the runtime; services add their own next to their code.

Each process has one default registry; `serve()` exposes it on /metrics, on the port the
configuration gives the service (`port_for`), and writes the URL to run/<service>.metrics.json
for `burst status`. A service object with a `collector()` method has it registered there
(service.py): gauges read from the service's own state when /metrics is read.

Messages published (`burst_messages_published_total`, by exchange), handled
(`burst_messages_handled_total`, by queue and schema) and the time spent in
handlers (histogram `burst_handler_seconds`, by schema) change with every
message: each bus keeps them in plain numbers (PublishedCount, HandledMetrics),
written by the one thread that publishes and runs its handlers, and a collector
adds them up when /metrics is read. A Counter and a Histogram would take a lock
per update and a bucket scan, as much as the rest of handling a small message.
"""

from __future__ import annotations

import json
import os
import threading
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

RETRIED = Counter("burst_messages_retried_total", "Messages sent to delayed retry",
                  ["queue", "schema"])
DEAD_LETTERED = Counter("burst_messages_dead_lettered_total", "Messages dead-lettered",
                        ["queue", "schema"])
RECONNECTS = Counter("burst_broker_reconnects_total", "Reconnections to the broker")

HANDLER_BUCKETS = Histogram.DEFAULT_BUCKETS  # seconds; the last is +Inf


class HandledMetrics:
    """Messages of one (queue, schema) handled by one bus, and their handler seconds."""

    __slots__ = ("queue", "schema", "buckets", "seconds")

    def __init__(self, queue: str, schema: str):
        self.queue, self.schema = queue, schema
        self.buckets = [0] * len(HANDLER_BUCKETS)  # per bucket, not cumulative
        self.seconds = 0.0
        _collector.add(self)

    def observe(self, seconds: float) -> None:
        """One message handled in `seconds` (from the thread that runs the handlers)."""
        self.buckets[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        self.seconds += seconds


class PublishedCount:
    """Messages one bus published to one exchange (counted on its I/O thread)."""

    __slots__ = ("exchange", "count")

    def __init__(self, exchange: str):
        self.exchange, self.count = exchange or "(default)", 0
        _collector.add(self)


class _BusCollector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: list[HandledMetrics | PublishedCount] = []

    def add(self, metrics: HandledMetrics | PublishedCount) -> None:
        with self._lock:
            self._all.append(metrics)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            every = list(self._all)
        published = CounterMetricFamily("burst_messages_published", "Messages published",
                                        labels=["exchange"])
        by_exchange: dict[str, int] = {}
        for metrics in every:
            if isinstance(metrics, PublishedCount):
                by_exchange[metrics.exchange] = by_exchange.get(metrics.exchange, 0) \
                    + metrics.count
        for exchange, n in by_exchange.items():
            published.add_metric([exchange], n)
        yield published
        yield from self._handled([m for m in every if isinstance(m, HandledMetrics)])

    @staticmethod
    def _handled(every: list[HandledMetrics]) -> Iterator[Metric]:
        handled = CounterMetricFamily("burst_messages_handled", "Messages handled and acked",
                                      labels=["queue", "schema"])
        seconds = HistogramMetricFamily("burst_handler_seconds", "Time spent in a handler",
                                        labels=["schema"])
        counts: dict[tuple[str, str], int] = {}
        by_schema: dict[str, tuple[list[int], list[float]]] = {}
        for metrics in every:
            buckets = list(metrics.buckets)  # a copy first: the handler thread keeps counting
            key = (metrics.queue, metrics.schema)
            counts[key] = counts.get(key, 0) + sum(buckets)
            totals, total_seconds = by_schema.setdefault(metrics.schema,
                                                         ([0] * len(buckets), [0.0]))
            for i, n in enumerate(buckets):
                totals[i] += n
            total_seconds[0] += metrics.seconds
        for (queue, schema), n in counts.items():
            handled.add_metric([queue, schema], n)
        for schema, (totals, total_seconds) in by_schema.items():
            cumulative, running = [], 0
            for bound, n in zip(HANDLER_BUCKETS, totals, strict=True):
                running += n
                cumulative.append((floatToGoString(bound), running))
            seconds.add_metric([schema], cumulative, total_seconds[0])
        yield handled
        yield seconds


_collector = _BusCollector()
REGISTRY.register(_collector)


# --- serving /metrics -----------------------------------------------------------------------

# Where each service listens with [services] metrics_port_base = B: B + its offset. Instances
# not listed (factory-2, ...) take any free port, unless [services] metrics_ports names them.
PORT_OFFSETS = {"schedd": 0, "negotiator": 1, "frontend": 2, "metadata": 3, "factory": 4,
                "web": 5, "cloud": 6}


def port_for(instance: str, base: int, ports: dict[str, int]) -> int:
    """The metrics port of a service instance (0: any free port)."""
    if instance in ports:
        return ports[instance]
    if base and instance in PORT_OFFSETS:
        return base + PORT_OFFSETS[instance]
    return 0


def url_file(state_dir: Path, instance: str) -> Path:
    return state_dir / "run" / f"{instance}.metrics.json"


class Served:
    """/metrics of this process; close() stops it and removes its URL file."""

    def __init__(self, state_dir: Path, instance: str, host: str, port: int):
        self.server, _thread = start_http_server(port, host)
        self.path = url_file(state_dir, instance)
        shown = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.url = f"http://{shown}:{self.server.server_port}/metrics"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def serve(state_dir: Path, instance: str, host: str, port: int) -> Served:
    """Serve /metrics; OSError when the port is taken."""
    return Served(state_dir, instance, host, port)


def served_url(state_dir: Path, instance: str) -> str | None:
    """A service's /metrics URL, as it wrote it once listening."""
    try:
        return json.loads(url_file(state_dir, instance).read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None
