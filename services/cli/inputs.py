"""The files jobs take along, read by `burst submit` with the user's own rights.

    job ads ──jobad.input_files()──▶ {name: path} per proc ──read (as the user)──▶ input sets
                                                                                   │
    JobSubmit(procs=[ProcAd(inputs=i)], input_sets=[{name: bytes}, ...]) ◀─────────┘

The schedd never opens a path a user named: what a user cannot read cannot be
submitted, and a file a user can read is sent inside the submission (procs
with the same files share one set, so it travels once). Files travel inside
messages for now, so a job's inputs are capped (MAX_JOB_BYTES, as the
schedd's), and so is a whole submission (MAX_SUBMIT_BYTES: the broker's
message size limit is 128 MiB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.condor import jobad
from services.condor.submit import JobSpec

MiB = 1024 * 1024
MAX_JOB_BYTES = 64 * MiB
MAX_SUBMIT_BYTES = 96 * MiB


class InputError(Exception):
    """A file a job names cannot be sent; str() is the one line for the user."""


@dataclass(frozen=True)
class Inputs:
    sets: list[dict[str, bytes]]  # JobSubmit.input_sets
    index: dict[int, int]  # proc -> its set, -1 for none (ProcAd.inputs)

    @property
    def size(self) -> int:
        return sum(len(data) for files in self.sets for data in files.values())


def read(specs: Sequence[JobSpec], source: str, cluster: int) -> Inputs:
    """The input files of every proc, read once each; InputError names the first file that
    cannot be read, or the job whose inputs are too big."""
    contents: dict[Path, bytes] = {}
    sets: list[dict[str, bytes]] = []
    set_of: dict[tuple[tuple[str, Path], ...], int] = {}
    index: dict[int, int] = {}
    for spec in specs:
        try:
            files = jobad.input_files(spec.ad)
        except ValueError as exc:
            raise InputError(f"{source}: job {cluster}.{spec.proc}: {exc}") from None
        if not files:
            index[spec.proc] = -1
            continue
        key = tuple(sorted(files.items()))
        if key not in set_of:
            set_of[key] = len(sets)
            sets.append({name: _content(path, contents, source) for name, path in key})
            _check_size(sets[-1], source, f"job {cluster}.{spec.proc}")
        index[spec.proc] = set_of[key]
    found = Inputs(sets, index)
    if found.size > MAX_SUBMIT_BYTES:
        raise InputError(f"{source}: the jobs' input files total {found.size / MiB:.1f} MiB, "
                         f"over the {MAX_SUBMIT_BYTES // MiB} MiB one submission can carry; "
                         "submit fewer jobs at a time")
    return found


def _content(path: Path, cache: dict[Path, bytes], source: str) -> bytes:
    if path not in cache:
        if path.is_dir():
            raise InputError(f"{source}: input {str(path)!r} is a directory; list its files "
                             "instead")
        if path.exists() and not path.is_file():  # a pipe or a device could block forever
            raise InputError(f"{source}: input {str(path)!r} is not a regular file")
        try:
            with open(path, "rb") as file:  # as the user who runs burst submit
                cache[path] = file.read(MAX_JOB_BYTES + 1)
        except FileNotFoundError:
            raise InputError(f"{source}: input file {str(path)!r} does not exist") from None
        except OSError as exc:
            raise InputError(f"{source}: cannot read input file {str(path)!r}: "
                             f"{exc.strerror}") from None
    return cache[path]


def _check_size(files: dict[str, bytes], source: str, job: str) -> None:
    size = sum(len(data) for data in files.values())
    if size > MAX_JOB_BYTES:
        raise InputError(f"{source}: {job}: input files total over {MAX_JOB_BYTES // MiB} MiB "
                         f"({', '.join(sorted(files))}), more than a job can carry for now")
