"""`burst bench bus`: the runtime bus beside raw pika, measured in the same run.

    producer process                                                  consumer process
    RabbitBus.send_many ─▶ <ns>.cmd ─glidein.request.v2.bench─▶ [<ns>.bench] ─▶ handler, bus acks
    pika, confirm window ─▶ (default exchange) ───────────────▶ [<ns>.raw]   ─▶ pika, batched acks

Both kinds move the same message (a GlideinRequest as a msgpack map) through a
durable queue, persistent, with publisher confirms and consumer acks, between
two processes. Raw pika is done the best way pika allows: SelectConnection,
confirms pipelined in a window of WINDOW messages, prefetch PREFETCH, and one
ack with multiple=True per read. The bus adds what a service gets: the schema
envelope (type, version header, message id, timestamp), the traceparent header
and the handler run in the sender's trace (in a consumer span when spans are
exported), metrics, and acks held back until whatever the handler published is
confirmed. Its connection is the runtime's own (rabbit._Connection: coalesced
writes, deliveries decoded by wire.py); raw pika keeps pika's.

Both producers publish from their connection's I/O thread, as a service does
from its handlers and timers, keeping at most WINDOW messages unconfirmed.

Two measures, each kind in its own pair of processes (spawned: a script calling
run() needs the usual `if __name__ == "__main__":` guard):
- throughput: `msgs` messages as fast as the confirm window allows, from the
  first publish to the last message handled; best of `rounds`, kinds alternating.
  CPU time per message of each process is reported beside it: on a small
  machine the producer, the consumer and the broker share the cores, so it
  explains the rate better than the rate explains itself;
- latency: paced at `paced_rate` msg/s for `paced_seconds`, published in ticks
  of TICK_S; every message carries its send time (`time`, epoch seconds, one
  host) and the consumer records now - time.
The load average at the start is in the result: other work on the machine
shows in both rates and in the latency tail.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import threading
import time
import uuid
from functools import partial
from typing import Any

import msgpack
import pika
import psutil

import schemas
from schemas.provisioning import GlideinRequest

from . import tracing
from .bus import Names, Subscription
from .config import Settings
from .rabbit import RabbitBus, connection_parameters, delete_namespace

QUEUE, RAW_QUEUE, TARGET = "bench", "raw", "bench"
PREFETCH = 1000
WINDOW = 2000  # unconfirmed messages a producer keeps in flight
BATCH = 250  # messages per send_many when publishing as fast as possible
TICK_S = 0.001  # a paced producer publishes what is due once per tick
WARMUP_MSGS = 2000
RATIO_TARGET, P99_TARGET_MS = 0.8, 30.0


def _message(seq: int, sent: float) -> GlideinRequest:
    return GlideinRequest(frontend="frontend", group="main", entry="AWS_US_East", idle_target=12,
                          max_glideins=200, remove_excess="NO", seq=seq, time=sent)


def _cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


# --- consumers ----------------------------------------------------------------------------------


class _Tally:
    """What a consumer saw in one phase: fed on its I/O thread, read once `done` is set.

    arm() is called between phases, when nothing is in flight.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.arm(0)

    def arm(self, expected: int) -> None:
        self.expected, self.last = expected, 0.0
        self.seqs: list[int] = []
        self.latencies: list[float] = []
        self.done.clear()

    def record(self, seq: int, sent: float) -> None:
        now = time.time()
        self.seqs.append(seq)
        self.latencies.append(now - sent)
        if len(self.latencies) == self.expected:
            self.last = now
            self.done.set()

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {"received": len(set(self.seqs)), "last": self.last, "rss_mib": _rss_mib(),
                **{f"{name}_ms": _percentile(ordered, q) * 1000
                   for name, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))}}


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class _BusConsumer:
    """A service with one subscription; acks go through the bus's normal path."""

    def __init__(self, settings: Settings, tally: _Tally):
        self.tally = tally
        self.bus = RabbitBus(settings, "bench-consumer")
        self.bus.subscribe(Subscription(QUEUE, commands={GlideinRequest.NAME: self._handle},
                                        target=TARGET, prefetch=PREFETCH))

    def _handle(self, msg: GlideinRequest, _ctx: Any) -> None:
        self.tally.record(msg.seq, msg.time)

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.stop()


