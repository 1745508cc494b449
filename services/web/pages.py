"""Server-rendered pages: a job's page (its state, its events, its trace). The
dashboard itself is a static page (static/index.html) over the JSON and SSE API."""

from __future__ import annotations

import html
from typing import Any

from . import trace

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"><link rel="icon" href="data:,"></head>
<body{attrs}><header><a href="/">burstwms</a> <span class="ns">{namespace}</span></header>
<main>"""
_TAIL = "</main>{script}</body></html>"


def _page(title: str, namespace: str, body: str, attrs: str = "", script: str = "") -> str:
    return (_HEAD.format(title=html.escape(title), namespace=html.escape(namespace),
                         attrs=attrs) + body + _TAIL.format(script=script))


def job_page(job: dict[str, Any], spans: list[trace.Span], namespace: str) -> str:
    esc = html.escape
    facts = [("state", job.get("state")), ("owner", job.get("owner")),
             ("entry", job.get("entry")), ("pilot", job.get("pilot")),
             ("exit code", job.get("exit_code"))]
    rows = "".join(f"<tr><th>{esc(name)}</th><td>{esc(str(value))}</td></tr>"
                   for name, value in facts if value not in (None, ""))
    events = "".join(
        f'<tr><td class="time">{esc(e["time"])}</td><td class="key">{esc(e["key"])}</td>'
        f'<td>{esc(e["summary"])}</td></tr>' for e in job["events"])
    body = (f'<h1>job {esc(job["id"])} <span class="badge {esc(job["state"])}">'
            f'{esc(job["state"])}</span></h1>'
            f'<table class="facts">{rows}</table>'
            f'<section id="job-events"><h2>Events</h2><table class="events">'
            f'<thead><tr><th>time</th><th>event</th><th>fields</th></tr></thead>'
            f'<tbody>{events}</tbody></table></section>'
            f'<section id="trace"><h2>Trace</h2>{trace.render(spans)}</section>')
    attrs = f' data-job="{esc(job["id"])}" data-state="{esc(job["state"])}"'
    return _page(f'job {job["id"]}', namespace, body, attrs,
                 '<script src="/static/job.js"></script>')


def not_found(what: str, namespace: str) -> str:
    return _page("not found", namespace, f'<h1>not found</h1><p>{html.escape(what)}</p>')
