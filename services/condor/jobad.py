"""A job ad read back: its argv, environment, files and streams, as HTCondor names them.

submit.py writes these attributes from a submit file; the schedd reads them
to activate a claim and to place what a job returns:

    Cmd, Arguments (or Args)        ─▶ arguments()     argv for the pilot
    Environment (or Env, EnvDelim)  ─▶ environment()   {name: value}
    Iwd                             ─▶ iwd()           where relative paths live
    TransferInput, TransferOutput   ─▶ string_list()   lists, or HTCondor's "a, b" strings
    In, Out, Err                    ─▶ stream_names()  the pilot's stdin/stdout/stderr names
    Cmd, In, TransferInput          ─▶ input_files()   what travels with the job, by name
    TransferOutput                  ─▶ output_names()  what a pilot may return
    Iwd + a name                    ─▶ below_iwd()     where a file goes, never out of Iwd

Arguments and Environment are HTCondor's raw new syntax, Args and Env its old
one; ads queued before that was so carry Args and Env as ClassAd lists, which
are read too. Pure: reading an ad, never a file.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import classad2

from .syntax import parse_raw_arguments, parse_raw_environment


def string(ad: classad2.ClassAd, name: str) -> str:
    """A string attribute (an expression is evaluated); "" when missing or undefined."""
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
    if isinstance(ad.get("Args"), list):
        return string_list(ad, "Args")
    if "Arguments" in ad:
        try:
            return parse_raw_arguments(string(ad, "Arguments"))
        except ValueError:  # not written by submit.py: take it word by word
            return string(ad, "Arguments").split()
    return string(ad, "Args").split()


def environment(ad: classad2.ClassAd) -> dict[str, str]:
    """The job's environment: Environment, else Env (old syntax, or a list of K=V)."""
    if isinstance(ad.get("Env"), list):
        pairs = string_list(ad, "Env")
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair and pair[0] != "=")
    try:
        if "Environment" in ad:
            return parse_raw_environment(string(ad, "Environment"))
        return parse_raw_environment(string(ad, "Env"), string(ad, "EnvDelim") or ";")
    except ValueError:  # not written by submit.py: what can be read of it
        return {}


def iwd(ad: classad2.ClassAd) -> Path:
    return Path(string(ad, "Iwd") or ".")


def stream_names(ad: classad2.ClassAd) -> dict[str, str]:
    return {key: os.path.basename(string(ad, attr))
            for key, attr in (("stdin", "In"), ("stdout", "Out"), ("stderr", "Err"))
            if string(ad, attr) and string(ad, attr) != "/dev/null"}


def transfers_executable(ad: classad2.ClassAd) -> bool:
    """Whether the executable travels with the job (transfer_executable, default true)."""
    return ad.eval("TransferExecutable") is not False if "TransferExecutable" in ad else True


def input_files(ad: classad2.ClassAd) -> dict[str, Path]:
    """The files a job takes along, by their name in its scratch directory (HTCondor
    flattens them to base names): the executable when it travels, stdin, and
    transfer_input_files; relative paths are under Iwd. ValueError for a URL or for two
    files that would get one name."""
    base = iwd(ad)
    wanted: list[str] = []
    if transfers_executable(ad) and string(ad, "Cmd"):
        wanted.append(string(ad, "Cmd"))
    if string(ad, "In") and string(ad, "In") != "/dev/null":
        wanted.append(string(ad, "In"))
    wanted += string_list(ad, "TransferInput")
    files: dict[str, Path] = {}
    for given in wanted:
        if "://" in given:
            raise ValueError(f"input {given!r}: URLs are not supported; name a local file")
        path = Path(os.path.normpath(base / given))
        name = path.name
        if name in files and files[name] != path:
            raise ValueError(f"inputs {str(files[name])!r} and {str(path)!r} would both be "
                             f"{name!r} in the job's directory")
        files[name] = path
    return files


def output_names(ad: classad2.ClassAd) -> frozenset[str] | None:
    """The names a pilot may return files under: the base names of transfer_output_files,
    or None when the job lists none (then every file it made comes back)."""
    listed = string_list(ad, "TransferOutput")
    return frozenset(os.path.basename(name) for name in listed) if listed else None


def below_iwd(ad: classad2.ClassAd, name: str) -> PurePosixPath:
    """Where the file `name` (relative to Iwd, or absolute inside it) lives, as a path
    relative to Iwd; ValueError when it would lead out of Iwd (.., another directory)."""
    return below(iwd(ad), name)


SUBMIT_DIR = "BurstSubmitDir"  # the submit file's directory (set by burst submit)


def file_root(ad: classad2.ClassAd, name: str) -> tuple[Path, PurePosixPath]:
    """Where the job's own file `name` (output, error, user log) may be written: inside
    Iwd, or inside the submit file's directory when Iwd is below it (a shared log beside
    the submit file, as many users keep). (root, path below it); ValueError otherwise."""
    base = iwd(ad)
    try:
        return base, below(base, name)
    except ValueError:
        submit_dir = ad.get(SUBMIT_DIR)
        if not isinstance(submit_dir, str) or not submit_dir:
            raise
        root = Path(os.path.normpath(submit_dir))
        if root != base and root not in base.parents:
            raise
        absolute = Path(os.path.normpath(base / name))
        try:
            return root, below(root, str(absolute))
        except ValueError:
            raise ValueError(f"{name!r} is inside neither the job's initialdir {str(base)!r} "
                             f"nor its submit file's directory {str(root)!r}") from None


def below(directory: Path, name: str) -> PurePosixPath:
    """`name` (relative to `directory`, or absolute inside it) relative to `directory`;
    ValueError when it would lead out of it."""
    base = PurePosixPath(os.path.normpath(directory.absolute()))
    path = PurePosixPath(name)
    if path.is_absolute():
        path = PurePosixPath(os.path.normpath(path))
        if base not in path.parents:
            raise ValueError(f"{name!r} is outside the job's initialdir {str(base)!r}")
        path = path.relative_to(base)
    if not path.parts or ".." in path.parts or path.parts[-1] in (".", ""):
        raise ValueError(f"{name!r} is not a file inside the job's initialdir {str(base)!r}")
    return path