class _RawPika:
    """A SelectConnection and one channel on an I/O thread of its own."""

    def __init__(self, settings: Settings):
        self.queue = Names(settings.namespace).queue(RAW_QUEUE)
        self.ready = threading.Event()
        self.ch: Any = None
        self.conn = pika.SelectConnection(
            connection_parameters(settings.amqp_url),
            on_open_callback=lambda conn: conn.channel(on_open_callback=self._on_channel),
            on_close_callback=lambda _conn, _reason: self.conn.ioloop.stop())
        self.ioloop = self.conn.ioloop

    def _on_channel(self, ch: Any) -> None:
        raise NotImplementedError

    def start(self) -> None:
        threading.Thread(target=self.ioloop.start, name="raw-pika", daemon=True).start()
        if not self.ready.wait(10):
            raise RuntimeError(f"raw pika: no channel on {self.queue} within 10 s")

    def stop(self) -> None:
        self.ioloop.add_callback_threadsafe(self.conn.close)


class _RawConsumer(_RawPika):
    """Prefetch, and one ack with multiple=True per read (or per half prefetch)."""

    def __init__(self, settings: Settings, tally: _Tally):
        super().__init__(settings)
        self.tally = tally
        self.last_tag = self.unacked = 0
        self.ack_scheduled = False

    def _on_channel(self, ch: Any) -> None:
        self.ch = ch
        consume = partial(ch.basic_consume, self.queue, self._on_message,
                          callback=lambda _f: self.ready.set())
        ch.queue_declare(self.queue, durable=True, callback=lambda _f: ch.basic_qos(
            prefetch_count=PREFETCH, callback=lambda _f: consume()))

    def _on_message(self, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        fields = msgpack.unpackb(body)
        self.tally.record(fields["seq"], fields["time"])
        self.last_tag = method.delivery_tag
        self.unacked += 1
        if self.unacked >= PREFETCH // 2:
            self._ack()
        elif not self.ack_scheduled:
            self.ack_scheduled = True
            self.ioloop.call_later(0, self._ack)  # after the rest of this read

    def _ack(self) -> None:
        self.ack_scheduled = False
        if self.unacked:
            self.ch.basic_ack(self.last_tag, multiple=True)
            self.unacked = 0


# --- producers ----------------------------------------------------------------------------------


class _BusProducer:
    """Publishes from the bus's I/O thread, as a service's handlers and timers do: send_many
    in batches inside a span (so traceparent travels), at most WINDOW messages unconfirmed."""

    def __init__(self, settings: Settings):
        self.bus = RabbitBus(settings, "bench-producer")
        self.count = self.sent = self.unconfirmed = 0
        self.rate: float | None = None
        self.first = self.confirmed_at = 0.0
        self.finished = threading.Event()
        self.error: str | None = None

    def start(self) -> None:
        self.bus.start()

    def stop(self) -> None:
        self.bus.stop()

    def produce(self, count: int, rate: float | None) -> tuple[float, float]:
        """Publish `count` messages; (first publish, last confirm), epoch seconds."""
        self.finished.clear()
        self.bus.call_soon_threadsafe(partial(self._begin, count, rate))
        if not self.finished.wait(60 + count / 500):
            raise RuntimeError("bus: publishes not confirmed in time")
        if self.error:
            raise RuntimeError(self.error)
        return self.first, self.confirmed_at

    def _begin(self, count: int, rate: float | None) -> None:
        self.count, self.rate, self.sent, self.unconfirmed = count, rate, 0, 0
        self.first = time.time()
        if rate is None:
            self._fill()
        else:
            self._tick()

    def _send(self, n: int) -> None:
        now = time.time()
        with tracing.tracer().start_as_current_span("bench publish"):
            fut = self.bus.send_many([_message(self.sent + i, now) for i in range(n)], to=TARGET)
        self.sent += n
        self.unconfirmed += n
        fut.add_done_callback(partial(self._on_confirmed, n))

    def _on_confirmed(self, n: int, fut: Any) -> None:
        # Runs inside the bus's confirm handling, on its I/O thread: publish more on the next
        # loop turn (a timer: no wake-up write, as a thread-safe callback would need).
        if fut.exception() is not None:
            self.error = f"bus: {fut.exception()}"
            self.finished.set()
            return
        self.unconfirmed -= n
        if self.sent == self.count and not self.unconfirmed:
            self.confirmed_at = time.time()
            self.finished.set()
        elif self.rate is None:
            self.bus.call_later(0, self._fill)

    def _fill(self) -> None:
        while self.sent < self.count and self.unconfirmed < WINDOW:
            self._send(min(BATCH, self.count - self.sent, WINDOW - self.unconfirmed))

    def _tick(self) -> None:
        due = min(self.count, int((time.time() - self.first) * self.rate) + 1)
        if due > self.sent:
            self._send(due - self.sent)
        if self.sent < self.count:
            tick = math.floor((time.time() - self.first) / TICK_S) + 1
            self.bus.call_later(max(0.0, self.first + tick * TICK_S - time.time()), self._tick)


class _RawProducer(_RawPika):
    """Pipelined confirms: up to WINDOW unconfirmed, more published as confirms arrive."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.plain = schemas.to_plain(_message(0, 0.0))
        self.props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        self.published = self.confirmed = 0  # channel sequence numbers, over all phases
        self.count = self.sent = self.last_seq = 0
        self.rate: float | None = None
        self.first = self.confirmed_at = 0.0
        self.finished = threading.Event()
        self.error: str | None = None

    def _on_channel(self, ch: Any) -> None:
        self.ch = ch
        ch.confirm_delivery(self._on_confirm, callback=lambda _f: self.ready.set())

    def produce(self, count: int, rate: float | None) -> tuple[float, float]:
        self.finished.clear()
        self.ioloop.add_callback_threadsafe(partial(self._begin, count, rate))
        if not self.finished.wait(60 + count / 500):
            raise RuntimeError("raw pika: publishes not confirmed in time")
        if self.error:
            raise RuntimeError(self.error)
        return self.first, self.confirmed_at

    def _begin(self, count: int, rate: float | None) -> None:
        self.count, self.rate, self.sent = count, rate, 0
        self.last_seq = self.published + count
        self.first = time.time()
        if rate is None:
            self._fill()
        else:
            self._tick()

    def _publish(self, n: int) -> None:
        for _ in range(n):
            self.plain["seq"], self.plain["time"] = self.sent, time.time()
            self.ch.basic_publish("", self.queue, msgpack.packb(self.plain), self.props)
            self.sent += 1
        self.published += n

    def _fill(self) -> None:
        self._publish(min(WINDOW - (self.published - self.confirmed), self.count - self.sent))

    def _tick(self) -> None:
        due = min(self.count, int((time.time() - self.first) * self.rate) + 1)
        self._publish(due - self.sent)
        if self.sent < self.count:
            tick = math.floor((time.time() - self.first) / TICK_S) + 1
            self.ioloop.call_later(max(0.0, self.first + tick * TICK_S - time.time()), self._tick)

    def _on_confirm(self, frame: Any) -> None:
        if isinstance(frame.method, pika.spec.Basic.Nack):
            self.error = f"raw pika: publish {frame.method.delivery_tag} nacked"
        # One queue: the broker confirms in order, so the highest tag is all we need.
        self.confirmed = max(self.confirmed, frame.method.delivery_tag)
        if self.rate is None and self.sent < self.count:
            self._fill()
        if self.confirmed >= self.last_seq or self.error:
            self.confirmed_at = time.time()
            self.finished.set()


# --- processes ----------------------------------------------------------------------------------


def _worker(role: str, kind: str, settings: Settings, conn: Any) -> None:
    """One process: start, say ready, then run phases until told to stop."""
    tally = _Tally()
    sides = {("consumer", "bus"): partial(_BusConsumer, settings, tally),
             ("consumer", "raw"): partial(_RawConsumer, settings, tally),
             ("producer", "bus"): partial(_BusProducer, settings),
             ("producer", "raw"): partial(_RawProducer, settings)}
    side = None
    try:
        side = sides[role, kind]()
        side.start()
        conn.send(("ready", None))
        while (command := conn.recv())[0] == "phase":
            _, count, rate = command
            cpu = _cpu_s()
            if role == "producer":
                first, confirmed = side.produce(count, rate)
                conn.send(("sent", {"first": first, "confirmed": confirmed,
                                    "cpu_s": _cpu_s() - cpu, "rss_mib": _rss_mib()}))
                continue
            tally.arm(count)
            conn.send(("armed", None))
            if not tally.done.wait(60 + count / 500):
                raise RuntimeError(f"got {len(tally.latencies)} of {count} messages")
            conn.send(("done", {**tally.summary(), "cpu_s": _cpu_s() - cpu}))
    except Exception as exc:
        conn.send(("error", f"{kind} {role}: {type(exc).__name__}: {exc}"))
    finally:
        if side is not None:
            side.stop()


class _Pair:
    """A consumer and a producer process of one kind, driven phase by phase over pipes."""

    def __init__(self, mp: Any, kind: str, settings: Settings):
        self.kind = kind
        self.conns: dict[str, Any] = {}
        self.procs: list[Any] = []
        for role in ("consumer", "producer"):
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
        self.conns["producer"].send(("phase", count, rate))
        sent = self._expect("producer", "sent", timeout)
        seen = self._expect("consumer", "done", timeout)
        return {**seen, "msgs_per_s": count / (seen["last"] - sent["first"]),
                "published_per_s": count / (sent["confirmed"] - sent["first"]),
                "producer_cpu_us": sent["cpu_s"] / count * 1e6,
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


def run(settings: Settings, *, msgs: int = 50_000, paced_rate: float = 5_000.0,
        paced_seconds: float = 5.0, rounds: int = 5, warmup: int = WARMUP_MSGS) -> dict:
    """Measure both kinds in a namespace of their own, removed at the end."""
    settings = dataclasses.replace(settings, namespace=f"bench{uuid.uuid4().hex[:10]}")
    load_1m = os.getloadavg()[0]
    mp = multiprocessing.get_context("spawn")
    pairs: dict[str, _Pair] = {}
    runs: dict[str, list[dict]] = {"bus": [], "raw": []}
    paced_msgs = max(1, int(paced_rate * paced_seconds))
    try:
        for kind in ("bus", "raw"):
            pairs[kind] = _Pair(mp, kind, settings)
        for pair in pairs.values():
            pair.wait_ready()
            if warmup:
                pair.measure(min(warmup, msgs), None)
        for i in range(rounds):
            for kind in ("raw", "bus") if i % 2 == 0 else ("bus", "raw"):
                runs[kind].append(pairs[kind].measure(msgs, None))
        paced = {kind: pairs[kind].measure(paced_msgs, paced_rate) for kind in ("bus", "raw")}
    finally:
        for pair in pairs.values():
            pair.close()
        delete_namespace(settings, [QUEUE, RAW_QUEUE])
    return {**_result(msgs, rounds, paced_rate, paced_msgs, runs, paced),
            "load_avg_1m_at_start": round(load_1m, 2), "cpus": os.cpu_count()}


def _result(msgs: int, rounds: int, paced_rate: float, paced_msgs: int,
            runs: dict[str, list[dict]], paced: dict[str, dict]) -> dict:
    bus = max(runs["bus"], key=lambda r: r["msgs_per_s"])
    raw = max(runs["raw"], key=lambda r: r["msgs_per_s"])
    ratio = bus["msgs_per_s"] / raw["msgs_per_s"]
    body = msgpack.packb(schemas.to_plain(_message(msgs, time.time())), use_bin_type=True)
    return {
        "msgs": msgs,
        "rounds": rounds,
        "schema": f"{GlideinRequest.NAME}.v{GlideinRequest.VERSION}",
        "body_bytes": len(body),
        "bus_msgs_per_s": round(bus["msgs_per_s"]),
        "raw_pika_msgs_per_s": round(raw["msgs_per_s"]),
        "bus_publish_msgs_per_s": round(bus["published_per_s"]),
        "raw_pika_publish_msgs_per_s": round(raw["published_per_s"]),
        "bus_producer_cpu_us_per_msg": round(bus["producer_cpu_us"], 1),
        "bus_consumer_cpu_us_per_msg": round(bus["consumer_cpu_us"], 1),
        "raw_pika_producer_cpu_us_per_msg": round(raw["producer_cpu_us"], 1),
        "raw_pika_consumer_cpu_us_per_msg": round(raw["consumer_cpu_us"], 1),
        "bus_runs_msgs_per_s": [round(r["msgs_per_s"]) for r in runs["bus"]],
        "raw_pika_runs_msgs_per_s": [round(r["msgs_per_s"]) for r in runs["raw"]],
        "ratio_vs_raw_pika": round(ratio, 3),
        "bus_received": min(r["received"] for r in runs["bus"]),
        "raw_pika_received": min(r["received"] for r in runs["raw"]),
        "paced_target_msgs_per_s": paced_rate,
        "paced_msgs": paced_msgs,
        "paced_received": paced["bus"]["received"],
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
        return f"  {label:<30}{bus:>20}{raw:>20}"

    def rounds(values: list[int]) -> str:
        return " ".join(f"{v / 1000:.1f}k" for v in values)

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    paced = f"{r['paced_target_msgs_per_s']:,.0f} msg/s"
    return "\n".join([
        (f"burst bench bus: {r['msgs']:,} x {r['schema']} ({r['body_bytes']} B msgpack body), "
         "durable queue, persistent,"),
        ("publisher confirms, consumer acks; producer and consumer in separate processes; "
         f"{r['cpus']} cpus, load {r['load_avg_1m_at_start']:.2f} at start"),
        row("", "runtime bus", "raw pika"),
        row(f"throughput (best of {r['rounds']})", f"{r['bus_msgs_per_s']:,} msg/s",
            f"{r['raw_pika_msgs_per_s']:,} msg/s"),
        row("  every round", rounds(r["bus_runs_msgs_per_s"]),
            rounds(r["raw_pika_runs_msgs_per_s"])),
        row("  publish rate (to last confirm)", f"{r['bus_publish_msgs_per_s']:,} msg/s",
            f"{r['raw_pika_publish_msgs_per_s']:,} msg/s"),
        row("  cpu per msg, producer", f"{r['bus_producer_cpu_us_per_msg']:.0f} us",
            f"{r['raw_pika_producer_cpu_us_per_msg']:.0f} us"),
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
