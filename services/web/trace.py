"""The trace section of a job page.

A job's trace (one span per handler and job phase, from submission to returned
output) is what every service and pilot of the pool writes into the local span
store under the state dir (services/runtime/spanstore.py), the one `burst trace ID`
reads. A job whose spans are not there (another state dir, spans exported elsewhere
with OTEL_TRACES_EXPORTER, or older than the store keeps) says "no trace recorded".
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from services.runtime import spanstore
from services.runtime.config import ConfigError, Settings, load_pool_config


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str  # "" for the root
    name: str
    service: str
    start: float  # epoch seconds
    duration_ms: float


def spans_for(settings: Settings, job_id: str) -> list[Span]:
    """The spans of the job's trace (of its cluster's, for "12"), oldest first."""
    try:
        schedd = load_pool_config(settings.config_path).services.schedd_name
    except ConfigError:
        schedd = None
    _trace_id, spans = spanstore.job_trace(settings.state_dir, job_id, schedd)
    return [Span(s.span_id, s.parent_id, s.name, s.service, s.start, s.duration_ms)
            for s in spans]


def render(spans: list[Span]) -> str:
    """The trace as an indented list: name, service, offset from the root and duration."""
    if not spans:
        return '<p class="empty" data-trace="none">no trace recorded</p>'
    origin = min(span.start for span in spans)
    lines = [f'<li style="margin-left:{depth * 1.2}em"><b>{html.escape(span.name)}</b> '
             f'<span class="service">{html.escape(span.service)}</span> '
             f'+{(span.start - origin) * 1000:.0f} ms, {span.duration_ms:.1f} ms</li>'
             for depth, span in spanstore.tree(spans)]
    return f'<ol class="trace" data-trace="{len(spans)}">{"".join(lines)}</ol>'
