"""OpenTelemetry wiring: one tracer provider per process, W3C traceparent on the bus.

Every publish injects the current context into the message headers
(`traceparent`, and `tracestate` when there is one); every handler runs in the
context extracted from the message it handles, so one provisioning flow is one
trace across services. Spans are exported where the standard OTEL_* variables
say (below); a process that exports nothing (the CLI, benchmarks, OTEL_TRACES_EXPORTER=none)
records no consumer spans:

    spans exported (a processor is set up)   handler in a CONSUMER span, child of the sender's
    nothing exported                         handler in the sender's span context, as extracted

Without a span processor a consumer span would be built and thrown away for
every message, most of what handling one costs the bus. What the handler
publishes is then a child of the sender's span: what a trace shows anyway when
the consumer span is not recorded, and no parent id that leads nowhere.

Where spans go (`export`, called by every service and pilot, not by the CLI or the
benchmarks): OTEL_TRACES_EXPORTER, a comma list, as the OpenTelemetry SDK reads it
(`otlp` with OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL grpc or http/protobuf, `console`, any
exporter installed under the entry point group `opentelemetry_traces_exporter`, `none`),
plus `burst`: the local span store under the state dir (spanstore.py) that `burst trace`
reads. Unset, it is `burst`. Phase spans that outlive a handler, or whose parent is not the
current context (a launch in the trace of the request that asked for it), are made with
`span(name, parent=traceparent)`.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind

from . import spanstore

log = logging.getLogger("burst.tracing")

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
        self.store: spanstore.StoreExporter | None = None  # the local store, when exported to
        self.injected: tuple[Any, dict[str, str]] = (None, {})
        self.extracted: tuple[Any, Any, context.Context, trace.Span] = (
            None, None, context.Context(), trace.INVALID_SPAN)


_state = _State()


def setup(service: str, instance: str | None = None) -> None:
    """Install the process's tracer provider once (idempotent)."""
    if _state.provider is not None:
        return
    name = os.environ.get("OTEL_SERVICE_NAME") or f"burst-{service}"
    attributes = {"service.name": name}
    if instance and instance != service:
        attributes["service.instance.id"] = instance
    _state.provider = TracerProvider(resource=Resource.create(attributes))
    trace.set_tracer_provider(_state.provider)


def export(state_dir: Path | None) -> list[str]:
    """Export this process's spans where OTEL_TRACES_EXPORTER says (see the module
    docstring); the local store under `state_dir` (None: not known yet, see store_at).
    Returns the exporters' names; once per process."""
    if _state.provider is None:
        raise RuntimeError("tracing.setup() first")
    if _state.recording:
        return []
    names = exporter_names(os.environ.get("OTEL_TRACES_EXPORTER"))
    for name in names:
        exporter = _exporter(name, state_dir)
        if exporter is not None:  # a batch a second (not 5): `burst trace` right after a job
            add_span_processor(BatchSpanProcessor(exporter, **_batching()))
    return names


def _batching() -> dict[str, int]:
    """Where OTEL_BSP_* do not say: a batch a second, and room for a burst of handled
    messages (a negotiator reading thousands of slot ads) before spans are dropped."""
    defaults = {"OTEL_BSP_SCHEDULE_DELAY": ("schedule_delay_millis", 1000),
                "OTEL_BSP_MAX_QUEUE_SIZE": ("max_queue_size", 16384)}
    return {arg: value for variable, (arg, value) in defaults.items()
            if variable not in os.environ}


def exporter_names(setting: str | None) -> list[str]:
    if setting is None or not setting.strip():
        return ["burst"]
    names = [name.strip().lower() for name in setting.split(",") if name.strip()]
    return [] if names == ["none"] else [name for name in names if name != "none"]


def _exporter(name: str, state_dir: Path | None) -> SpanExporter | None:
    if name == "burst":
        _state.store = spanstore.StoreExporter(
            spanstore.default_path(state_dir) if state_dir is not None else None)
        return _state.store
    if name == "otlp":  # the protocol decides, as in the SDK's own configuration
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
        name = "otlp_proto_http" if protocol.startswith("http") else "otlp_proto_grpc"
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        log.warning("event=unknown_trace_exporter name=%s", name)
        return None
    return next(iter(found)).load()()


def store_at(state_dir: Path) -> None:
    """Where the local store is, once known (a cloud pilot learns it when it boots)."""
    if _state.store is not None:
        _state.store.open(spanstore.default_path(state_dir))


def shutdown() -> None:
    """Export what is still queued (at a process's end)."""
    if _state.provider is not None:
        _state.provider.shutdown()


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


# --- phase spans ------------------------------------------------------------------------------


def context_of(traceparent: str | None) -> context.Context | None:
    """The context a traceparent names; None when there is none (or it does not parse)."""
    if not traceparent:
        return None
    extracted = propagate.extract({"traceparent": traceparent})
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def traceparent_of(span: trace.Span) -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _links(traceparents: Iterable[str | None]) -> list[Link]:
    links = []
    for traceparent in traceparents:
        ctx = context_of(traceparent)
        if ctx is not None:
            links.append(Link(trace.get_current_span(ctx).get_span_context()))
    return links


def start_span(name: str, *, parent: str | None = None, attributes: dict | None = None,
               links: Iterable[str | None] = (), kind: SpanKind = SpanKind.INTERNAL
               ) -> trace.Span:
    """A span that the caller ends (one that outlives a handler: a job's execution); a child
    of `parent` (a traceparent) or, without one, of the current context."""
    ctx = context_of(parent) if parent else None
    return tracer().start_span(name, context=ctx, kind=kind, attributes=attributes or {},
                               links=_links(links))


@contextmanager
def span(name: str, *, parent: str | None = None, attributes: dict | None = None,
         links: Iterable[str | None] = (), kind: SpanKind = SpanKind.INTERNAL
         ) -> Iterator[trace.Span]:
    """A phase span, current while the block runs: what is published in it carries it."""
    current = start_span(name, parent=parent, attributes=attributes, links=links, kind=kind)
    with trace.use_span(current, end_on_exit=True) as active:
        yield active


def within(span_: trace.Span, *, end: bool = False) -> AbstractContextManager[trace.Span]:
    """Make a started span current for a block (and end it after, if asked)."""
    return trace.use_span(span_, end_on_exit=end)


def failed(span: trace.Span, reason: str) -> None:
    span.set_status(trace.Status(trace.StatusCode.ERROR, reason))


@contextmanager
def attached(traceparent: str | None) -> Iterator[None]:
    """Run the block in the context a traceparent names (as it is when there is none)."""
    ctx = context_of(traceparent)
    if ctx is None:
        yield
        return
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)
