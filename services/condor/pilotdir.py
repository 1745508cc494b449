"""What a pilot keeps in its work directory, and the sweep that runs when it died.

    <work>/             0711  traversable (a job reaches its scratch by path), not listable
    <work>/records/     0700  pilot.db: SQLite, WAL, synchronous=FULL (fsynced per commit)
        outbox          job reports the broker has not confirmed yet (message id, schedd, report)
        jobs            running job processes: claim, job id, pid, create time, uid
        claims          claim ids already handled, so a redelivered activation is ignored
        owner           the pilot process using the directory: pid, create time, pgid
    <work>/execute/     0711  one scratch directory per job (0700, owned by the job's uid)

    glidein ──PilotRecords──▶ a report is written before the job is forgotten, deleted once the
                              broker confirmed it; a job's pid is written when it starts
    restarted glidein, local driver, burst down ──kill_leftovers(work)──▶ no job outlives its pilot
    local driver ──unfinished(work)──▶ restart a dead pilot in place to resend and reconcile

Shared here because the factory's local driver and `burst down` read what the
glidein writes, and services meet only on the bus otherwise. Pids are
recorded with their create time: a pid reused by an unrelated process is
never killed.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import psutil

import schemas

log = logging.getLogger("burst.pilotdir")

RECORDS, EXECUTE, DB = "records", "execute", "pilot.db"
REMEMBERED_CLAIMS = 1000  # handled claim ids kept: enough for any redelivery
SAME_START_S = 0.05  # create times of one process, read twice, agree within this

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY,
    claim_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    schedd TEXT NOT NULL,
    final INTEGER NOT NULL,
    report BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    claim_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    create_time REAL NOT NULL,
    uid INTEGER
);
CREATE TABLE IF NOT EXISTS claims (claim_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owner (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    create_time REAL NOT NULL,
    pgid INTEGER
);
"""


@dataclass(frozen=True)
class OutboxEntry:
    message_id: str
    schedd: str
    report: Any  # a schemas.job.JobReport
    final: bool  # exited / held / rejected; False for "running", which a final one supersedes


@dataclass(frozen=True)
class JobRecord:
    claim_id: str
    job_id: str
    pid: int
    create_time: float
    uid: int | None


@dataclass(frozen=True)
class Owner:
    pid: int
    create_time: float
    pgid: int | None  # set when the pilot leads its own process group (jobs share it)


def private_dirs(work_dir: Path) -> None:
    """Create the layout above with its modes (chmod too: mkdir's mode obeys the umask)."""
    for path, mode in ((work_dir, 0o711), (work_dir / RECORDS, 0o700),
                       (work_dir / EXECUTE, 0o711)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)


