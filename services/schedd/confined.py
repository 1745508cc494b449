"""Writing a user's files without leaving the job's initial directory (Iwd).

The schedd writes what a pilot returns (stdout, stderr, output files) and the
user log into Iwd, with its own rights, possibly root's. A buggy or hostile
pilot, or a symbolic link planted in Iwd, must not make it write anywhere else:

    Iwd ──open(O_DIRECTORY)──▶ fd ──each directory on the way: openat(O_NOFOLLOW)──▶ fd
                                      (made if missing, for outputs)          │
        final name: never a symbolic link or a directory ◀────────────────────┘
        outputs: written to .NAME.partial (O_EXCL|O_NOFOLLOW), renamed over NAME in that fd
        user log: openat(NAME, O_APPEND|O_NOFOLLOW)

Every step is relative to the file descriptor of the directory before it, so
nothing can be swapped for a link between a check and the write. Names come
already checked (jobad.below_iwd: no `..`, nothing absolute outside Iwd).

When the schedd runs as root and the job's owner is an account on this host,
it writes only where that account could (the directory's mode bits) and the
files it makes belong to the owner.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

Content = bytes | BinaryIO  # what is written: the bytes, or a file read from its start
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A file that cannot be written where it should go; str() names it and says why."""


@dataclass(frozen=True)
class Account:
    """The OS account files are written for (only when the schedd runs as root)."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    def may_write(self, st: os.stat_result) -> bool:
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IWUSR)
        if st.st_gid in self.groups:
            return bool(st.st_mode & stat.S_IWGRP)
        return bool(st.st_mode & stat.S_IWOTH)


def account_of(owner: str) -> Account | None:
    """The owner's account if the schedd runs as root and the owner has one; else None,
    and files are written with the schedd's own rights."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        return None
    return Account(owner, entry.pw_uid, entry.pw_gid,
                   frozenset(os.getgrouplist(owner, entry.pw_gid)))


def refuse_private(iwd: Path, private: Path | None) -> None:
    """No job's file goes into the schedd's own directory (its queue, the pool key, the
    spool), whatever a submit file named as initialdir."""
    if private is None:
        return
    where, mine = Path(os.path.realpath(iwd)), Path(os.path.realpath(private))
    if where == mine or mine in where.parents:
        raise Refused(f"initialdir {iwd} is inside the schedd's state directory {private}")


def write(iwd: Path, relative: PurePosixPath, data: Content, account: Account | None) -> Path:
    """Replace Iwd/relative with `data` (a reader sees the old file or the new one, never
    half); directories on the way are made. Returns the path written."""
    target = iwd / relative
    directory = _open_directory(iwd, relative, account, create=True)
    try:
        name = relative.name
        _check_target(directory, name, target, account, appending=False)
        partial = f".{name}.partial"
        try:
            os.unlink(partial, dir_fd=directory)  # left by a crash: ours
        except FileNotFoundError:
            pass
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=directory)
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:  # a big file fetched from object storage: copied, never held in memory
                data.seek(0)
                shutil.copyfileobj(data, out, 1024 * 1024)
            if account is not None:
                os.fchown(out.fileno(), account.uid, account.gid)
        os.rename(partial, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError as exc:
        raise Refused(f"cannot write {target}: {exc.strerror}") from None
    finally:
        os.close(directory)
    return target


def append(iwd: Path, relative: PurePosixPath, text: str, account: Account | None) -> None:
    """Append to Iwd/relative (made if missing); its directory must exist."""
    target = iwd / relative
    directory = _open_directory(iwd, relative, account, create=False)
    try:
        _check_target(directory, relative.name, target, account, appending=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(relative.name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=directory)
            if account is not None:
                os.fchown(fd, account.uid, account.gid)
        except FileExistsError:
            fd = os.open(relative.name, flags, dir_fd=directory)
        with os.fdopen(fd, "a") as out:
            out.write(text)
    except OSError as exc:
        raise Refused(f"cannot write {target}: {exc.strerror}") from None
    finally:
        os.close(directory)


def _open_directory(iwd: Path, relative: PurePosixPath, account: Account | None, *,
                    create: bool) -> int:
    """A descriptor of the directory `relative` goes in, reached from Iwd without following
    a symbolic link."""
    try:
        fd = os.open(iwd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot write {iwd / relative}: initialdir {iwd}: {exc.strerror}") \
            from None
    reached = iwd
    for part in relative.parts[:-1]:
        reached = reached / part
        fd = _step(fd, part, reached, account, create=create)
    return fd


def _step(parent: int, part: str, path: Path, account: Account | None, *, create: bool) -> int:
    """Open `part` in `parent` (closed in any case) without following a link."""
    try:
        child = os.open(part, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise Refused(f"directory {path} does not exist") from None
        if account is not None and not account.may_write(os.fstat(parent)):
            raise Refused(f"{account.name} may not make {path}") from None
        os.mkdir(part, 0o755, dir_fd=parent)
        child = os.open(part, _DIR_FLAGS, dir_fd=parent)
        if account is not None:
            os.fchown(child, account.uid, account.gid)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused(f"{path} is a symbolic link or not a directory; "
                          "files are only written inside the initialdir") from None
        raise Refused(f"cannot open {path}: {exc.strerror}") from None
    finally:
        os.close(parent)
    return child


def _check_target(directory: int, name: str, target: Path, account: Account | None, *,
                  appending: bool) -> None:
    try:
        st = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise Refused(f"{target} is a symbolic link; files are only written inside the "
                      "initialdir, never through a link")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise Refused(f"{target} exists and is not a regular file")
    if account is None:
        return
    if appending and st is not None:
        if not account.may_write(st):
            raise Refused(f"{account.name} may not write {target}")
        return
    parent = os.fstat(directory)  # making or replacing a file is a change of its directory
    if not account.may_write(parent):
        raise Refused(f"{account.name} may not write in {target.parent}")
    if (st is not None and parent.st_mode & stat.S_ISVTX and st.st_uid != account.uid
            and account.uid != 0):
        raise Refused(f"{target} belongs to another user (sticky directory)")
