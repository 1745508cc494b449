"""The local span store: every process of a pool writes its finished spans into one SQLite
file under the state dir, so `burst trace` and the dashboard's job pages need no collector.

    span ends ──▶ BatchSpanProcessor (its thread, ~1 s batches) ──▶ StoreExporter.export
                                                                     INSERT, one transaction
    burst trace 12.3 ──▶ SpanStore.trace_of(schedd, "12.3") ──▶ SpanStore.spans(trace id)

One file, many writers (services and the pilots on this machine): SQLite in WAL mode with
a busy timeout, each process writing a batch per transaction. The store is bounded: spans
older than MAX_AGE_S and all but the newest MAX_SPANS are deleted as new ones come in
(freed pages are reused, so the file stops growing). A process that cannot write (a VM
whose state dir does not exist, a full disk) logs it once and drops its spans.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("burst.spanstore")
S = TypeVar("S")

MAX_SPANS = 200_000
MAX_AGE_S = 7 * 86400.0  # as long as the event log keeps events
PRUNE_EVERY = 1000  # spans written between two prunes
PENDING_MAX = 10_000  # spans kept while the store's place is not known yet (a booting VM)
# Attributes the store indexes: how `burst trace ID` finds a job's trace.
JOB, CLUSTER, SCHEDD = "burst.job", "burst.cluster", "burst.schedd"

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    schedd TEXT,
    cluster INTEGER,
    job TEXT,
    attributes TEXT NOT NULL,
    links TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_by_cluster ON spans (cluster, schedd);
CREATE INDEX IF NOT EXISTS spans_by_end ON spans (end_ns);
"""


def default_path(state_dir: Path) -> Path:
    return state_dir / "spans" / "spans.sqlite"


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    service: str
    start: float  # epoch seconds
    duration_ms: float
    status: str  # OK, ERROR or UNSET
    job: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)  # {"trace_id", "span_id"}

    def as_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id,
                "parent_id": self.parent_id or None, "name": self.name,
                "service": self.service, "start": self.start,
                "duration_ms": round(self.duration_ms, 3), "status": self.status,
                "attributes": self.attributes, "links": self.links}


