"""`burst bench bus`: the runtime bus beside raw pika doing the same work, in the same run.

    publisher process                                                   consumer process
    RabbitBus.send_many ─▶ <ns>.cmd ─glidein.request.v2.bench─▶ [<ns>.bench] ─▶ handler, bus acks
    pika basic_publish  ─▶ <ns>.cmd ─glidein.request.v2.raw───▶ [<ns>.raw]   ─▶ pika, batched acks

Both sides move the same message through the same direct exchange into a
durable queue, persistent, with publisher confirms and consumer acks, between
two processes, and send the same AMQP properties with it, those DESIGN.md asks
of every message: content_type, type (the schema name), a fresh message_id,
correlation_id, timestamp, delivery_mode persistent, and the headers
x-schema-version and traceparent (one trace and one correlation id per batch
of BATCH messages). The body is the same msgpack map. Before measuring, one
message of each side is copied to a probe queue and read back, and the result
reports what arrived (`bus_properties`, `raw_pika_properties`).

Raw pika is done the best way pika allows: SelectConnection, confirms
pipelined in a window of WINDOW messages, prefetch PREFETCH, one ack with
multiple=True per read; its consumer checks the type and version header and
unpacks the body. The bus adds what a service gets: the schema dataclass
(encoded, decoded and checked by msgspec), the envelope, the handler run in
the sender's trace (in a consumer span when spans are exported), metrics,
and acks held back until whatever the handler published is confirmed. Both
use pika's public API only.

Both publishers publish from their connection's I/O thread, as a service does
from its handlers and timers, keeping at most WINDOW messages unconfirmed.
The four sides (and WINDOW, PREFETCH, BATCH, TICK_S) are in bench_sides.py;
this module runs them in processes and reports.

Two measures, each side in its own pair of processes (spawned: a script calling
run() needs the usual `if __name__ == "__main__":` guard):
- throughput: `msgs` messages as fast as the confirm window allows, from the
  first publish to the last message handled; best of `rounds` per side, sides
  alternating. CPU time per message of each process is reported beside it: on
  a small machine the publisher, the consumer and the broker share the cores,
  so it explains the rate better than the rate explains itself;
- latency: paced at `paced_rate` msg/s for `paced_seconds`, published in ticks
  of TICK_S; every message carries its send time (`time`, epoch seconds, one
  host) and the consumer records now - time. Raw pika, then the bus, both
  before the throughput rounds (the broker is still busy for a while after
  a burst).
The load average at the start is in the result: other work on the machine
shows in both rates and in the latency tail.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
import uuid
from functools import partial
from typing import Any

import pika

import schemas
from schemas.provisioning import GlideinRequest

from . import codec
from .bench_sides import (
    BUS_KEY,
    QUEUE,
    RAW_KEY,
    RAW_QUEUE,
    BusConsumer,
    BusPublisher,
    RawConsumer,
    RawPublisher,
    Tally,
    cpu_s,
    message,
    rss_mib,
)
from .bus import Names
from .config import Settings
from .rabbit import blocking_connection, declare_topology, delete_namespace

WARMUP_MSGS = 2000
RATIO_TARGET, P99_TARGET_MS = 0.8, 30.0


# --- processes ----------------------------------------------------------------------------------


def _worker(role: str, kind: str, settings: Settings, conn: Any) -> None:
    """One process: start, say ready, then run phases until told to stop."""
    tally = Tally()
    sides = {("consumer", "bus"): partial(BusConsumer, settings, tally),
             ("consumer", "raw"): partial(RawConsumer, settings, tally),
             ("publisher", "bus"): partial(BusPublisher, settings),
             ("publisher", "raw"): partial(RawPublisher, settings)}
    side = None
    try:
        side = sides[role, kind]()
        side.start()
        conn.send(("ready", None))
        while (command := conn.recv())[0] == "phase":
            _, count, rate = command
            cpu = cpu_s()
            if role == "publisher":
                first, confirmed = side.publish(count, rate)
                conn.send(("sent", {"first": first, "confirmed": confirmed,
                                    "cpu_s": cpu_s() - cpu, "rss_mib": rss_mib()}))
                continue
            tally.arm(count)
            conn.send(("armed", None))
            if not tally.done.wait(60 + count / 500):
                raise RuntimeError(f"got {len(tally.latencies)} of {count} messages")
            conn.send(("done", {**tally.summary(), "cpu_s": cpu_s() - cpu}))
    except Exception as exc:
        conn.send(("error", f"{kind} {role}: {type(exc).__name__}: {exc}"))
    finally:
        if side is not None:
            side.stop()


class _Pair:
    """A consumer and a publisher process of one kind, driven phase by phase over pipes."""

    def __init__(self, mp: Any, kind: str, settings: Settings):
        self.kind = kind
        self.conns: dict[str, Any] = {}
        self.procs: list[Any] = []
        for role in ("consumer", "publisher"):
            ours, theirs = mp.Pipe()
            proc = mp.Process(target=_worker, args=(role, kind, settings, theirs),
                              name=f"bench-{kind}-{role}", daemon=True)
            proc.start()
            theirs.close()
            self.conns[role] = ours
            self.procs.append(proc)

    def wait_ready(self) -> None:
        for role in self.conns:
            self._expect(role, "ready", 30)

    def measure(self, count: int, rate: float | None) -> dict[str, Any]:
        timeout = 60 + count / 500
        self.conns["consumer"].send(("phase", count, rate))
        self._expect("consumer", "armed", timeout)
        self.conns["publisher"].send(("phase", count, rate))
        sent = self._expect("publisher", "sent", timeout)
        seen = self._expect("consumer", "done", timeout)
        return {**seen, "msgs_per_s": count / (seen["last"] - sent["first"]),
                "published_per_s": count / (sent["confirmed"] - sent["first"]),
                "publisher_cpu_us": sent["cpu_s"] / count * 1e6,
                "consumer_cpu_us": seen["cpu_s"] / count * 1e6,
                "rss_mib": max(seen["rss_mib"], sent["rss_mib"])}

    def _expect(self, role: str, tag: str, timeout: float) -> Any:
        conn = self.conns[role]
        if not conn.poll(timeout):
            raise RuntimeError(f"bench {self.kind} {role}: no {tag!r} within {timeout:.0f} s")
        try:
            got, value = conn.recv()
        except EOFError:
            raise RuntimeError(f"bench {self.kind} {role}: the process exited") from None
        if got == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                conn.send(("stop", 0, None))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


# --- what each side sends -----------------------------------------------------------------------

_VALUES_SHOWN = {"content_type", "type", "delivery_mode", codec.VERSION_HEADER}


def _probe(settings: Settings, pairs: dict[str, _Pair]) -> dict[str, str]:
    """One message of each side, copied by the broker to a probe queue and read back: the
    properties and body each side really sends, as a line (values of the constant ones)."""
    names = Names(settings.namespace)
    conn = blocking_connection(settings)
    try:
        ch = conn.channel()
        probe = ch.queue_declare("", exclusive=True).method.queue
        seen = {}
        for kind, key in (("bus", BUS_KEY), ("raw", RAW_KEY)):
            ch.queue_bind(probe, names.cmd, routing_key=key)
            pairs[kind].measure(1, None)
            ch.queue_unbind(probe, names.cmd, routing_key=key)
            method, props, body = ch.basic_get(probe, auto_ack=True)
            seen[kind] = _describe(props, body) if method is not None else "nothing arrived"
        return seen
    finally:
        conn.close()


def _describe(props: pika.BasicProperties, body: bytes) -> str:
    def item(name: str, value: Any) -> str:
        return f"{name}={value}" if name in _VALUES_SHOWN else name

    fields = [item(k, v) for k, v in sorted(vars(props).items())
              if v is not None and k != "headers"]
    headers = [item(k, v) for k, v in sorted((props.headers or {}).items())]
    return f"{' '.join(fields)} headers({' '.join(headers)}) body {len(body)} B"


# --- the run ------------------------------------------------------------------------------------


def run(settings: Settings, *, msgs: int = 50_000, paced_rate: float = 5_000.0,
        paced_seconds: float = 5.0, rounds: int = 5, warmup: int = WARMUP_MSGS) -> dict:
    """Measure both sides in a namespace of their own, removed at the end."""
    settings = dataclasses.replace(settings, namespace=f"bench{uuid.uuid4().hex[:10]}")
    load_1m = os.getloadavg()[0]
    mp = multiprocessing.get_context("spawn")
    pairs: dict[str, _Pair] = {}
    runs: dict[str, list[dict]] = {"bus": [], "raw": []}
    paced_msgs = max(1, int(paced_rate * paced_seconds))
    try:
        declare_topology(settings, [])  # the exchanges both sides publish to
        for kind in ("bus", "raw"):
            pairs[kind] = _Pair(mp, kind, settings)
        for pair in pairs.values():
            pair.wait_ready()
        sent = _probe(settings, pairs)
        for pair in pairs.values():
            if warmup:
                pair.measure(min(warmup, msgs), None)
        # Paced first: for a few seconds after a burst the broker is still busy with it (its
        # message store), which would count against whichever side is paced next.
        paced = {kind: pairs[kind].measure(paced_msgs, paced_rate) for kind in ("raw", "bus")}
        for i in range(rounds):
            for kind in ("raw", "bus") if i % 2 == 0 else ("bus", "raw"):
                runs[kind].append(pairs[kind].measure(msgs, None))
    finally:
        for pair in pairs.values():
            pair.close()
        delete_namespace(settings, [QUEUE, RAW_QUEUE])
    return {**_result(msgs, paced_rate, paced_msgs, runs, paced, sent),
            "load_avg_1m_at_start": round(load_1m, 2), "cpus": os.cpu_count()}


def _result(msgs: int, paced_rate: float, paced_msgs: int, runs: dict[str, list[dict]],
            paced: dict[str, dict], sent: dict[str, str]) -> dict:
    bus = max(runs["bus"], key=lambda r: r["msgs_per_s"])
    raw = max(runs["raw"], key=lambda r: r["msgs_per_s"])
    ratio = bus["msgs_per_s"] / raw["msgs_per_s"]
    return {
        "msgs": msgs,
        "rounds": len(runs["bus"]),
        "raw_pika_rounds": len(runs["raw"]),
        "schema": f"{GlideinRequest.NAME}.v{GlideinRequest.VERSION}",
        "body_bytes": len(schemas.encode(message(msgs, time.time()))),
        "bus_properties": sent["bus"],
        "raw_pika_properties": sent["raw"],
        "same_properties": sent["bus"] == sent["raw"],
        "bus_msgs_per_s": round(bus["msgs_per_s"]),
        "raw_pika_msgs_per_s": round(raw["msgs_per_s"]),
        "bus_publish_msgs_per_s": round(bus["published_per_s"]),
        "raw_pika_publish_msgs_per_s": round(raw["published_per_s"]),
        "bus_publisher_cpu_us_per_msg": round(bus["publisher_cpu_us"], 1),
        "bus_consumer_cpu_us_per_msg": round(bus["consumer_cpu_us"], 1),
        "raw_pika_publisher_cpu_us_per_msg": round(raw["publisher_cpu_us"], 1),
        "raw_pika_consumer_cpu_us_per_msg": round(raw["consumer_cpu_us"], 1),
        "bus_runs_msgs_per_s": [round(r["msgs_per_s"]) for r in runs["bus"]],
        "raw_pika_runs_msgs_per_s": [round(r["msgs_per_s"]) for r in runs["raw"]],
        "ratio_vs_raw_pika": round(ratio, 3),
        "bus_received": min(r["received"] for r in runs["bus"]),
        "raw_pika_received": min(r["received"] for r in runs["raw"]),
        "paced_target_msgs_per_s": paced_rate,
        "paced_msgs": paced_msgs,
        "paced_received": paced["bus"]["received"],
        "raw_pika_paced_received": paced["raw"]["received"],
        "paced_rate_msgs_per_s": round(paced["bus"]["msgs_per_s"]),
        "p50_ms": round(paced["bus"]["p50_ms"], 3),
        "p99_ms": round(paced["bus"]["p99_ms"], 3),
        "max_ms": round(paced["bus"]["max_ms"], 3),
        "raw_pika_paced_rate_msgs_per_s": round(paced["raw"]["msgs_per_s"]),
        "raw_pika_p50_ms": round(paced["raw"]["p50_ms"], 3),
        "raw_pika_p99_ms": round(paced["raw"]["p99_ms"], 3),
        "raw_pika_max_ms": round(paced["raw"]["max_ms"], 3),
        "rss_mib": round(max(r["rss_mib"] for r in [*runs["bus"], paced["bus"]]), 1),
        "raw_pika_rss_mib": round(max(r["rss_mib"] for r in [*runs["raw"], paced["raw"]]), 1),
        "ratio_target": RATIO_TARGET,
        "ratio_target_met": ratio >= RATIO_TARGET,
        "p99_target_ms": P99_TARGET_MS,
        "p99_target_met": paced["bus"]["p99_ms"] < P99_TARGET_MS,
    }


def format_report(result: dict) -> str:
    r = result

    def row(label: str, bus: str, raw: str) -> str:
        return f"  {label:<30}{bus:>30}{raw:>30}"

    def rounds(values: list[int]) -> str:
        return " ".join(f"{v / 1000:.1f}k" for v in values)

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    paced = f"{r['paced_target_msgs_per_s']:,.0f} msg/s"
    same = "the same on both sides" if r["same_properties"] else "DIFFERENT"
    return "\n".join([
        (f"burst bench bus: {r['msgs']:,} x {r['schema']} ({r['body_bytes']} B msgpack body), "
         "durable queue, persistent,"),
        ("publisher confirms, consumer acks; publisher and consumer in separate processes; "
         f"{r['cpus']} cpus, load {r['load_avg_1m_at_start']:.2f} at start"),
        f"properties sent ({same}, as the broker delivered them):",
        f"  runtime bus  {r['bus_properties']}",
        f"  raw pika     {r['raw_pika_properties']}",
        ("runtime bus: send_many in a span, schema envelope, handler per message, acks after "
         "confirms; raw pika: basic_publish, pipelined confirms, one ack per read"),
        row("", "runtime bus", "raw pika"),
        row("throughput (best of rounds)", f"{r['bus_msgs_per_s']:,} msg/s",
            f"{r['raw_pika_msgs_per_s']:,} msg/s"),
        row("  rounds", str(r["rounds"]), str(r["raw_pika_rounds"])),
        row("  every round", rounds(r["bus_runs_msgs_per_s"]),
            rounds(r["raw_pika_runs_msgs_per_s"])),
        row("  publish rate (to last confirm)", f"{r['bus_publish_msgs_per_s']:,} msg/s",
            f"{r['raw_pika_publish_msgs_per_s']:,} msg/s"),
        row("  cpu per msg, publisher", f"{r['bus_publisher_cpu_us_per_msg']:.0f} us",
            f"{r['raw_pika_publisher_cpu_us_per_msg']:.0f} us"),
        row("  cpu per msg, consumer", f"{r['bus_consumer_cpu_us_per_msg']:.0f} us",
            f"{r['raw_pika_consumer_cpu_us_per_msg']:.0f} us"),
        row(f"paced at {paced}", f"{r['paced_rate_msgs_per_s']:,} msg/s",
            f"{r['raw_pika_paced_rate_msgs_per_s']:,} msg/s"),
        row("  latency p50", f"{r['p50_ms']:.2f} ms", f"{r['raw_pika_p50_ms']:.2f} ms"),
        row("  latency p99", f"{r['p99_ms']:.2f} ms", f"{r['raw_pika_p99_ms']:.2f} ms"),
        row("  latency max", f"{r['max_ms']:.2f} ms", f"{r['raw_pika_max_ms']:.2f} ms"),
        row("rss (max of the processes)", f"{r['rss_mib']:.0f} MiB",
            f"{r['raw_pika_rss_mib']:.0f} MiB"),
        "targets",
        (f"  throughput >= {r['ratio_target']}x raw pika       {r['ratio_vs_raw_pika']:.2f}x"
         f"      {met(r['ratio_target_met'])}"),
        (f"  p99 < {r['p99_target_ms']:.0f} ms at {paced:<16} {r['p99_ms']:.2f} ms"
         f"   {met(r['p99_target_met'])}"),
    ])


if __name__ == "__main__":
    print(format_report(run(Settings.from_env())))
