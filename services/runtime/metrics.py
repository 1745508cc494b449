"""Prometheus metrics of the runtime; services add their own next to their code.

Each process has one default registry; `serve(port)` exposes it on /metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

HANDLED = Counter("burst_messages_handled_total", "Messages handled and acked",
                  ["queue", "schema"])
RETRIED = Counter("burst_messages_retried_total", "Messages sent to delayed retry",
                  ["queue", "schema"])
DEAD_LETTERED = Counter("burst_messages_dead_lettered_total", "Messages dead-lettered",
                        ["queue", "schema"])
PUBLISHED = Counter("burst_messages_published_total", "Messages published", ["exchange"])
HANDLE_SECONDS = Histogram("burst_handler_seconds", "Time spent in a handler", ["schema"])
RECONNECTS = Counter("burst_broker_reconnects_total", "Reconnections to the broker")


def serve(port: int) -> None:
    start_http_server(port)
