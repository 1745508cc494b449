"""The pieces behind `burst trace` and /metrics, without a broker: the span store, the flow
latency fold, exporter names, metrics ports."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link

from schemas.job import JobCompleted, JobRunning, JobSubmitted
from schemas.pilot import PilotExited, PilotLaunched, PilotRegistered
from services.runtime import metrics, spanstore, tracing
from services.views.latency import FlowLatency


@pytest.fixture()
def store_tracer(tmp_path):
    """A tracer of its own whose spans go to a store in tmp_path, one at a time."""
    exporter = spanstore.StoreExporter(spanstore.default_path(tmp_path))
    provider = TracerProvider(resource=Resource.create({"service.name": "burst-schedd"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def test_a_clusters_spans_come_back_as_one_tree_with_other_jobs_left_out(tmp_path,
                                                                         store_tracer):
    with store_tracer.start_as_current_span("handle job.submit", attributes={
            "burst.cluster": 7, "burst.schedd": "schedd"}) as root:
        for job in ("7.0", "7.1"):
            with store_tracer.start_as_current_span("activate claim",
                                                    attributes={"burst.job": job}), \
                    store_tracer.start_as_current_span("execute job"):
                pass
        with store_tracer.start_as_current_span("launch pilot"):
            pass
    trace_id = f"{root.get_span_context().trace_id:032x}"
    found, spans = spanstore.job_trace(tmp_path, "7.1", "schedd")
    assert found == trace_id
    assert [(depth, span.name) for depth, span in spanstore.tree(spans)] == [
        (0, "handle job.submit"), (1, "activate claim"), (2, "execute job"),
        (1, "launch pilot")]
    assert {span.job for span in spans} == {"", "7.1"}
    assert all(span.service == "schedd" and span.duration_ms >= 0 for span in spans)
    _, whole = spanstore.job_trace(tmp_path, "7", "schedd")
    assert len(whole) == 6
    assert spanstore.job_trace(tmp_path, "7.0", "another-schedd") == (None, [])
    assert spanstore.job_trace(tmp_path / "nowhere", "7.0") == (None, [])


def test_links_and_attributes_are_kept(tmp_path, store_tracer):
    with store_tracer.start_as_current_span("a") as first:
        pass
    with store_tracer.start_as_current_span("match", links=[Link(first.get_span_context())],
                                            attributes={"burst.cluster": 1,
                                                        "burst.pilots": ("p1", "p2")}):
        pass
    _trace_id, (match,) = spanstore.job_trace(tmp_path, "1")
    assert match.links == [{"trace_id": f"{first.get_span_context().trace_id:032x}",
                            "span_id": f"{first.get_span_context().span_id:016x}"}]
    assert match.attributes["burst.pilots"] == ["p1", "p2"]
    assert match.as_json()["parent_id"] is None


def test_the_store_is_bounded_in_spans_and_age(tmp_path, store_tracer):
    for i in range(30):
        with store_tracer.start_as_current_span(f"s{i}"):
            pass
    store = spanstore.SpanStore(spanstore.default_path(tmp_path), max_spans=10,
                                max_age_s=3600)
    store.prune()
    assert store.count() == 10
    store.max_age_s = 0.0
    time.sleep(0.01)
    store.prune()
    assert store.count() == 0


def test_spans_wait_until_the_store_has_a_place(tmp_path):
    exporter = spanstore.StoreExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("boot", attributes={"burst.cluster": 3}):
        pass
    exporter.open(spanstore.default_path(tmp_path))
    assert spanstore.SpanStore(spanstore.default_path(tmp_path)).count() == 0
    with provider.get_tracer("t").start_as_current_span("register"):
        pass
    _, spans = spanstore.job_trace(tmp_path, "3")
    assert [span.name for span in spans] == ["boot"]  # its trace; "register" is another
    assert spanstore.SpanStore(spanstore.default_path(tmp_path)).count() == 2
    provider.shutdown()


def test_a_store_that_cannot_be_written_drops_spans_and_says_so_once(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    exporter = spanstore.StoreExporter(blocker / "spans.sqlite")  # a file is no directory
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for _ in range(3):
        with provider.get_tracer("t").start_as_current_span("x"):
            pass
    assert caplog.text.count("span_store_unwritable") == 1


@pytest.mark.parametrize(("setting", "names"), [
    (None, ["burst"]), ("", ["burst"]), ("none", []), ("otlp", ["otlp"]),
    ("otlp, burst", ["otlp", "burst"]), ("Console,none", ["console"])])
def test_exporters_are_named_as_the_sdk_reads_otel_traces_exporter(setting, names):
    assert tracing.exporter_names(setting) == names


def test_phase_spans_take_a_traceparent_as_parent_and_links():
    tracing.setup("test")
    with tracing.span("parent") as parent:
        traceparent = tracing.traceparent_of(parent)
    child = tracing.start_span("child", parent=traceparent, links=[traceparent, "junk", None])
    assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    assert child.parent.span_id == parent.get_span_context().span_id
    assert len(child.links) == 1
    orphan = tracing.start_span("orphan", parent="00-not-a-traceparent")
    assert orphan.get_span_context().trace_id != parent.get_span_context().trace_id
    with tracing.attached(traceparent):
        assert tracing.current_traceparent() == traceparent
    with tracing.attached(None):
        assert tracing.current_traceparent() != traceparent


def test_metrics_ports_come_from_the_base_or_one_by_one():
    assert metrics.port_for("schedd", 9470, {}) == 9470
    assert metrics.port_for("cloud", 9470, {}) == 9476
    assert metrics.port_for("factory-2", 9470, {}) == 0  # any free port
    assert metrics.port_for("factory-2", 9470, {"factory-2": 9480}) == 9480
    assert metrics.port_for("web", 0, {}) == 0
    assert len(set(metrics.PORT_OFFSETS.values())) == len(metrics.PORT_OFFSETS)


def test_served_metrics_say_where_they_are_and_clean_up(tmp_path):
    served = metrics.serve(tmp_path, "schedd", "127.0.0.1", 0)
    try:
        assert metrics.served_url(tmp_path, "schedd") == served.url
        import urllib.request

        with urllib.request.urlopen(served.url, timeout=5) as answer:
            assert b"burst_messages_published_total" in answer.read()
    finally:
        served.close()
    assert metrics.served_url(tmp_path, "schedd") is None


def _launched(pilot: str, requested: float, at: float) -> PilotLaunched:
    return PilotLaunched(pilot_id=pilot, entry="e", site="S", factory="f", driver="local",
                         provider="local", time=at, requested_at=requested)


def test_the_flow_fold_gives_each_step_once():
    flow = FlowLatency()
    steps = []
    for event, at in [
        (JobSubmitted(schedd="s", cluster=1, jobs=["1.0", "1.1"]), 100.0),
        (_launched("p1", 101.0, 101.5), 101.5),
        (PilotRegistered(pilot_id="p1", entry="e", site="S", provider="local", cpus=1,
                         memory_mb=1, disk_mb=1), 104.0),
        (JobRunning(schedd="s", job_id="1.0", owner="o", pilot_id="p1"), 105.0),
        (JobRunning(schedd="s", job_id="1.1", owner="o", pilot_id="p1"), 106.0),
        (JobRunning(schedd="s", job_id="1.0", owner="o", pilot_id="p1"), 107.0),  # requeued
        (JobCompleted(schedd="s", job_id="1.0", owner="o", exit_code=0), 110.0),
        (PilotExited(pilot_id="p1", entry="e", reason="idle"), 120.0),
    ]:
        steps += flow.apply(event, at)
    assert steps == [("requested_to_launched", 0.5), ("launched_to_registered", 2.5),
                     ("submitted_to_requested", 1.0), ("registered_to_running", 1.0),
                     ("submitted_to_running", 5.0), ("submitted_to_running", 6.0),
                     ("submitted_to_completed", 10.0), ("running_to_completed", 5.0)]
    assert not flow.pilots and list(flow.jobs) == ["1.1"]


def test_the_flow_fold_is_bounded():
    flow = FlowLatency(max_tracked=5)
    for cluster in range(20):
        flow.apply(JobSubmitted(schedd="s", cluster=cluster, jobs=[f"{cluster}.0"]), 1.0)
    assert list(flow.jobs) == [f"{c}.0" for c in range(15, 20)]


@pytest.mark.parametrize(("protocol", "module"), [
    (None, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
    ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
    ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter")])
def test_otlp_is_the_installed_exporter_of_the_protocol_asked_for(monkeypatch, protocol, module):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    if protocol is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    exporter = tracing._exporter("otlp", None)
    try:
        assert type(exporter).__module__ == module
    finally:
        exporter.shutdown()