class PilotRecords:
    """The SQLite file; one connection, used from the pilot's I/O thread only."""

    def __init__(self, work_dir: Path, *, create: bool = True):
        if create:
            private_dirs(work_dir)
        self.path = work_dir / RECORDS / DB
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @classmethod
    def existing(cls, work_dir: Path) -> PilotRecords | None:
        """The records of a pilot that ran in work_dir, or None if it left none."""
        if not (work_dir / RECORDS / DB).exists():
            return None
        return cls(work_dir, create=False)

    def close(self) -> None:
        self._db.close()

    def _write(self, *statements: tuple[str, tuple]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self._db.execute(sql, args)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _next_seq(self, table: str) -> int:
        row = self._db.execute(f"SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}").fetchone()
        return int(row[0])

    # --- the outbox ----------------------------------------------------------------------------

    def add_report(self, entry: OutboxEntry, *, running: JobRecord | None = None) -> None:
        """Keep a report until confirmed, in one commit with what it changes: its claim is
        handled from now on; a final report replaces the claim's running report and its job
        record; a running one records the job's process (`running`)."""
        report = entry.report
        claim_seq = self._next_seq("claims")
        statements = [("INSERT INTO outbox (message_id, claim_id, job_id, schedd, final, report, "
                       "seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (entry.message_id, report.claim_id, report.job_id, entry.schedd,
                        int(entry.final), _pack(report), self._next_seq("outbox"))),
                      ("INSERT OR IGNORE INTO claims (claim_id, seq) VALUES (?, ?)",
                       (report.claim_id, claim_seq)),
                      ("DELETE FROM claims WHERE seq <= ?", (claim_seq - REMEMBERED_CLAIMS,))]
        if entry.final:
            statements += [("DELETE FROM outbox WHERE claim_id = ? AND final = 0",
                            (report.claim_id,)),
                           ("DELETE FROM jobs WHERE claim_id = ?", (report.claim_id,))]
        if running is not None:
            statements.append(("INSERT OR REPLACE INTO jobs (claim_id, job_id, pid, create_time, "
                               "uid) VALUES (?, ?, ?, ?, ?)",
                               (running.claim_id, running.job_id, running.pid,
                                running.create_time, running.uid)))
        self._write(*statements)

    def remove_report(self, message_id: str) -> None:
        self._write(("DELETE FROM outbox WHERE message_id = ?", (message_id,)))

    def reports(self) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT message_id, schedd, final, report FROM outbox ORDER BY seq").fetchall()
        return [OutboxEntry(mid, schedd, _unpack(blob), bool(final))
                for mid, schedd, final, blob in rows]

    def unconfirmed_results(self) -> list[str]:
        """Job ids whose final report the broker has not confirmed yet."""
        rows = self._db.execute("SELECT job_id FROM outbox WHERE final = 1").fetchall()
        return [row[0] for row in rows]

    # --- jobs and claims -----------------------------------------------------------------------

    def forget_job(self, claim_id: str) -> None:
        """A job killed on order or at SIGTERM: no result is wanted, its running report neither."""
        self._write(("DELETE FROM jobs WHERE claim_id = ?", (claim_id,)),
                    ("DELETE FROM outbox WHERE claim_id = ? AND final = 0", (claim_id,)))

    def forget_all_jobs(self) -> None:
        self._write(("DELETE FROM jobs", ()))

    def jobs(self) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT claim_id, job_id, pid, create_time, uid FROM jobs").fetchall()
        return [JobRecord(*row) for row in rows]

    def handled(self, claim_id: str) -> bool:
        """A report was recorded for this claim (in this life of the pilot or an earlier one)."""
        row = self._db.execute("SELECT 1 FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()
        return row is not None

    # --- the owner -----------------------------------------------------------------------------

    def set_owner(self, owner: Owner) -> None:
        self._write(("INSERT OR REPLACE INTO owner (id, pid, create_time, pgid) "
                     "VALUES (1, ?, ?, ?)", (owner.pid, owner.create_time, owner.pgid)))

    def owner(self) -> Owner | None:
        row = self._db.execute("SELECT pid, create_time, pgid FROM owner").fetchone()
        return Owner(*row) if row else None

    def unfinished(self) -> bool:
        """Reports to resend or job processes recorded: what a restart would take care of."""
        return any(self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                   for table in ("outbox", "jobs"))


def _pack(report: Any) -> bytes:
    return msgpack.packb((report.NAME, report.VERSION, schemas.to_plain(report)),
                         use_bin_type=True)


def _unpack(blob: bytes) -> Any:
    name, version, fields = msgpack.unpackb(blob, raw=False)
    return schemas.from_plain(name, version, fields)


# --- after a pilot died --------------------------------------------------------------------------


def this_process() -> Owner:
    """The owner record of the calling process."""
    pid = os.getpid()
    pgid = os.getpgid(0)
    return Owner(pid, psutil.Process(pid).create_time(), pgid if pgid == pid else None)


def same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The live process with that pid, if it is the one recorded (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > SAME_START_S or \
                proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def unfinished(work_dir: Path) -> bool:
    records = PilotRecords.existing(work_dir)
    if records is None:
        return False
    try:
        return records.unfinished()
    finally:
        records.close()


def kill_leftovers(work_dir: Path, *, timeout: float = 3.0) -> list[int]:
    """SIGKILL the job processes a dead pilot left behind; return their pids.

    Found two ways: the recorded job pids (checked against their create time)
    with their descendants, and every process still in the pilot's process
    group when the pilot led one (jobs share it, as does whatever they
    started; a group id cannot be reused while it has members). A pilot that
    is still alive is left alone: it minds its own jobs.
    """
    records = PilotRecords.existing(work_dir)
    if records is None:
        return []
    try:
        owner, jobs = records.owner(), records.jobs()
    finally:
        records.close()
    if owner is not None and same_process(owner.pid, owner.create_time) is not None:
        return []
    victims: dict[int, psutil.Process] = {}
    for job in jobs:
        proc = same_process(job.pid, job.create_time)
        if proc is not None:
            victims.update({p.pid: p for p in _with_descendants(proc)})
    if owner is not None and owner.pgid is not None and _group_is_ours(owner):
        victims.update({p.pid: p for p in _group_members(owner.pgid)})
    for pid in _ours():
        victims.pop(pid, None)
    for proc in victims.values():
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=timeout)
    if victims:
        log.warning("event=leftovers_killed work_dir=%s pids=%s", work_dir, sorted(victims))
    return sorted(victims)


def _with_descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _group_is_ours(owner: Owner) -> bool:
    """The group the dead pilot led: its pid is free, or still its (zombie) process; a pid taken
    by another process may lead another group of that number."""
    try:
        return abs(psutil.Process(owner.pid).create_time() - owner.create_time) <= SAME_START_S
    except psutil.NoSuchProcess:
        return True


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live members of the group: a zombie (the dead pilot itself, until its parent reaps it)
    has nothing left to kill."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def _ours() -> set[int]:
    """The caller and its ancestors: never a victim, whatever group they are in."""
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}
