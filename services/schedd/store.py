"""The job queue on disk: SQLite in WAL mode, one file per schedd.

Every handler's changes and the messages it will publish are committed in one
transaction, keyed by the id of the message being handled:

    handle(msg) ──▶ BEGIN ─ already processed? ──yes──▶ return the recorded outputs
                              │no
                              ▼
                     change jobs, record outputs ─ COMMIT ──▶ publish outputs ──▶ ack

A crash after COMMIT but before the ack makes the broker redeliver; the
handler then republishes the same outputs (with the same derived message
ids) instead of doing the work twice. kill -9 at any point loses nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

import schemas
from services.runtime import tracing

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clusters (
    cluster INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    submit_file TEXT NOT NULL DEFAULT '',
    allocated_at REAL NOT NULL,
    submitted_at REAL
);
CREATE TABLE IF NOT EXISTS autoclusters (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    ad TEXT NOT NULL,
    desired_sites TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS jobs (
    cluster INTEGER NOT NULL,
    proc INTEGER NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    ad TEXT NOT NULL,
    autocluster TEXT NOT NULL,
    request_cpus INTEGER NOT NULL DEFAULT 1,
    request_memory_mb INTEGER NOT NULL DEFAULT 0,
    request_disk_mb INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    exit_signal INTEGER,
    hold_reason TEXT NOT NULL DEFAULT '',
    claim_id TEXT,
    pilot_id TEXT,
    entry TEXT,
    site TEXT,
    provider TEXT,
    matched_at REAL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    spool TEXT,
    not_before REAL,
    periodic INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (cluster, proc)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, autocluster);
CREATE INDEX IF NOT EXISTS jobs_by_claim ON jobs (claim_id);
CREATE INDEX IF NOT EXISTS jobs_by_pilot ON jobs (pilot_id);
CREATE TABLE IF NOT EXISTS processed (
    message_id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    outputs BLOB NOT NULL
);
"""

JOB_COLUMNS = (
    "cluster", "proc", "owner", "state", "ad", "autocluster", "request_cpus",
    "request_memory_mb", "request_disk_mb", "exit_code", "exit_signal", "hold_reason",
    "claim_id", "pilot_id", "entry", "site", "provider", "matched_at", "submitted_at",
    "started_at", "finished_at", "runs", "spool", "not_before", "periodic",
)
# Columns added since the first release, with their declarations: added to older files.
# not_before: deferral_time (not demand, not matched before then); periodic: 1 if the job
# has periodic policy expressions for the timer to evaluate; traceparent: the cluster's
# submission, the root of its jobs' traces.
ADDED_COLUMNS = {"jobs": {"spool": "TEXT", "not_before": "REAL",
                          "periodic": "INTEGER NOT NULL DEFAULT 0"},
                 "clusters": {"traceparent": "TEXT"}}


@dataclass(frozen=True)
class Output:
    """A message to publish once the transaction is committed, in the trace it was made in
    (a job's activation is in that job's trace, not in the handler's)."""

    kind: str  # "emit" | "send"
    message: Any
    to: str | None = None
    traceparent: str | None = None


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._add_columns()
        self._lock = threading.Lock()

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self, message_id: str | None = None) -> Iterator[Tx]:
        """One atomic change; `tx.replayed` is set when message_id was handled before."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                tx = Tx(self._db, message_id)
                yield tx
                if message_id is not None and not tx.replayed:
                    self._db.execute(
                        "INSERT INTO processed (message_id, at, outputs) VALUES (?, ?, ?)",
                        (message_id, time.time(), _pack(tx.outputs)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def prune_processed(self, older_than_s: float) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM processed WHERE at < ?",
                                   (time.time() - older_than_s,))
            return cur.rowcount


class Tx:
    def __init__(self, db: sqlite3.Connection, message_id: str | None):
        self.db = db
        self.outputs: list[Output] = []
        self.replayed = False
        if message_id is not None:
            row = db.execute("SELECT outputs FROM processed WHERE message_id = ?",
                             (message_id,)).fetchone()
            if row is not None:
                self.replayed = True
                self.outputs = _unpack(row["outputs"])

    def emit(self, message: Any) -> None:
        self.outputs.append(Output("emit", message, None, tracing.current_traceparent()))

    def send(self, message: Any, to: str | None = None) -> None:
        self.outputs.append(Output("send", message, to, tracing.current_traceparent()))

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    def one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self.db.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def update_job(self, cluster: int, proc: int, changes: Mapping[str, Any]) -> None:
        if unknown := set(changes) - set(JOB_COLUMNS):
            raise ValueError(f"no such job columns: {sorted(unknown)}")
        columns = ", ".join(f"{name} = ?" for name in changes)
        self.execute(f"UPDATE jobs SET {columns} WHERE cluster = ? AND proc = ?",
                     (*changes.values(), cluster, proc))

    def next_cluster(self) -> int:
        row = self.one("SELECT value FROM meta WHERE key = 'next_cluster'")
        cluster = int(row["value"]) if row else 1
        self.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_cluster', ?)",
                     (str(cluster + 1),))
        return cluster


def _pack(outputs: list[Output]) -> bytes:
    return msgpack.packb([(o.kind, o.to, o.message.NAME, o.message.VERSION,
                           schemas.to_plain(o.message)) for o in outputs], use_bin_type=True)


def _unpack(blob: bytes) -> list[Output]:
    return [Output(kind, schemas.from_plain(name, version, fields), to)
            for kind, to, name, version, fields in msgpack.unpackb(blob, raw=False)]
