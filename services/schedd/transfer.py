"""File transfer on the submit side: spooled inputs into a claim activation, outputs back.

    burst submit (reads the files with the user's own rights)
        └─ job.submit: input sets ──spool()──▶ <state>/spool/<schedd>/<cluster>/<shared|proc>/
    match ──spooled()──▶ (executable, files) in claim.activate, sealed to the pilot
    job.report (exited, held) ──write_outputs()──▶ Out, Err and output files, inside Iwd

The schedd never opens a path a user named to read it: inputs come inside
the submission and are kept in the spool, which is the schedd's own. Outputs
are written inside the job's Iwd only (confined.py), under names the job
asked for. Files travel inside the messages, so they are capped in size.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import classad2

from services.condor import jobad

from . import confined
from .logic import plain_file_name

MAX_INLINE_BYTES = 64 * 1024 * 1024  # per job; burst submit refuses more


class TransferError(Exception):
    """A file cannot be sent or written; the job is held with this reason."""


# --- inputs -------------------------------------------------------------------------------


def spool(directory: Path, files: Mapping[str, bytes]) -> None:
    """Keep one input set of a submission (a rerun of the same submission rewrites it)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        if not plain_file_name(name):
            raise ValueError(f"input file name {name!r} is not a plain file name")
        partial = directory / f".{name}.partial"
        partial.write_bytes(data)
        partial.chmod(0o600)
        partial.replace(directory / name)


def spooled(directory: Path | None, ad: classad2.ClassAd) -> tuple[str, dict[str, bytes]]:
    """(executable as the pilot should run it, files by name) of a job, from its spool."""
    files: dict[str, bytes] = {}
    if directory is not None:
        try:
            for path in sorted(directory.iterdir()):
                if not path.name.startswith("."):
                    files[path.name] = path.read_bytes()
        except OSError as exc:
            raise TransferError(f"the job's spooled input files are gone ({directory}: "
                                f"{exc.strerror}); submit it again") from None
    cmd = jobad.string(ad, "Cmd")
    name = os.path.basename(cmd)
    executable = name if jobad.transfers_executable(ad) and name in files else cmd
    return executable, files


def unspool(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


# --- outputs ------------------------------------------------------------------------------


def write_outputs(ad: classad2.ClassAd, stdout: bytes, stderr: bytes,
                  files: Mapping[str, bytes], *, owner: str, private_dir: Path | None = None,
                  protected: frozenset[PurePosixPath] = frozenset()) -> list[str]:
    """Write what a job returned into its Iwd; return the paths written.

    Names are checked first, so a report with one bad name writes nothing: each output
    file must be a plain name the job's transfer_output_files lists (any, if it lists
    none, but never one of `protected`: the submit file, the user log)."""
    base = jobad.iwd(ad)
    allowed = jobad.output_names(ad)
    plan: list[tuple[Path, PurePosixPath, bytes]] = []
    for attr, data in (("Out", stdout), ("Err", stderr)):
        name = jobad.string(ad, attr)
        if name and name != "/dev/null":
            plan.append((*_file_root(ad, name, attr), data))
    for name, data in files.items():
        if not plain_file_name(name):
            raise TransferError(f"the pilot returned an output file named {name!r}")
        if allowed is not None and name not in allowed:
            raise TransferError(f"the pilot returned {name!r}, which transfer_output_files "
                                "does not list")
        if allowed is None and PurePosixPath(name) in protected:
            raise TransferError(f"the pilot returned {name!r}, which would replace the "
                                "job's submit file or user log")
        plan.append((base, PurePosixPath(name), data))
    account = confined.account_of(owner)
    try:
        for root in {root for root, _relative, _data in plan}:
            confined.refuse_private(root, private_dir)
        return [str(confined.write(root, relative, data, account))
                for root, relative, data in plan]
    except confined.Refused as exc:
        raise TransferError(str(exc)) from None


def _file_root(ad: classad2.ClassAd, name: str, attr: str) -> tuple[Path, PurePosixPath]:
    try:
        return jobad.file_root(ad, name)
    except ValueError as exc:
        what = {"Out": "output", "Err": "error"}[attr]
        raise TransferError(f"{what} file {exc}") from None


def protected_files(ad: classad2.ClassAd, submit_file: str) -> frozenset[PurePosixPath]:
    """The files in Iwd no output may replace: the submit file and the user log."""
    found = set()
    for path in (submit_file, jobad.string(ad, "UserLog")):
        if path:
            try:
                found.add(jobad.below_iwd(ad, path))
            except ValueError:
                pass  # elsewhere: no output can reach it anyway
    return frozenset(found)
