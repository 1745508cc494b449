"""A job ad read back: its argv, environment, files and streams, as HTCondor names them.

submit.py writes these attributes from a submit file; the schedd reads them
to activate a claim and to place what a job returns:

    Cmd, Arguments (or Args)        ─▶ arguments()     argv for the pilot
    Environment (or Env, EnvDelim)  ─▶ environment()   {name: value}
    Iwd                             ─▶ iwd()           where relative paths live
    TransferInput, TransferOutput   ─▶ string_list()   lists, or HTCondor's "a, b" strings
    In, Out, Err                    ─▶ stream_names()  the pilot's stdin/stdout/stderr names

Arguments and Environment are HTCondor's raw new syntax, Args and Env its old
one; ads queued before that was so carry Args and Env as ClassAd lists, which
are read too. Pure: reading an ad, never a file.
"""

from __future__ import annotations

import os
from pathlib import Path

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
