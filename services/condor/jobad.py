"""A job ad read back: its argv, environment, files and streams, as HTCondor names them.

submit.py writes these attributes from a submit file; the schedd reads them
to activate a claim and to place what a job returns:

    Cmd, Arguments (or Args)        ─▶ arguments()     argv for the pilot
    Environment (or Env, EnvDelim)  ─▶ environment()   {name: value}
    Iwd                             ─▶ iwd()           where relative paths live
    TransferInput, TransferOutput   ─▶ string_list()   lists, or HTCondor's "a, b" strings
    In, Out, Err                    ─▶ stream_names()  the pilot's stdin/stdout/stderr names
    Cmd, In, TransferInput          ─▶ input_files()   what travels with the job, by name
    TransferInput                   ─▶ input_urls()    what the pilot fetches (http, https, s3)
    TransferOutput                  ─▶ output_names()  what a pilot may return
    Iwd + a name                    ─▶ below_iwd()     where a file goes, never out of Iwd

Arguments and Environment are HTCondor's raw new syntax, Args and Env its old
one; ads queued before that was so carry Args and Env as ClassAd lists, which
are read too. Pure: reading an ad, never a file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

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
    flattens them to base names): the executable when it travels, stdin, and the files of
    transfer_input_files; relative paths are under Iwd. ValueError for two inputs (files or
    URLs) that would get one name, or a URL that is not fetched (input_urls)."""
    base = iwd(ad)
    wanted: list[str] = []
    if transfers_executable(ad) and string(ad, "Cmd"):
        wanted.append(string(ad, "Cmd"))
    if string(ad, "In") and string(ad, "In") != "/dev/null":
        wanted.append(string(ad, "In"))
    wanted += [name for name in string_list(ad, "TransferInput") if "://" not in name]
    files: dict[str, Path] = {}
    for given in wanted:
        path = Path(os.path.normpath(base / given))
        name = path.name
        if name in files and files[name] != path:
            raise ValueError(f"inputs {str(files[name])!r} and {str(path)!r} would both be "
                             f"{name!r} in the job's directory")
        files[name] = path
    for name, url in input_urls(ad).items():
        if name in files:
            raise ValueError(f"inputs {str(files[name])!r} and {url.shown!r} would both be "
                             f"{name!r} in the job's directory")
    return files


FETCHED_SCHEMES = ("http", "https", "s3")  # what pilots fetch; others are refused at submit
_SHA256 = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class InputURL:
    """One URL of transfer_input_files, `URL` or `URL#sha256=HEX` (our syntax: HTCondor has
    no standard one for a checksum)."""

    url: str  # without the fragment
    sha256: str  # lower-case hex, "" when none given

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def shown(self) -> str:
        """The URL as reasons and events may show it: no user info, query or fragment (they
        may hold a password or a token)."""
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    @property
    def bucket_and_key(self) -> tuple[str, str]:
        """s3://BUCKET/KEY, in the pool's object storage."""
        parts = urlsplit(self.url)
        return parts.netloc, unquote(parts.path.lstrip("/"))


def parse_input_url(given: str) -> tuple[str, InputURL]:
    """(name in the job's directory, the URL) of a URL input; ValueError naming it if its
    scheme is not fetched, it names no file, or its #fragment is not sha256=<64 hex>."""
    text, _, fragment = given.partition("#")
    url = InputURL(text, "")
    if url.scheme not in FETCHED_SCHEMES:
        raise ValueError(f"input {url.shown!r}: the {url.scheme}:// scheme is not served here "
                         "(http://, https:// and s3:// are)")
    if fragment:
        checksum = _SHA256.match(fragment)
        if checksum is None:
            raise ValueError(f"input {url.shown!r}: #{fragment} is not #sha256=<64 hex digits>")
        url = InputURL(text, checksum[1].lower())
    parts = urlsplit(text)
    name = unquote(parts.path.rpartition("/")[2])
    if url.scheme == "s3" and not (parts.netloc and url.bucket_and_key[1]):
        raise ValueError(f"input {url.shown!r}: an s3:// input is s3://BUCKET/KEY")
    if not name or name in (".", "..") or "\0" in name or not parts.netloc:
        raise ValueError(f"input {url.shown!r} names no file (its path must end in a file name)")
    return name, url


def input_urls(ad: classad2.ClassAd) -> dict[str, InputURL]:
    """The URLs of transfer_input_files, by the name the file gets in the job's directory
    (the last part of the URL's path, as HTCondor names it); ValueError as parse_input_url,
    or for two URLs that would get one name."""
    found: dict[str, InputURL] = {}
    for given in string_list(ad, "TransferInput"):
        if "://" not in given:
            continue
        name, url = parse_input_url(given)
        if name in found and found[name] != url:
            raise ValueError(f"inputs {found[name].shown!r} and {url.shown!r} would both be "
                             f"{name!r} in the job's directory")
        found[name] = url
    return found


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
