"""Queue depths from the broker, for /metrics: how far behind a service's consumers are.

    GET /metrics ──▶ QueueStats.collect() ──(at most every MIN_INTERVAL_S)──▶ passive
                     queue.declare of each of the service's queues, its .dlq and .retry
                     ──▶ burst_queue_messages{queue}   ready, not yet delivered: the lag
                         burst_queue_consumers{queue}

A passive declare needs no management plugin and no more rights than the service has on
its own queues; it opens a short connection of its own, never the bus's. A queue that is
not there (a .retry queue not declared yet) is left out; a broker that does not answer
leaves the last figures out too, and the scrape goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pika.exceptions
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from .bus import Names, Subscription
from .config import Settings

log = logging.getLogger("burst.queuestats")

MIN_INTERVAL_S = 5.0


class QueueStats:
    """A collector of the depths of the queues behind `subscriptions`."""

    def __init__(self, settings: Settings, subscriptions: list[Subscription]):
        self.settings = settings
        names = Names(settings.namespace)
        self.queues = []
        for sub in subscriptions:
            queue = names.queue(sub.queue)
            self.queues += [queue, names.dlq(queue), names.retry(queue)]
        self._lock = threading.Lock()
        self._at = 0.0
        self._figures: dict[str, tuple[int, int]] = {}

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("burst_queue_messages", "Messages ready in a queue, not yet "
                                  "delivered to a consumer (.dlq: dead letters)", labels=["queue"])
        consumers = GaugeMetricFamily("burst_queue_consumers", "Consumers of a queue",
                                      labels=["queue"])
        for queue, (messages, count) in sorted(self.figures().items()):
            depth.add_metric([queue], messages)
            consumers.add_metric([queue], count)
        yield depth
        yield consumers

    def figures(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            if self.queues and time.monotonic() - self._at >= MIN_INTERVAL_S:
                self._at = time.monotonic()
                self._figures = self._poll()
            return dict(self._figures)

    def _poll(self) -> dict[str, tuple[int, int]]:
        from .rabbit import connection_parameters

        found: dict[str, tuple[int, int]] = {}
        try:
            conn = pika.BlockingConnection(connection_parameters(self.settings.amqp_url))
        except (pika.exceptions.AMQPError, OSError) as exc:
            log.info("event=queue_stats_unavailable reason=%r", str(exc))
            return found
        try:
            channel = conn.channel()
            for queue in self.queues:
                try:
                    ok = channel.queue_declare(queue, passive=True).method
                except pika.exceptions.ChannelClosedByBroker:  # not there: 404 closes it
                    channel = conn.channel()
                    continue
                found[queue] = (ok.message_count, ok.consumer_count)
        except pika.exceptions.AMQPError as exc:
            log.info("event=queue_stats_unavailable reason=%r", str(exc))
        finally:
            if conn.is_open:
                conn.close()
        return found
