"""`burst bench bus` at a tiny size against the real broker: the shape of the result only.

Benchmarks are not timed tests: nothing here asserts a speed target.
"""

from __future__ import annotations

import re

import pika.exceptions

from services.runtime import bench
from services.runtime.rabbit import blocking_connection


def test_bench_bus_reports_every_figure_with_sane_values(rabbit_settings):
    result = bench.run(rabbit_settings, msgs=500, paced_rate=500.0, paced_seconds=1.0,
                       rounds=1, warmup=0)

    assert result["msgs"] == 500
    assert result["rounds"] == result["raw_pika_rounds"] == 1
    assert result["bus_received"] == result["raw_pika_received"] == 500
    assert result["paced_received"] == result["raw_pika_paced_received"] \
        == result["paced_msgs"] == 500
    for key in ("bus_msgs_per_s", "raw_pika_msgs_per_s", "ratio_vs_raw_pika",
                "paced_rate_msgs_per_s", "raw_pika_paced_rate_msgs_per_s", "rss_mib"):
        assert result[key] > 0, key
    for key in ("bus_publisher_cpu_us_per_msg", "bus_consumer_cpu_us_per_msg",
                "raw_pika_publisher_cpu_us_per_msg", "raw_pika_consumer_cpu_us_per_msg"):
        assert result[key] >= 0, key  # CPU time is counted in ticks: 500 messages may show 0
    for prefix in ("", "raw_pika_"):
        assert 0 <= result[f"{prefix}p50_ms"] <= result[f"{prefix}p99_ms"] \
            <= result[f"{prefix}max_ms"]
    assert isinstance(result["ratio_target_met"], bool)
    assert isinstance(result["p99_target_met"], bool)
    # Like for like: what the broker delivered of each side carries the same properties.
    assert result["same_properties"] and result["bus_properties"] == result["raw_pika_properties"]
    assert re.fullmatch(
        r"content_type=application/msgpack correlation_id delivery_mode=2 message_id timestamp "
        r"type=glidein.request headers\(traceparent x-schema-version=2\) body \d+ B",
        result["bus_properties"])
    report = bench.format_report(result)
    assert "raw pika" in report and "p99" in report


def test_bench_bus_removes_its_namespace(rabbit_settings, monkeypatch):
    used = []
    real = bench.delete_namespace
    monkeypatch.setattr(bench, "delete_namespace",
                        lambda settings, queues: used.append(settings) or real(settings, queues))
    bench.run(rabbit_settings, msgs=50, paced_rate=100.0, paced_seconds=0.2, rounds=1, warmup=0)

    (settings,) = used
    assert settings.namespace.startswith("bench")
    conn = blocking_connection(settings)
    try:
        ch = conn.channel()
        for queue in (bench.QUEUE, bench.RAW_QUEUE):
            try:
                ch.queue_declare(f"{settings.namespace}.{queue}", passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                assert exc.reply_code == 404  # not found: the channel is closed, open another
                ch = conn.channel()
            else:
                raise AssertionError(f"{queue} queue left behind")
    finally:
        conn.close()
