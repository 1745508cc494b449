"""What the metadata service must not forget across restarts: used token ids, launched VMs.

    <state>/metadata/boot.sqlite
      used      token_id PRIMARY KEY, pilot_id, entry, instance_id, used_at, expires
      launched  pilot_id PRIMARY KEY, instance_id, until     (from pilot.launched events)

Single use is one INSERT on the primary key, atomic in SQLite even between processes
sharing the file: of two exchanges of one token, exactly one inserts. Rows outlive
their token's expiry by a day (an expired token is refused before its row is read),
then are purged.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from services.runtime.bootstrap import BootClaims

KEEP_AFTER_EXPIRY_S = 86400.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS used (
    token_id TEXT PRIMARY KEY, pilot_id TEXT NOT NULL, entry TEXT NOT NULL,
    instance_id TEXT NOT NULL, used_at REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS launched (
    pilot_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, until REAL NOT NULL);
"""


class BootStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One connection shared by the HTTP threads and the bus thread, behind a lock.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a used token stays used after a crash
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def consume(self, claims: BootClaims, instance_id: str, now: float) -> bool:
        """Mark the token used; False when it already was."""
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO used VALUES (?, ?, ?, ?, ?, ?)",
                (claims.token_id, claims.pilot_id, claims.entry, instance_id, now,
                 claims.expires))
            return cursor.rowcount == 1

    def launched(self, pilot_id: str, instance_id: str, until: float) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO launched VALUES (?, ?, ?)",
                            (pilot_id, instance_id, until))

    def launched_instance(self, pilot_id: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT instance_id FROM launched WHERE pilot_id = ?",
                                  (pilot_id,)).fetchone()
        return row[0] if row else None

    def purge(self, now: float) -> int:
        with self.lock:
            gone = self.db.execute("DELETE FROM used WHERE expires < ?",
                                   (now - KEEP_AFTER_EXPIRY_S,)).rowcount
            gone += self.db.execute("DELETE FROM launched WHERE until < ?", (now,)).rowcount
        return gone

    def close(self) -> None:
        with self.lock:
            self.db.close()
