"""OpenTelemetry wiring: one tracer provider per process, W3C traceparent on the bus.

Every publish injects the current context into the message headers
(`traceparent`, and `tracestate` when there is one); every handler runs in the
context extracted from the message it handles, so one provisioning flow is one
trace across services. Spans are exported where the standard OTEL_* variables
say (OTEL_TRACES_EXPORTER=console prints them); by default none is exported.

    spans exported (a processor is set up)   handler in a CONSUMER span, child of the sender's
    nothing exported (the default)           handler in the sender's span context, as extracted

Without a span processor a consumer span would be built and thrown away for
every message, most of what handling one costs the bus. What the handler
publishes is then a child of the sender's span: what a trace shows anyway when
the consumer span is not recorded, and no parent id that leads nowhere.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind

HEADERS = ("traceparent", "tracestate")  # what W3C trace context puts in message headers


class _State:
    """The process's tracing setup, and the last context injected and extracted.

    Both caches hold one entry, replaced whole (a tuple), so threads can share
    them without a lock: a batch published in one span, or a burst of messages
    from one sender, costs one propagator call.
    """

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.recording = False  # a span processor is installed: build real consumer spans
        self.injected: tuple[Any, dict[str, str]] = (None, {})
        self.extracted: tuple[Any, Any, context.Context, trace.Span] = (
            None, None, context.Context(), trace.INVALID_SPAN)


_state = _State()


def setup(service: str) -> None:
    """Install the process's tracer provider once (idempotent)."""
    if _state.provider is not None:
        return
    name = os.environ.get("OTEL_SERVICE_NAME") or f"burst-{service}"
    _state.provider = TracerProvider(resource=Resource.create({"service.name": name}))
    trace.set_tracer_provider(_state.provider)
    if os.environ.get("OTEL_TRACES_EXPORTER", "") == "console":
        add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))


def add_span_processor(processor: SpanProcessor) -> None:
    """Export spans through `processor`; from now on every handler gets a consumer span."""
    if _state.provider is None:
        raise RuntimeError("tracing.setup() first")
    _state.provider.add_span_processor(processor)
    _state.recording = True


def recording() -> bool:
    """Whether spans are processed (exported) in this process."""
    return _state.recording


@functools.cache
def tracer() -> trace.Tracer:
    # get_tracer() builds a Tracer per call; one serves all. Got before setup(), it is a proxy
    # that follows the provider installed later.
    return trace.get_tracer("burstwms")


def inject(headers: dict) -> dict:
    """Add traceparent (and tracestate, when not empty) of the current context to `headers`."""
    headers.update(current_headers())
    return headers


def current_headers() -> dict[str, str]:
    """The trace headers of the current context: shared, never modify it."""
    # Contexts are immutable: the same object means the same headers.
    current = context.get_current()
    last, carrier = _state.injected
    if current is not last:
        carrier = {}
        propagate.inject(carrier, context=current)
        _state.injected = (current, carrier)
    return carrier


def consuming(name: str, headers: dict,
              attributes: dict | None = None) -> AbstractContextManager[trace.Span]:
    """Handle one message in the context of its sender (see the module docstring); the
    attributes are those of the consumer span, when there is one."""
    parent, span = _extract(headers)
    if _state.recording:
        return _consumer_span(parent, name, attributes)
    if not span.get_span_context().is_valid:
        span = _new_root()
        parent = trace.set_span_in_context(span, parent)
    return _Attached(parent, span)


def _extract(headers: dict) -> tuple[context.Context, trace.Span]:
    """The sender's context, and its span (INVALID_SPAN when there is none)."""
    traceparent, tracestate = headers.get("traceparent"), headers.get("tracestate")
    last_parent, last_state, extracted, span = _state.extracted
    if traceparent == last_parent and tracestate == last_state and traceparent is not None:
        return extracted, span
    carrier = {}
    for key, value in zip(HEADERS, (traceparent, tracestate), strict=True):
        if value is not None:
            carrier[key] = value.decode(errors="replace") if isinstance(value, bytes) else value
    extracted = propagate.extract(carrier)
    span = trace.get_current_span(extracted)
    _state.extracted = (traceparent, tracestate, extracted, span)
    return extracted, span


def _new_root() -> trace.Span:
    # What the SDK's default sampler makes of a message without a parent: a new sampled trace.
    return trace.NonRecordingSpan(trace.SpanContext(
        random.getrandbits(128) or 1, random.getrandbits(64) or 1, is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))


class _Attached:
    """The handler's context is the extracted one; its span is the sender's (not recording)."""

    __slots__ = ("ctx", "span", "token")

    def __init__(self, ctx: context.Context, span: trace.Span):
        self.ctx, self.span = ctx, span

    def __enter__(self) -> trace.Span:
        self.token = context.attach(self.ctx)
        return self.span

    def __exit__(self, *_exc: object) -> None:
        context.detach(self.token)


@contextmanager
def _consumer_span(parent: context.Context, name: str,
                   attributes: dict | None) -> Iterator[trace.Span]:
    token = context.attach(parent)
    try:
        with tracer().start_as_current_span(
            f"handle {name}", kind=SpanKind.CONSUMER, attributes=attributes or {}
        ) as span:
            yield span
    finally:
        context.detach(token)


def current_traceparent() -> str | None:
    return current_headers().get("traceparent")
