"""The files jobs take along, read by `burst submit` with the user's own rights.

    job ads ──jobad.input_files()──▶ {name: path} per proc ──read (as the user)──▶ input sets
                                                                                   │
    JobSubmit(procs=[ProcAd(inputs=i)], input_sets=[{name: bytes}, ...], ◀─────────┤
              stored_inputs=[{name: StoredFile(sha256, size)}, ...])   ◀── big ones: upload()
                                                                           PUT to the URLs of
                                                                           input.stage

The schedd never opens a path a user named: what a user cannot read cannot be
submitted, and a file a user can read is sent inside the submission (procs
with the same files share one set, so it travels once), or, when it is bigger
than the schedd's inline_max_bytes (it has object storage: cluster.new says
so), put in object storage through a presigned URL the schedd makes for it,
so that no big file rides in a message. Inside messages a job's inputs are
capped (MAX_JOB_BYTES, as the schedd's), and so is a whole submission
(MAX_SUBMIT_BYTES: the broker's message size limit is 128 MiB). URLs are left
to the pilot (jobad.input_urls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.files import StoredFile
from services.condor import jobad
from services.condor.submit import JobSpec
from services.runtime import httpfiles

MiB = 1024 * 1024
MAX_JOB_BYTES = 64 * MiB
MAX_SUBMIT_BYTES = 96 * MiB
UPLOAD_TIMEOUT_S = 60.0  # without a byte moving


class InputError(Exception):
    """A file a job names cannot be sent; str() is the one line for the user."""


@dataclass(frozen=True)
class BigFile:
    """A file that goes through object storage: where it is, and what it held when read."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Inputs:
    sets: list[dict[str, bytes]]  # JobSubmit.input_sets: small files
    index: dict[int, int]  # proc -> its set, -1 for none (ProcAd.inputs)
    big: list[dict[str, BigFile]]  # per set, the files that go through object storage

    @property
    def size(self) -> int:
        return sum(len(data) for files in self.sets for data in files.values())

    def stored(self) -> list[dict[str, StoredFile]]:
        """JobSubmit.stored_inputs ([] when nothing goes through object storage)."""
        if not any(self.big):
            return []
        return [{name: StoredFile(f.sha256, f.size) for name, f in files.items()}
                for files in self.big]

    def uploads(self) -> dict[str, BigFile]:
        """The big files to put in object storage, one per content (by sha256)."""
        return {f.sha256: f for files in self.big for f in files.values()}


def check(specs: Sequence[JobSpec], source: str, cluster: int) -> None:
    """Every input file of every proc can be read (nothing is read yet); InputError names the
    first that cannot."""
    for spec in specs:
        for path in _files_of(spec, source, cluster).values():
            with _opened(path, source):
                pass


def read(specs: Sequence[JobSpec], source: str, cluster: int, *,
         inline_max_bytes: int = 0) -> Inputs:
    """The input files of every proc, each read once: files over inline_max_bytes (when not
    0) hashed for object storage, the others read whole. InputError names the first file
    that cannot be read, or the job whose inputs are too big to travel inline."""
    contents: dict[Path, bytes | BigFile] = {}
    sets: list[dict[str, bytes | BigFile]] = []
    set_of: dict[tuple[tuple[str, Path], ...], int] = {}
    index: dict[int, int] = {}
    for spec in specs:
        files = _files_of(spec, source, cluster)
        if not files:
            index[spec.proc] = -1
            continue
        key = tuple(sorted(files.items()))
        if key not in set_of:
            set_of[key] = len(sets)
            sets.append({name: _content(path, contents, source, inline_max_bytes)
                         for name, path in key})
            _check_size(sets[-1], source, f"job {cluster}.{spec.proc}", inline_max_bytes)
        index[spec.proc] = set_of[key]
    found = Inputs([{n: d for n, d in files.items() if isinstance(d, bytes)} for files in sets],
                   index,
                   [{n: d for n, d in files.items() if isinstance(d, BigFile)} for files in sets])
    if found.size > MAX_SUBMIT_BYTES:
        raise InputError(f"{source}: the jobs' input files total {found.size / MiB:.1f} MiB, "
                         f"over the {MAX_SUBMIT_BYTES // MiB} MiB one submission can carry; "
                         "submit fewer jobs at a time")
    return found


def upload(files: dict[str, BigFile], urls: dict[str, str], source: str) -> None:
    """PUT each big file to its presigned URL, checking it still holds what was hashed."""
    for sha256, big in sorted(files.items()):
        if sha256 not in urls:
            raise InputError(f"{source}: the schedd gave no upload URL for {big.path}")
        with _opened(big.path, source) as file:
            try:
                sent = httpfiles.upload(urls[sha256], file, big.size,
                                        timeout_s=UPLOAD_TIMEOUT_S)
            except httpfiles.TransferError as exc:
                raise InputError(f"{source}: cannot put input file {str(big.path)!r} in "
                                 f"object storage: {exc}") from None
        if sent != sha256:
            raise InputError(f"{source}: input file {str(big.path)!r} changed while it was "
                             "sent; submit again")


def _files_of(spec: JobSpec, source: str, cluster: int) -> dict[str, Path]:
    try:
        return jobad.input_files(spec.ad)
    except ValueError as exc:
        raise InputError(f"{source}: job {cluster}.{spec.proc}: {exc}") from None


def _opened(path: Path, source: str):
    if path.is_dir():
        raise InputError(f"{source}: input {str(path)!r} is a directory; list its files "
                         "instead")
    if path.exists() and not path.is_file():  # a pipe or a device could block forever
        raise InputError(f"{source}: input {str(path)!r} is not a regular file")
    try:
        return open(path, "rb")  # as the user who runs burst submit
    except FileNotFoundError:
        raise InputError(f"{source}: input file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read input file {str(path)!r}: "
                         f"{exc.strerror}") from None


def _content(path: Path, cache: dict[Path, bytes | BigFile], source: str,
             inline_max_bytes: int) -> bytes | BigFile:
    if path not in cache:
        with _opened(path, source) as file:
            try:
                data = file.read(inline_max_bytes + 1 if inline_max_bytes else MAX_JOB_BYTES + 1)
                if inline_max_bytes and len(data) > inline_max_bytes:
                    file.seek(0)
                    sha256, size = httpfiles.sha256_of(file)
                    cache[path] = BigFile(path, sha256, size)
                else:
                    cache[path] = data
            except OSError as exc:
                raise InputError(f"{source}: cannot read input file {str(path)!r}: "
                                 f"{exc.strerror}") from None
    return cache[path]


def _check_size(files: dict[str, bytes | BigFile], source: str, job: str,
                inline_max_bytes: int) -> None:
    size = sum(len(data) for data in files.values() if isinstance(data, bytes))
    if size > MAX_JOB_BYTES:
        big = sorted(name for name, data in files.items() if isinstance(data, bytes))
        more = "" if inline_max_bytes else \
            " (the pool has no object storage for more: [storage] in its configuration)"
        raise InputError(f"{source}: {job}: input files total over {MAX_JOB_BYTES // MiB} MiB "
                         f"({', '.join(big)}), more than a job can carry inside a "
                         f"message{more}")
