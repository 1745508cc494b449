"""HTTP routes of the dashboard: parse the request → ask logic/pages → write the answer.

    GET /                 the dashboard (static/index.html: plots drawn as SVG by dashboard.js)
    GET /static/NAME      its script and style sheet
    GET /api/pool         the fold as JSON (?detail=0: counts only, no pilots and jobs by id)
    GET /api/series       counts over time (?since=T: epoch, ISO or an age; ?points=N)
    GET /api/events       Server-Sent Events: recent events, then each new one
                          (?entity= &entry= &job= &owner= &key=: the filters of `burst events`;
                          ?backlog=N recent events first, default 100)
    GET /api/job/ID       a job's state and events as JSON
    GET /job/ID           a job's page: state, events, trace
    GET /healthz          {"ok": true, "caught_up": ..., "events": n}
"""

from __future__ import annotations

import json
import logging
import queue
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from services.runtime import httpserve
from services.views import EventFilter
from services.views.since import parse_since

from . import logic, pages, trace
from .dashboard import Dashboard

log = logging.getLogger("burst.web")

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
KEEPALIVE_S = 15.0
DEFAULT_BACKLOG = 100


class Handler(BaseHTTPRequestHandler):
    server_version = "burst-web"

    @property
    def dashboard(self) -> Dashboard:
        return self.server.dashboard  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("event=http_request client=%s request=%r", self.client_address[0],
                  format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        try:
            if path == "/":
                self._static("index.html")
            elif path.startswith("/static/"):
                self._static(path.removeprefix("/static/"))
            elif path == "/api/pool":
                self._pool(query)
            elif path == "/api/series":
                self._series(query)
            elif path == "/api/events":
                self._events(query)
            elif path.startswith("/api/job/"):
                self._job_json(unquote(path.removeprefix("/api/job/")))
            elif path.startswith("/job/"):
                self._job_page(unquote(path.removeprefix("/job/")))
            elif path == "/healthz":
                self._json({"ok": True, "caught_up": self.dashboard.caught_up.is_set(),
                            "events": self.dashboard.timeline.seq})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except ValueError as exc:  # a bad query parameter
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away

    # --- answers ------------------------------------------------------------------------------

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        httpserve.send(self, status, content_type, body)

    def _json(self, data: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, "application/json", json.dumps(data).encode())

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _static(self, name: str) -> None:
        path = STATIC / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"no such file: {name}")
            return
        self._send(HTTPStatus.OK, STATIC_TYPES[path.suffix], path.read_bytes())

    def _pool(self, query: dict[str, list[str]]) -> None:
        detail = query.get("detail", ["1"])[0] not in ("0", "false")
        with self.dashboard.lock:
            data = logic.pool_json(self.dashboard.timeline, time.time(), detail=detail)
        self._json({"namespace": self.dashboard.settings.namespace,
                    "since": self.dashboard.since, **data})

    def _series(self, query: dict[str, list[str]]) -> None:
        since = self.dashboard.since or 0.0
        if query.get("since", [""])[0]:
            since = max(since, parse_since(query["since"][0]))
        points = int(query.get("points", [logic.MAX_POINTS])[0])
        with self.dashboard.lock:
            data = logic.series_json(self.dashboard.timeline, time.time(), since,
                                     max(2, points))
        self._json(data)

    def _job(self, job_id: str) -> dict[str, Any] | None:
        with self.dashboard.lock:
            return logic.job_json(self.dashboard.timeline, job_id)

    def _job_json(self, job_id: str) -> None:
        job = self._job(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, f"no events of job {job_id} since the window "
                                              "start")
        else:
            self._json(job)

    def _job_page(self, job_id: str) -> None:
        namespace = self.dashboard.settings.namespace
        job = self._job(job_id)
        if job is None:
            body = pages.not_found(f"no events of job {job_id} since the dashboard's window "
                                   "start", namespace)
            self._send(HTTPStatus.NOT_FOUND, STATIC_TYPES[".html"], body.encode())
            return
        spans = trace.spans_for(self.dashboard.settings, job_id)
        self._send(HTTPStatus.OK, STATIC_TYPES[".html"],
                   pages.job_page(job, spans, namespace).encode())

    # --- Server-Sent Events ---------------------------------------------------------------------

    def _events(self, query: dict[str, list[str]]) -> None:
        wanted = EventFilter.from_query(query)
        backlog = int(query.get("backlog", [DEFAULT_BACKLOG])[0])
        after = int(self.headers.get("Last-Event-ID") or 0)  # a reconnecting browser
        dashboard = self.dashboard
        stream = dashboard.hub.open()  # before the backlog: nothing falls between the two
        try:
            with dashboard.lock:
                recent = [(r, e) for r, e in dashboard.timeline.feed
                          if r["seq"] > after and wanted.matches(r["key"], e)]
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            sent = after
            for record, _event in recent[-backlog:] if backlog > 0 else []:
                sent = self._send_event(record)
            while not dashboard.stopped.is_set():
                try:
                    record, event = stream.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    if stream.overflowed:
                        return
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if record["seq"] > sent and wanted.matches(record["key"], event):
                    sent = self._send_event(record)
        finally:
            dashboard.hub.close(stream)

    def _send_event(self, record: dict) -> int:
        self.wfile.write(f"id: {record['seq']}\nevent: event\ndata: {json.dumps(record)}\n\n"
                         .encode())
        self.wfile.flush()
        return record["seq"]
