"""The web service: the event log folded into a Timeline, served over HTTP.

    event log ──(thread: replay_then_follow)──▶ Timeline (under a lock) ──▶ Hub
                                                       ▲                      │ each event
    browser ──GET /api/pool, /api/series, /job/<id>────┘                      ▼
    browser ──GET /api/events (SSE) ◀──────────────── one queue per open stream

It consumes no queue: it reads the stream `<ns>.events.log` from --since and
follows it, so it can restart at any time and rebuild the same views.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Any

from services.runtime.bus import Bus, Subscription
from services.runtime.config import Settings
from services.runtime.httpserve import ServiceServer
from services.views import Timeline
from services.views.latency import FlowLatency
from services.views.stream import CAUGHT_UP, replay_then_follow

from .gauges import PoolGauges, flow_histogram

log = logging.getLogger("burst.web")

STREAM_BUFFER = 1000  # events an SSE client may fall behind before it is dropped


class Stream:
    """One open /api/events: the events published since it opened, in order."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[dict, Any]] = queue.Queue(STREAM_BUFFER)
        self.overflowed = False


class Hub:
    """Fans each new event out to the open streams; a stream that falls too far behind
    is cut off (its browser reconnects with Last-Event-ID and catches up from the feed)."""

    def __init__(self) -> None:
        self._streams: set[Stream] = set()
        self._lock = threading.Lock()

    def open(self) -> Stream:
        stream = Stream()
        with self._lock:
            self._streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def publish(self, record: dict, event: Any) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.queue.put_nowait((record, event))
            except queue.Full:
                stream.overflowed = True
                self.close(stream)


class DashboardServer(ServiceServer):
    dashboard: Dashboard

    @property
    def url(self) -> str:
        return super().url + "/"


class Dashboard:
    """The service object `services.runtime.service.run` drives."""

    def __init__(self, settings: Settings, bus: Bus, server: DashboardServer,
                 since: float | None):
        self.settings = settings
        self.bus = bus
        self.server = server
        self.since = since
        self.timeline = Timeline()
        self.latency = FlowLatency()  # the flow's steps, observed into self.flow (/metrics)
        self.flow = flow_histogram()
        self.lock = threading.Lock()  # the timeline: written by the follower, read by requests
        self.hub = Hub()
        self.caught_up = threading.Event()
        self.stopped = threading.Event()
        server.dashboard = self
        # Serve and say where before run() writes the pid file: once `burst up -d` sees the
        # pid, the URL is there and answers.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="web-http", daemon=True).start()
        self._url_file().parent.mkdir(parents=True, exist_ok=True)
        self._url_file().write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
        log.info("event=listening url=%s since=%s", server.url, since)

    def _url_file(self):
        return self.settings.path("run", "web.json")

    def subscriptions(self) -> list[Subscription]:
        return []  # it reads the event log, no queue of its own

    def collector(self) -> PoolGauges:
        return PoolGauges(self)

    def started(self) -> None:
        threading.Thread(target=self._follow, name="web-follow", daemon=True).start()

    def stopping(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        try:
            if json.loads(self._url_file().read_text()).get("pid") == os.getpid():
                self._url_file().unlink()
        except (OSError, ValueError):
            pass

    def _follow(self) -> None:
        for env in replay_then_follow(self.bus.history, self.since, stop=self.stopped.is_set):
            if env is CAUGHT_UP:
                self.caught_up.set()
                log.info("event=caught_up events=%d", self.timeline.seq)
                continue
            with self.lock:
                record, event = self.timeline.apply(env)
                steps = self.latency.apply(event, record["t"]) if event is not None else []
            for step, seconds in steps:
                self.flow.labels(step).observe(seconds)
            self.hub.publish(record, event)
