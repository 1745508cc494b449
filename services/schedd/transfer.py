"""File transfer on the submit side: inputs into a claim activation, outputs back.

The schedd reads the job's executable and transfer_input_files from its
initial directory (Iwd) when a claim is activated and writes stdout, stderr
and output files back into Iwd when the job ends, as HTCondor's file transfer
does. Files travel inside the messages, so they are capped in size.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import classad2

MAX_INLINE_BYTES = 64 * 1024 * 1024


class TransferError(Exception):
    """A file cannot be sent or written; the job is held with this reason."""


def _string(ad: classad2.ClassAd, name: str) -> str:
    value = ad.get(name)
    if value is None or isinstance(value, (classad2.ExprTree, classad2.Value)):
        if isinstance(value, classad2.ExprTree):
            value = ad.eval(name)
        if value is None or isinstance(value, classad2.Value):
            return ""
    return value if isinstance(value, str) else str(value)


def string_list(ad: classad2.ClassAd, name: str) -> list[str]:
    """A list attribute, or HTCondor's comma-separated string form of one."""
    value = ad.get(name)
    if isinstance(value, classad2.ExprTree):
        value = ad.eval(name)
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


def arguments(ad: classad2.ClassAd) -> list[str]:
    args = string_list(ad, "Args") if isinstance(ad.get("Args"), list) else None
    if args is not None:
        return args
    return shlex.split(_string(ad, "Arguments"))


def environment(ad: classad2.ClassAd) -> dict[str, str]:
    """The job's environment: the `Env` list of K=V strings, else `Environment`."""
    value = ad.get("Env") if isinstance(ad.get("Env"), list) else ad.get("Environment")
    if isinstance(value, classad2.ExprTree):
        value = ad.eval("Environment")
    pairs: list[str] = []
    if isinstance(value, list):
        pairs = [str(v) for v in value]
    elif isinstance(value, classad2.ClassAd):
        return {k: str(ad_value) for k, ad_value in value.items()}
    elif isinstance(value, str):
        pairs = shlex.split(value)
    env = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if sep and key:
            env[key] = val
    return env


def iwd(ad: classad2.ClassAd) -> Path:
    return Path(_string(ad, "Iwd") or ".")


def input_files(ad: classad2.ClassAd) -> tuple[str, dict[str, bytes]]:
    """(executable as the pilot should run it, files by name) for an activation."""
    base = iwd(ad)
    files: dict[str, bytes] = {}
    total = 0
    cmd = _string(ad, "Cmd")
    transfer_exe = ad.get("TransferExecutable", True) is not False
    executable = cmd
    if cmd and transfer_exe:
        path = base / cmd
        if path.is_file():
            executable = path.name
            files[executable] = _read(path)
            total += len(files[executable])
    for name in string_list(ad, "TransferInput"):
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


def stream_names(ad: classad2.ClassAd) -> dict[str, str]:
    return {key: os.path.basename(_string(ad, attr))
            for key, attr in (("stdin", "In"), ("stdout", "Out"), ("stderr", "Err"))
            if _string(ad, attr) and _string(ad, attr) != "/dev/null"}


def write_outputs(ad: classad2.ClassAd, stdout: bytes, stderr: bytes,
                  files: dict[str, bytes]) -> list[str]:
    """Write what a job returned into its Iwd; return the paths written."""
    base = iwd(ad)
    written = []
    for attr, data in (("Out", stdout), ("Err", stderr)):
        name = _string(ad, attr)
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
