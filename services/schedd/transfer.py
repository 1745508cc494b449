"""File transfer on the submit side: inputs into a claim activation, outputs back.

The schedd reads the job's executable and transfer_input_files from its
initial directory (Iwd) when a claim is activated and writes stdout, stderr
and output files back into Iwd when the job ends, as HTCondor's file transfer
does. Files travel inside the messages, so they are capped in size. What the
ad says (Iwd, Cmd, TransferInput, Out, Err) is read with services/condor/jobad.py.
"""

from __future__ import annotations

from pathlib import Path

import classad2

from services.condor import jobad

MAX_INLINE_BYTES = 64 * 1024 * 1024


class TransferError(Exception):
    """A file cannot be sent or written; the job is held with this reason."""


def input_files(ad: classad2.ClassAd) -> tuple[str, dict[str, bytes]]:
    """(executable as the pilot should run it, files by name) for an activation."""
    base = jobad.iwd(ad)
    files: dict[str, bytes] = {}
    total = 0
    cmd = jobad.string(ad, "Cmd")
    transfer_exe = ad.get("TransferExecutable", True) is not False
    executable = cmd
    if cmd and transfer_exe:
        path = base / cmd
        if path.is_file():
            executable = path.name
            files[executable] = _read(path)
            total += len(files[executable])
    for name in jobad.string_list(ad, "TransferInput"):
        path = base / name
        if path.is_dir():
            raise TransferError(f"input {name} is a directory; list its files instead")
        files[path.name] = _read(path)
        total += len(files[path.name])
        if total > MAX_INLINE_BYTES:
            raise TransferError(f"input files exceed {MAX_INLINE_BYTES // 2**20} MiB")
    return executable, files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TransferError(f"cannot read input {path}: {exc.strerror}") from None


def write_outputs(ad: classad2.ClassAd, stdout: bytes, stderr: bytes,
                  files: dict[str, bytes]) -> list[str]:
    """Write what a job returned into its Iwd; return the paths written."""
    base = jobad.iwd(ad)
    written = []
    for attr, data in (("Out", stdout), ("Err", stderr)):
        name = jobad.string(ad, attr)
        if name and name != "/dev/null":
            written.append(_write(base / name, data))
    for name, data in files.items():
        if "/" in name or name in ("", ".", ".."):
            raise TransferError(f"pilot returned an output named {name!r}")
        written.append(_write(base / name, data))
    return written


def _write(path: Path, data: bytes) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(data)
        tmp.replace(path)  # a reader never sees half a file
    except OSError as exc:
        raise TransferError(f"cannot write output {path}: {exc.strerror}") from None
    return str(path)
