"""OpenTelemetry wiring: one tracer provider per process, W3C traceparent on the bus.

Every publish injects the current context into the message headers
(`traceparent`, `tracestate`); every handler runs in a span whose parent is
extracted from the message it handles, so one provisioning flow is one trace
across services. Spans are exported where the standard OTEL_* variables say
(OTEL_TRACES_EXPORTER=console prints them); by default they are kept in
process only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind

_configured: set[str] = set()


def setup(service: str) -> None:
    """Install the process's tracer provider once (idempotent)."""
    if _configured:
        return
    _configured.add(service)
    name = os.environ.get("OTEL_SERVICE_NAME") or f"burst-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if os.environ.get("OTEL_TRACES_EXPORTER", "") == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("burstwms")


def inject(headers: dict) -> dict:
    """Add traceparent/tracestate of the current span to `headers`."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.update(carrier)
    return headers


@contextmanager
def consuming(name: str, headers: dict, attributes: dict | None = None) -> Iterator[trace.Span]:
    """A CONSUMER span for handling one message, child of the sender's span."""
    carrier = {k: v.decode() if isinstance(v, bytes) else v
               for k, v in headers.items() if k in ("traceparent", "tracestate")}
    parent = propagate.extract(carrier)
    token = context.attach(parent)
    try:
        with tracer().start_as_current_span(
            f"handle {name}", kind=SpanKind.CONSUMER, attributes=attributes or {}
        ) as span:
            yield span
    finally:
        context.detach(token)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