class SpanStore:
    def __init__(self, path: Path, *, max_spans: int = MAX_SPANS, max_age_s: float = MAX_AGE_S):
        self.path, self.max_spans, self.max_age_s = path, max_spans, max_age_s
        self._db: sqlite3.Connection | None = None
        self._written = 0

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a span lost to a power cut is no loss
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- writing (the exporter's thread) ----------------------------------------------------

    def write(self, spans: Sequence[ReadableSpan]) -> None:
        db = self._connect()
        rows = [_row(span) for span in spans]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           rows)
            self._written += len(rows)
            if self._written >= PRUNE_EVERY:
                self._prune(db)
                self._written = 0
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _prune(self, db: sqlite3.Connection) -> None:
        oldest = int((time.time() - self.max_age_s) * 1e9)
        db.execute("DELETE FROM spans WHERE end_ns < ?", (oldest,))
        db.execute("DELETE FROM spans WHERE rowid <= (SELECT MAX(rowid) FROM spans) - ?",
                   (self.max_spans,))

    def prune(self) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        self._prune(db)
        db.execute("COMMIT")

    # --- reading ----------------------------------------------------------------------------

    def trace_of(self, cluster: int, schedd: str | None = None) -> str | None:
        """The trace of a cluster's submission (its jobs' trace): the oldest span naming it."""
        if not self.path.exists():
            return None
        where, args = "cluster = ?", [cluster]
        if schedd:
            where, args = where + " AND (schedd = ? OR schedd IS NULL)", args + [schedd]
        row = self._connect().execute(
            f"SELECT trace_id FROM spans WHERE {where} ORDER BY start_ns LIMIT 1",
            args).fetchone()
        return row[0] if row else None

    def spans(self, trace_id: str) -> list[StoredSpan]:
        if not self.path.exists():
            return []
        rows = self._connect().execute(
            "SELECT trace_id, span_id, parent_id, name, service, start_ns, end_ns, status, job, "
            "attributes, links FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,))
        return [StoredSpan(trace, span, parent, name, service, start / 1e9,
                           (end - start) / 1e6, status, job or "", json.loads(attributes),
                           json.loads(links))
                for trace, span, parent, name, service, start, end, status, job, attributes,
                links in rows]

    def count(self) -> int:
        if not self.path.exists():
            return 0
        return self._connect().execute("SELECT COUNT(*) FROM spans").fetchone()[0]


def _row(span: ReadableSpan) -> tuple:
    context = span.get_span_context()
    parent = span.parent.span_id if span.parent is not None else 0
    attributes = dict(span.attributes or {})
    service = str(span.resource.attributes.get("service.name", "")).removeprefix("burst-")
    cluster = attributes.get(CLUSTER)
    return (f"{context.trace_id:032x}", f"{context.span_id:016x}",
            f"{parent:016x}" if parent else "", span.name, service, span.start_time or 0,
            span.end_time or span.start_time or 0, span.status.status_code.name,
            attributes.get(SCHEDD), cluster if isinstance(cluster, int) else None,
            attributes.get(JOB), json.dumps(_plain(attributes)),
            json.dumps([{"trace_id": f"{link.context.trace_id:032x}",
                         "span_id": f"{link.context.span_id:016x}"} for link in span.links]))


def _plain(attributes: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in attributes.items()}


class StoreExporter(SpanExporter):
    """Writes each batch of the process's spans into the store; until the store's place is
    known (`open`), it keeps them (a VM learns its state dir from its boot exchange)."""

    def __init__(self, path: Path | None = None):
        self._lock = threading.Lock()
        self._store = SpanStore(path) if path is not None else None
        self._pending: list[ReadableSpan] = []
        self._failed = False

    def open(self, path: Path) -> None:
        with self._lock:
            if self._store is None:
                self._store = SpanStore(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._store is None:
                self._pending = (self._pending + list(spans))[-PENDING_MAX:]
                return SpanExportResult.SUCCESS
            batch, self._pending = self._pending + list(spans), []
            try:
                self._store.write(batch)
            except (sqlite3.Error, OSError) as exc:
                if not self._failed:  # once: a process that cannot write goes on without
                    log.warning("event=span_store_unwritable path=%s reason=%r",
                                self._store.path, str(exc))
                    self._failed = True
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()


# --- a job's trace ------------------------------------------------------------------------------


def job_trace(state_dir: Path, job_id: str, schedd: str | None = None
              ) -> tuple[str | None, list[StoredSpan]]:
    """The trace of a job ("12.3") or a whole cluster ("12"), oldest span first.

    A job's trace is its submission's (its cluster's: tracing.py); for one job of a cluster,
    the spans of the cluster's other jobs (a span naming another `burst.job`) are left out
    with everything under them.
    """
    cluster, _, proc = job_id.partition(".")
    store = SpanStore(default_path(state_dir))
    try:
        trace_id = store.trace_of(int(cluster), schedd)
        spans = store.spans(trace_id) if trace_id else []
    finally:
        store.close()
    if proc:
        spans = _only_job(spans, job_id)
    return trace_id, spans


def _only_job(spans: list[StoredSpan], job_id: str) -> list[StoredSpan]:
    kept: set[str] = set()
    dropped: set[str] = set()
    for span in spans:  # oldest first: a parent comes before its children
        if span.parent_id in dropped or (span.job and span.job != job_id):
            dropped.add(span.span_id)
        else:
            kept.add(span.span_id)
    return [span for span in spans if span.span_id in kept]


def tree(spans: Sequence[S]) -> list[tuple[int, S]]:
    """(depth, span) in the order a tree is read: each span after its parent, siblings by
    start time; spans whose parent is not here are roots. Any span with span_id, parent_id
    and start will do."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[S]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    ordered: list[tuple[int, S]] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start):
            ordered.append((depth, span))
            walk(span.span_id, depth + 1)

    walk("", 0)
    return ordered
