"""The web service over the in-memory bus: what its API and pages answer as events
arrive, its live event stream, and the pure shaping of its answers."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from schemas.job import JobCompleted, JobRunning, JobSubmitted
from schemas.pilot import PilotLaunched, PilotRegistered
from schemas.provisioning import EntryAdvertised
from schemas.slot import SlotAdvertised
from services.runtime.memory import InMemoryBus
from services.views import Point, Timeline
from services.web import logic, trace
from services.web.dashboard import Dashboard, DashboardServer
from services.web.handlers import Handler
from tests.helpers import wait_until


class Web:
    def __init__(self, settings):
        self.bus = InMemoryBus(settings, "web")
        self.dashboard = Dashboard(settings, self.bus, DashboardServer(("127.0.0.1", 0), Handler),
                                   since=None)
        self.url = self.dashboard.server.url
        self.bus.start()
        self.dashboard.started()

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=5) as response:
            body = response.read().decode()
            kind = response.headers["Content-Type"]
        return json.loads(body) if kind == "application/json" else body

    def status_of(self, path: str) -> int:
        try:
            urllib.request.urlopen(self.url + path.lstrip("/"), timeout=5).close()
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200


@pytest.fixture
def web(settings):
    w = Web(settings)
    yield w
    w.dashboard.stopping()
    w.bus.stop()


def pilot_events(pilot_id="p1", claims=("c1",), t=1000.0):
    return [
        PilotLaunched(pilot_id=pilot_id, entry="e1", site="S", factory="f", driver="local",
                      provider="local", time=t),
        PilotRegistered(pilot_id=pilot_id, entry="e1", site="S", provider="local", cpus=2,
                        memory_mb=1, disk_mb=1, time=t + 4),
        SlotAdvertised(pilot_id=pilot_id, ad="[]", state="busy", free_cpus=1, free_memory_mb=0,
                       free_disk_mb=0, claims=list(claims), entry="e1", time=t + 5),
        SlotAdvertised(pilot_id=pilot_id, ad="[]", state="idle", free_cpus=2, free_memory_mb=0,
                       free_disk_mb=0, claims=[], entry="e1", time=t + 9),
    ]


def test_cost_so_far_is_pilot_hours_at_the_price_the_entry_ad_carries(web):
    web.bus.emit(EntryAdvertised(entry="e1", site="S", driver="local", provider="local",
                                 factory="f", ad="[ CloudPricePerHour = 0.36 ]"))
    for event in pilot_events(t=time.time() - 3600):  # up for an hour
        web.bus.emit(event)
    wait_until(lambda: web.get("/api/pool")["events"] == 5, what="5 events folded")
    pool = web.get("/api/pool")
    (entry,) = pool["entries"]
    assert entry["price_per_hour"] == 0.36
    assert entry["cost"] == pytest.approx(0.36, abs=0.01) and pool["cost"] == entry["cost"]


def job_events(job_id="1.0"):
    return [JobSubmitted(schedd="s", cluster=1, jobs=[job_id], owner="ann"),
            JobRunning(schedd="s", job_id=job_id, owner="ann", pilot_id="p1", entry="e1"),
            JobCompleted(schedd="s", job_id=job_id, owner="ann", exit_code=0, entry="e1")]


def test_the_pool_and_its_series_follow_the_event_log(web):
    for event in pilot_events():
        web.bus.emit(event)
    wait_until(lambda: web.get("/api/pool")["events"] == 4, what="4 events folded")
    pool = web.get("/api/pool")
    assert pool["cost"] is None and pool["entries"] == []  # no entry ad: no price known
    assert pool["slots"] == {"claimed": 0, "unclaimed": 1}
    assert pool["vm_totals"] == {"running": 1}
    assert pool["pilots_by_id"]["p1"]["state"] == "idle"
    assert pool["latency"]["median_s"] == 4.0
    assert "pilots_by_id" not in web.get("/api/pool?detail=0")
    series = web.get("/api/series")
    claimed = [p["claimed"] for p in series["points"]]
    assert claimed[:4] == [0, 0, 1, 0] and series["points"][-1]["t"] == series["now"]
    assert series["launches"] == [{"pilot_id": "p1", "entry": "e1", "t": 1000.0,
                                   "seconds": 4.0}]
    assert web.get("/healthz") == {"ok": True, "caught_up": True, "events": 4}


def test_a_job_page_shows_the_jobs_state_and_events_and_no_made_up_trace(web):
    for event in job_events("1.0"):
        web.bus.emit(event)
    wait_until(lambda: web.get("/api/job/1.0")["state"] == "completed", what="job completed")
    page = web.get("/job/1.0")
    assert 'data-state="completed"' in page
    assert page.index("job.submitted.v1") < page.index("job.running.v1") < \
        page.index("job.completed.v1")
    assert "no trace recorded" in page
    assert web.status_of("/job/9.9") == 404
    assert web.status_of("/api/job/9.9") == 404


def test_the_dashboard_and_its_files_are_served_and_nothing_else(web):
    assert 'id="plot-vms"' in web.get("/")
    assert "Plot.draw" in web.get("/static/dashboard.js")
    for path in ("/static/../handlers.py", "/static/nope.js", "/etc/passwd", "/api/nope"):
        assert web.status_of(path) == 404, path
    assert web.status_of("/api/series?since=yesterday-ish") == 400


def read_events(response, count: int) -> list[dict]:
    """The next `count` SSE events of an open /api/events response."""
    events, data = [], None
    while len(events) < count:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and data is not None:
            events.append(data)
            data = None
    return events


def test_the_event_stream_sends_recent_then_new_events_that_pass_its_filters(web):
    web.bus.emit(job_events("1.0")[0])
    wait_until(lambda: web.get("/healthz")["events"] == 1, what="the first event folded")
    response = urllib.request.urlopen(web.url + "api/events?entity=job&owner=ann", timeout=5)
    try:
        assert response.headers["Content-Type"] == "text/event-stream"
        (first,) = read_events(response, 1)  # the backlog
        assert first["key"] == "job.submitted.v1" and first["seq"] == 1
        for event in pilot_events():  # not jobs: filtered out
            web.bus.emit(event)
        for event in job_events("1.0")[1:]:
            web.bus.emit(event)
        later = read_events(response, 2)
        assert [e["key"] for e in later] == ["job.running.v1", "job.completed.v1"]
        assert [e["seq"] for e in later] == [6, 7]  # after the four pilot events
    finally:
        response.close()


def test_the_url_file_says_where_it_listens_and_goes_away_on_stop(settings):
    w = Web(settings)
    url_file = settings.path("run", "web.json")
    assert json.loads(url_file.read_text())["url"] == w.url
    w.dashboard.stopping()
    w.bus.stop()
    assert not url_file.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1",
                                                           w.dashboard.server.server_port), 1):
        pass


def point(t, claimed, running=None):
    return Point(t, 0, 1, claimed, 0, 0, running or {})


def test_downsampling_keeps_every_peak():
    points = [point(float(t), 5 if t == 37 else 0, {"e1": 2} if t == 61 else {})
              for t in range(100)]
    small = logic.downsample(points, 10)
    assert len(small) == 10
    assert max(p.claimed for p in small) == 5
    assert max(p.jobs_running.get("e1", 0) for p in small) == 2
    assert small[-1].t == 99.0
    assert logic.downsample(points[:5], 10) == points[:5]


def test_the_series_carries_the_last_counts_to_now():
    timeline = Timeline()
    timeline.series.points.extend([point(10.0, 1), point(20.0, 0)])
    data = logic.series_json(timeline, now=50.0, since=15.0)
    assert [(p["t"], p["claimed"]) for p in data["points"]] == [(15.0, 1), (20.0, 0),
                                                                (50.0, 0)]


def test_latency_summary():
    from services.views.pool import Launch

    launches = [Launch(f"p{i}", "e", 0.0, float(s)) for i, s in enumerate(range(1, 11))]
    assert logic.latency_summary(launches) == {"n": 10, "median_s": 5.5, "p90_s": 9.0,
                                               "max_s": 10.0}
    assert logic.latency_summary([])["median_s"] is None


def test_a_trace_renders_as_a_tree_of_spans_with_durations():
    spans = [trace.Span("b", "a", "launch", "factory", 10.2, 300.0),
             trace.Span("a", "", "submit", "schedd", 10.0, 5.0),
             trace.Span("c", "b", "register", "glidein", 10.4, 20.0)]
    html = trace.render(spans)
    assert html.index("submit") < html.index("launch") < html.index("register")
    assert "+200 ms, 300.0 ms" in html and 'data-trace="3"' in html
    assert "no trace recorded" in trace.render([])
