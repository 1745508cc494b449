"""Who a job runs as: a slot user of its own when the pilot is root (HTCondor's SLOT<N>_USER).

    pilot is root ──slot_users "60001-60064" / "alice,bob"──▶ acquire(): a uid no other running
                  │                                           job has, on this host
                  └─ pool empty or every uid taken ─────────▶ nobody (shared: jobs that both
                                                              run as nobody can see each other)
    pilot is not root ───────────────────────────────────────▶ None: the pilot's own user,
                                                              advertised BurstJobIsolation="none"

Numeric uids need no /etc/passwd entry (the job's group is the same number).
A uid is taken host-wide by an flock on <lock dir>/<uid>.lock, held by the
pilot while the job runs, so several pilots on one machine (the local driver)
never hand out the same uid; a uid that still has processes (a dead pilot's
job the sweeper has not reached, anything else of the host) is skipped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger("burst.glidein.isolation")

LOCK_DIR = Path("/run/burst/slot-users")
MAX_POOL = 65536


@dataclass(frozen=True)
class SlotUser:
    name: str
    uid: int
    gid: int
    dedicated: bool = True  # False for nobody: shared by every job that falls back to it


def nobody() -> SlotUser:
    try:
        entry = pwd.getpwnam("nobody")
        return SlotUser("nobody", entry.pw_uid, entry.pw_gid, dedicated=False)
    except KeyError:
        return SlotUser("nobody", 65534, 65534, dedicated=False)


def parse_slot_users(spec: str) -> list[SlotUser]:
    """"60001-60064", "60001,60002", "alice,bob" or a mix; "" for none. ValueError says why."""
    users: dict[int, SlotUser] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        first, sep, last = item.partition("-")
        if first.isdigit() and (not sep or last.isdigit()):
            low, high = int(first), int(last or first)
            if not 0 < low <= high or high - low >= MAX_POOL:
                raise ValueError(f"{item!r}: expected a range of uids above 0, low-high")
            users.update((uid, SlotUser(str(uid), uid, uid)) for uid in range(low, high + 1))
            continue
        try:
            entry = pwd.getpwnam(item)
        except KeyError:
            raise ValueError(f"{item!r}: no such user (use names from /etc/passwd or numeric "
                             "uids like 60001-60064)") from None
        if entry.pw_uid == 0:
            raise ValueError(f"{item!r}: a slot user must not be root")
        users[entry.pw_uid] = SlotUser(item, entry.pw_uid, entry.pw_gid)
    return list(users.values())


class SlotUsers:
    """The pool of one pilot; acquire() and release() from the pilot's I/O thread."""

    def __init__(self, spec: str, *, euid: int | None = None, lock_dir: Path = LOCK_DIR):
        self.pool = parse_slot_users(spec)
        self.euid = os.geteuid() if euid is None else euid
        self.lock_dir = lock_dir
        self._held: dict[int, int] = {}  # uid -> fd of its lock file

    @property
    def mode(self) -> str:
        """What the slot ad says as BurstJobIsolation."""
        return "uid" if self.euid == 0 else "none"

    def describe(self) -> str:
        """The one log line a pilot writes about it at start."""
        if self.mode == "none":
            return (f"event=job_isolation mode=none euid={self.euid} reason=\"the pilot is not "
                    "root: jobs run as the pilot's user and can read its files and environment\"")
        return (f"event=job_isolation mode=uid slot_users={len(self.pool)} "
                f"fallback={nobody().name} lock_dir={self.lock_dir}")

    def acquire(self) -> SlotUser | None:
        """A uid for a job starting now; None when jobs run as the pilot's user."""
        if self.mode == "none":
            return None
        busy = _uids_with_processes() if self.pool else set()
        for user in self.pool:
            if user.uid in self._held or user.uid in busy:
                continue
            fd = self._lock(user.uid)
            if fd is not None:
                self._held[user.uid] = fd
                return user
        fallback = nobody()
        log.warning("event=slot_users_exhausted pool=%d running_as=%s", len(self.pool),
                    fallback.name)
        return fallback

    def release(self, user: SlotUser | None) -> None:
        if user is None:
            return
        fd = self._held.pop(user.uid, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def _lock(self, uid: int) -> int | None:
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except OSError as exc:
            log.warning("event=slot_user_lock_failed uid=%d reason=%r", uid, str(exc))
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another pilot's job runs as this uid
            os.close(fd)
            return None
        return fd


def _uids_with_processes() -> set[int]:
    uids = set()
    for proc in psutil.process_iter(["uids"]):
        ids = proc.info["uids"]
        if ids is not None:
            uids.update((ids.real, ids.effective))
    return uids


def guard_key_file(path: str | None) -> None:
    """The pilot's own key (BURST_PILOT_KEY_FILE) is for the pilot alone: made 0600 if whoever
    wrote it left it readable to others, so no job can read it."""
    if not path:
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("event=key_file_tightened path=%s mode_was=%o", path, mode)
    except OSError as exc:
        log.warning("event=key_file_unreadable path=%s reason=%r", path, str(exc))


def unreachable_from(path: Path) -> Path | None:
    """The first directory on the way to `path` that other users cannot traverse, if any:
    a slot user could not reach its scratch directory by its path."""
    for directory in reversed([path, *path.parents]):
        try:
            if not directory.stat().st_mode & stat.S_IXOTH:
                return directory
        except OSError:
            return directory
    return None
