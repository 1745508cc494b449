"""services/runtime/wire.py must give pika's bytes, values and errors, whatever the input."""

from __future__ import annotations

import decimal
import random
from datetime import UTC, datetime

import pika
import pytest
from pika import frame, spec

from services.runtime import wire

TRACEPARENT = "00-f1123b1f095b51955ef10099b929e44f-3c2b95a9b64bdcdf-01"
TABLE_VALUES = ["", "text", "é", TRACEPARENT, "x" * 300, 0, 1, -1, 2**31, -(2**31) - 1, 2**62,
                True, False, None, b"bytes", b"\xff", 1.5, decimal.Decimal("1.25"),
                datetime(2024, 1, 2, tzinfo=UTC), [1, "a", [b"x"]], {"nested": {"a": 1}}]
SHORT_VALUES = [None, "", "a", "application/msgpack", "é" * 10, "x" * 255, b"raw", b"\xfe\xff"]


def _random_properties(rng: random.Random) -> dict:
    fields = {}
    for name in ("content_type", "correlation_id", "reply_to", "expiration", "message_id",
                 "type"):
        fields[name] = rng.choice(SHORT_VALUES)
    fields["delivery_mode"] = rng.choice([None, 1, 2])
    fields["timestamp"] = rng.choice([None, 0, 1_700_000_000, 2**64 - 1])
    if rng.random() < 0.8:
        keys = ["x-schema-version", "traceparent", "tracestate", "x-retry-count", "k" * 200, "é"]
        fields["headers"] = {rng.choice(keys): rng.choice(TABLE_VALUES)
                             for _ in range(rng.randrange(0, 5))}
    if rng.random() < 0.2:  # the fields the short path leaves to pika
        rare = rng.choice(["content_encoding", "priority", "user_id", "app_id", "cluster_id"])
        fields[rare] = 3 if rare == "priority" else "v"
    return fields


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as exc:  # noqa: BLE001 - the same exception is what is compared
        return "error", type(exc)


def test_encode_gives_pikas_bytes_or_error():
    rng = random.Random(7)
    for _ in range(3000):
        fields = _random_properties(rng)
        ours = _outcome(lambda f=fields: b"".join(wire.Properties(**f).encode()))
        theirs = _outcome(lambda f=fields: b"".join(pika.BasicProperties(**f).encode()))
        assert ours == theirs, fields


@pytest.mark.parametrize("bad", [{"content_type": 5}, {"timestamp": -1}, {"timestamp": 1.5},
                                 {"delivery_mode": 300}, {"message_id": "x" * 256},
                                 {"headers": {"k": object()}}, {"headers": {"k": 2**64}},
                                 {"headers": {"k" * 256: 1}}])
def test_encode_errors_are_pikas(bad):
    with pytest.raises(Exception) as ours:
        wire.Properties(**bad).encode()
    with pytest.raises(Exception) as theirs:
        pika.BasicProperties(**bad).encode()
    assert type(ours.value) is type(theirs.value)


def test_decode_gives_pikas_values():
    rng = random.Random(11)
    for _ in range(3000):
        fields = _random_properties(rng)
        try:
            props = pika.BasicProperties(**fields)
            header = frame.Header(1, 152, props).marshal()
        except Exception:  # noqa: BLE001 - not encodable: nothing to decode
            continue
        buffer = header + frame.Body(1, b"body").marshal()
        ours, theirs = wire.decode_frame(buffer), frame.decode_frame(buffer)
        assert ours[0] == theirs[0] == len(header)
        assert type(ours[1]) is frame.Header and ours[1].body_size == theirs[1].body_size
        assert vars(ours[1].properties) == vars(theirs[1].properties), fields
        assert _types(vars(ours[1].properties)) == _types(vars(theirs[1].properties))
        body = wire.decode_frame(buffer[len(header):])
        assert body[0] == len(buffer) - len(header) and body[1].fragment == b"body"


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_other_frames_and_partial_data_are_pikas():
    deliver = frame.Method(1, spec.Basic.Deliver(consumer_tag="c", delivery_tag=9,
                                                 exchange="x", routing_key="k")).marshal()
    header = frame.Header(1, 4, pika.BasicProperties(type="t")).marshal()
    for buffer in (deliver, b"AMQP\x00\x00\x09\x01", frame.Heartbeat().marshal(),
                   header[:5], header[:-1], b""):
        ours, theirs = wire.decode_frame(buffer), frame.decode_frame(buffer)
        assert ours[0] == theirs[0]
        assert type(ours[1]) is type(theirs[1])
    with pytest.raises(pika.exceptions.InvalidFrameError):
        wire.decode_frame(header[:-1] + b"\x00")


def test_malformed_properties_fall_back_to_pika():
    header = bytearray(frame.Header(1, 4, pika.BasicProperties(
        content_type="a", headers={"k": "v"}, timestamp=5)).marshal())
    header[7 + 12 + 2 + 1 + 1 + 3] = 0xFF  # the table length, now past the frame
    buffer = bytes(header)
    assert _outcome(lambda: vars(wire.decode_frame(buffer)[1].properties)) == \
        _outcome(lambda: vars(frame.decode_frame(buffer)[1].properties))


@pytest.mark.parametrize("fields", [
    {"consumer_tag": "ctag1.0123456789abcdef", "delivery_tag": 1, "redelivered": False,
     "exchange": "burst.cmd", "routing_key": "glidein.request.v2.bench"},
    {"consumer_tag": "", "delivery_tag": 2**64 - 1, "redelivered": True, "exchange": "",
     "routing_key": "é" * 100},
])
def test_deliver_is_decoded_as_pika_does(fields):
    buffer = frame.Method(3, spec.Basic.Deliver(**fields)).marshal()
    ours, theirs = wire.decode_frame(buffer + b"\x03"), frame.decode_frame(buffer + b"\x03")
    assert ours[0] == theirs[0] == len(buffer)
    assert ours[1].channel_number == theirs[1].channel_number == 3
    assert type(ours[1].method) is spec.Basic.Deliver
    assert vars(ours[1].method) == vars(theirs[1].method) == fields
    bad = bytearray(buffer)
    bad[11] = 200  # a consumer tag longer than the frame
    assert _outcome(lambda: vars(wire.decode_frame(bytes(bad))[1].method)) == \
        _outcome(lambda: vars(frame.decode_frame(bytes(bad))[1].method))


def test_frames_are_decoded_at_an_offset_in_a_stream():
    frames = [
        frame.Method(1, spec.Basic.Deliver(consumer_tag="c", delivery_tag=5, exchange="x",
                                           routing_key="k")).marshal(),
        frame.Header(1, 4, pika.BasicProperties(type="t", headers={"traceparent": "p"})).marshal(),
        frame.Body(1, b"body").marshal(),
        frame.Method(1, spec.Basic.Ack(delivery_tag=9, multiple=True)).marshal(),
        frame.Heartbeat().marshal(),
    ]
    stream = b"".join(frames)
    start = 0
    for marshaled in frames:
        ours = wire.decode_frame(stream, start)
        theirs = frame.decode_frame(stream[start:])
        assert ours[0] == theirs[0] == len(marshaled)
        assert type(ours[1]) is type(theirs[1])
        assert vars(ours[1]).keys() == vars(theirs[1]).keys()
        start += ours[0]
    assert wire.decode_frame(stream + frames[0][:9], start) == (0, None)  # incomplete
