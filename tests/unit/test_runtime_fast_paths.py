"""The shortcuts on the bus's per-message path keep what the long way did."""

from __future__ import annotations

import dataclasses
import uuid

import msgpack
import msgspec
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import schemas
from schemas.provisioning import GlideinRequest
from services.runtime import codec, metrics, tracing


def _request(**fields) -> GlideinRequest:
    return GlideinRequest(**{"frontend": "f", "group": "g", "entry": "e", "idle_target": 1,
                             "max_glideins": 2, "remove_excess": "NO", **fields})


# --- codec and schemas --------------------------------------------------------------------------


def test_envelope_defaults_are_its_own_and_it_cannot_change():
    env = codec.Envelope(type="t", version=1, body=b"", message_id="m")
    assert env.headers == {} and env.headers is not codec.Envelope("t", 1, b"", "m").headers
    assert (env.content_type, env.correlation_id, env.reply_to) == (codec.CONTENT_TYPE, None, None)
    assert msgspec.structs.replace(env, routing_key="k").routing_key == "k"
    with pytest.raises(AttributeError):
        env.type = "other"  # type: ignore[misc]


def test_message_ids_are_random_version_4_uuids():
    ids = {codec.new_message_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize("parent", [
    "6f1c2b3a4d5e4f708192a3b4c5d6e7f8", "6F1C2B3A4D5E4F708192A3B4C5D6E7F8",
    "{6f1c2b3a-4d5e-4f70-8192-a3b4c5d6e7f8}", "flow-1", "", "g" * 32, "ab " * 10 + "ab"])
def test_derived_ids_are_uuid5_of_the_parent_and_index(parent):
    namespace = uuid.NAMESPACE_OID
    try:
        namespace = uuid.UUID(hex=parent)
    except ValueError:
        pass
    for index in (1, 2, 1000):
        assert codec.derived_message_id(parent, index) == uuid.uuid5(
            namespace, f"{parent}/{index}").hex


def test_decoded_messages_equal_built_ones_and_own_their_defaults():
    sent = _request(seq=3)
    env = codec.encode(sent)
    first, second = codec.decode(env), codec.decode(env)
    assert first == sent and repr(first) == repr(sent) and hash(repr(first))
    assert first.credentials == {} and first.credentials is not second.credentials
    assert list(vars(first)) == [f.name for f in dataclasses.fields(GlideinRequest)]
    assert msgpack.unpackb(env.body) == schemas.to_plain(sent)
    assert list(schemas.to_plain(first)) == list(schemas.to_plain(sent))


def test_to_plain_converts_nested_values_in_field_order():
    msg = _request(credentials={"domain": b"blob"})
    plain = schemas.to_plain(msg)
    assert list(plain) == [f.name for f in dataclasses.fields(GlideinRequest)]
    assert plain["credentials"] == {"domain": b"blob"}
    assert plain["credentials"] is not msg.credentials


# --- tracing ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _tracer_provider(monkeypatch):
    tracing.setup("test")  # what every bus does; once per process
    # An earlier test may have run a pilot's main in this process, which exports spans.
    monkeypatch.setattr(tracing._state, "recording", False)


def _parts(traceparent: str) -> tuple[str, str]:
    _version, trace_id, span_id, _flags = traceparent.split("-")
    return trace_id, span_id


def test_handler_without_exporter_runs_in_the_senders_span_context():
    with tracing.tracer().start_as_current_span("send"):
        headers = tracing.inject({})
    assert not tracing.recording()
    with tracing.consuming("x", headers) as span:
        assert tracing.current_traceparent() == headers["traceparent"]
        assert not span.is_recording()
        span.record_exception(ValueError("ignored"))  # what _dispatch does on failure
    assert tracing.current_traceparent() is None  # detached


def test_handler_of_a_message_without_traceparent_starts_a_trace():
    seen = []
    for _ in range(2):
        with tracing.consuming("x", {}):
            seen.append(tracing.current_traceparent())
    assert all(seen) and _parts(seen[0])[0] != _parts(seen[1])[0]


def test_handler_with_exporter_gets_a_consumer_span_child_of_the_sender(monkeypatch):
    monkeypatch.setattr(tracing._state, "recording", True)
    with tracing.tracer().start_as_current_span("send"):
        headers = tracing.inject({})
    with tracing.consuming("x", headers, {"burst.attempt": 0}) as span:
        assert span.is_recording() and span.parent is not None
        trace_id, span_id = _parts(tracing.current_traceparent())
    sender_trace, sender_span = _parts(headers["traceparent"])
    assert trace_id == sender_trace and span_id != sender_span
    assert format(span.parent.span_id, "016x") == sender_span


def test_inject_follows_the_current_span():
    with tracing.tracer().start_as_current_span("a"):
        first, again = tracing.inject({}), tracing.inject({"k": 1})
    with tracing.tracer().start_as_current_span("b"):
        other = tracing.inject({})
    assert first["traceparent"] == again["traceparent"] != other["traceparent"]
    assert again["k"] == 1 and "tracestate" not in first


# --- metrics ------------------------------------------------------------------------------------


def _samples(name: str) -> dict:
    for family in text_string_to_metric_families(generate_latest().decode()):
        if family.name == name:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return {}


def test_handled_and_published_counts_are_exposed_as_prometheus_metrics():
    queue, schema = f"q{uuid.uuid4().hex[:6]}", f"s{uuid.uuid4().hex[:6]}"
    one, two = metrics.HandledMetrics(queue, schema), metrics.HandledMetrics(queue, schema)
    for seconds in (0.001, 0.02, 30.0):
        one.observe(seconds)
    two.observe(0.001)
    handled = _samples("burst_messages_handled")
    assert handled[("burst_messages_handled_total",
                    (("queue", queue), ("schema", schema)))] == 4
    seconds = _samples("burst_handler_seconds")
    label = (("schema", schema),)
    assert seconds[("burst_handler_seconds_count", label)] == 4
    assert seconds[("burst_handler_seconds_sum", label)] == pytest.approx(30.022)
    assert seconds[("burst_handler_seconds_bucket", (("le", "0.005"), *label))] == 2
    assert seconds[("burst_handler_seconds_bucket", (("le", "0.025"), *label))] == 3
    assert seconds[("burst_handler_seconds_bucket", (("le", "+Inf"), *label))] == 4

    exchange = f"x{uuid.uuid4().hex[:6]}"
    published = metrics.PublishedCount(exchange)
    published.count += 5
    assert _samples("burst_messages_published")[
        ("burst_messages_published_total", (("exchange", exchange),))] == 5
