"""The trace section of a job page.

A job's trace (one span per handler and job phase, from submission to returned
output) is recorded by the tracing work of issue 10 into a span store that
`burst trace ID` reads. That store does not exist yet, so `spans_for` finds no
spans and every job page says "no trace recorded"; once it exists, `spans_for`
reads it and `render` draws the tree. Nothing here makes spans up.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from services.runtime.config import Settings


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str  # "" for the root
    name: str
    service: str
    start: float  # epoch seconds
    duration_ms: float


def spans_for(settings: Settings, job_id: str) -> list[Span]:
    """The spans of the job's trace, oldest first; none until a span store exists."""
    return []


def render(spans: list[Span]) -> str:
    """The trace as an indented list: name, service, offset from the root and duration."""
    if not spans:
        return '<p class="empty" data-trace="none">no trace recorded</p>'
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id not in ids]
    origin = min(span.start for span in spans)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        lines.append(
            f'<li style="margin-left:{depth * 1.2}em"><b>{html.escape(span.name)}</b> '
            f'<span class="service">{html.escape(span.service)}</span> '
            f'+{(span.start - origin) * 1000:.0f} ms, {span.duration_ms:.1f} ms</li>')
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start):
        walk(root, 0)
    return f'<ol class="trace" data-trace="{len(spans)}">{"".join(lines)}</ol>'
