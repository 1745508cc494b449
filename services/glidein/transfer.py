"""Files beside a job on the pilot: fetched before it starts, big outputs uploaded after.

    claim.activate fetch ──fetch_inputs()──▶ <scratch>/<name>: stored inputs (presigned GET),
                                             http(s):// URLs, s3:// (presigned by the schedd);
                                             size capped, sha256 checked where known
    the job ended ──gather()──▶ small files read, to travel inside job.report; files over
                                inline_max_bytes PUT through the claim's upload URLs, each
                                reported with its sha256 and size (StoredOutput)

Both run in a Worker thread, so the pilot's I/O thread (its bus, its other jobs)
never waits on the network. A transfer the network or the server failed (5xx,
no connection, a stall) is tried ATTEMPTS times, with a pause between. The
pilot holds no storage credentials: only the URLs of this claim, which name one
object each and expire. Failures name a file as its user knows it (the URL
without its query, the input's name), never a presigned URL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from schemas.files import StoredOutput
from schemas.slot import ClaimActivate
from services.runtime import httpfiles

MiB = 1024 * 1024
STREAMS = ("stdout", "stderr")
ATTEMPTS = 3


def _retrying(cancelled: threading.Event | None) -> Retrying:
    def worth_again(exc: BaseException) -> bool:
        return isinstance(exc, httpfiles.TransferError) and exc.retryable and not (
            cancelled is not None and cancelled.is_set())

    return Retrying(retry=retry_if_exception(worth_again), stop=stop_after_attempt(ATTEMPTS),
                    wait=wait_exponential(multiplier=0.5, max=4.0), reraise=True)


class TransferFailed(Exception):
    """A file that could not be fetched or returned; the job is held with str()."""


class Worker:
    """fn(cancelled=event) in a thread of its own; its result or exception, once done."""

    def __init__(self, fn: Callable[[threading.Event], Any], name: str):
        self.cancelled = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[threading.Event], Any]) -> None:
        try:
            self.result = fn(cancelled=self.cancelled)
        except BaseException as exc:  # handed to the I/O thread, which decides
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def cancel(self) -> None:
        self.cancelled.set()


# --- inputs ----------------------------------------------------------------------------------


def fetch_inputs(msg: ClaimActivate, scratch: Path, cancelled: threading.Event) -> None:
    """Every file of msg.fetch into the scratch directory, as a new file (0600)."""
    for item in msg.fetch:
        if "/" in item.name or "\0" in item.name or item.name in ("", ".", ".."):
            raise TransferFailed(f"input {item.source}: {item.name!r} is not a plain file name")
        cap = item.size if item.size >= 0 else (msg.fetch_max_bytes or 2**63)
        try:
            _retrying(cancelled)(httpfiles.download, item.url, scratch / item.name,
                                 max_bytes=cap, timeout_s=msg.fetch_timeout_s,
                                 sha256=item.sha256, size=item.size, cancelled=cancelled)
        except FileExistsError:
            raise TransferFailed(f"input {item.source}: another input is named {item.name}"
                                 ) from None
        except (httpfiles.TransferError, OSError) as exc:
            raise TransferFailed(f"cannot fetch input {item.source}: {exc}") from None


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Returned:
    stdout: bytes = b""
    stderr: bytes = b""
    files: dict[str, bytes] = field(default_factory=dict)
    stored_streams: dict[str, StoredOutput] = field(default_factory=dict)
    stored_files: dict[str, StoredOutput] = field(default_factory=dict)


Opened = Mapping[str, BinaryIO | None]  # name -> the job's file, opened safely (or None)


def plan_uploads(msg: ClaimActivate, streams: Opened, files: Opened) -> dict[tuple[str, str], str]:
    """Which files go through which upload URL: (kind, name) -> slot, for every file bigger
    than inline_max_bytes while the claim has URLs left (streams use their own)."""
    if not msg.uploads:
        return {}
    free = sorted((slot for slot in msg.uploads if slot not in STREAMS), key=_slot_order)
    plan: dict[tuple[str, str], str] = {}
    for kind, opened in (("stream", streams), ("file", files)):
        for name, file in opened.items():
            if file is None or _size(file) <= msg.inline_max_bytes:
                continue
            slot = name if kind == "stream" else (free.pop(0) if free else None)
            if slot is not None and slot in msg.uploads:
                plan[(kind, name)] = slot
    return plan


def gather(msg: ClaimActivate, streams: Opened, files: Opened, *, max_inline_bytes: int,
           cancelled: threading.Event | None = None) -> Returned:
    """Read the small files, upload the big ones (plan_uploads); closes every file.
    TransferFailed when what stays inline exceeds max_inline_bytes or an upload fails."""
    try:
        plan = plan_uploads(msg, streams, files)
        inline = sum(_size(f) for kind, opened in (("stream", streams), ("file", files))
                     for name, f in opened.items() if f is not None and (kind, name) not in plan)
        if inline > max_inline_bytes:
            where = "" if msg.uploads else " (the pool has no object storage for more)"
            raise TransferFailed(f"job output of {inline // MiB} MiB exceeds the "
                                 f"{max_inline_bytes // MiB} MiB the pilot can return{where}")
        stored: dict[tuple[str, str], StoredOutput] = {}
        for (kind, name), slot in plan.items():
            file = (streams if kind == "stream" else files)[name]
            assert file is not None
            stored[(kind, name)] = _upload(msg, slot, name, file, cancelled)
        read = {(kind, name): (f.read() if f is not None else b"")
                for kind, opened in (("stream", streams), ("file", files))
                for name, f in opened.items() if (kind, name) not in plan}
    finally:
        for f in (*streams.values(), *files.values()):
            if f is not None:
                f.close()
    return Returned(
        stdout=read.get(("stream", "stdout"), b""), stderr=read.get(("stream", "stderr"), b""),
        files={name: data for (kind, name), data in read.items() if kind == "file"},
        stored_streams={name: out for (kind, name), out in stored.items() if kind == "stream"},
        stored_files={name: out for (kind, name), out in stored.items() if kind == "file"})


def _upload(msg: ClaimActivate, slot: str, name: str, file: BinaryIO,
            cancelled: threading.Event | None) -> StoredOutput:
    size = _size(file)

    def send() -> str:
        file.seek(0)  # again from the start, on a retry
        return httpfiles.upload(msg.uploads[slot], file, size, timeout_s=msg.fetch_timeout_s,
                                cancelled=cancelled)

    try:
        sha256 = _retrying(cancelled)(send)
    except httpfiles.TransferError as exc:
        raise TransferFailed(f"cannot return {name} through object storage: {exc}") from None
    return StoredOutput(slot=slot, sha256=sha256, size=size)


def _size(file: BinaryIO) -> int:
    return os.fstat(file.fileno()).st_size


def _slot_order(slot: str) -> tuple[int, str]:
    return (int(slot), "") if slot.isdigit() else (1 << 30, slot)
