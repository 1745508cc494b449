"""A job ad read back: its argv, environment, files and streams, as HTCondor names them.

submit.py writes these attributes from a submit file; the schedd reads them
to activate a claim and to place what a job returns:

    Cmd, Args (or Arguments)        ─▶ arguments()     argv for the pilot
    Env (or Environment)            ─▶ environment()   {name: value}
    Iwd                             ─▶ iwd()           where relative paths live
    TransferInput, TransferOutput   ─▶ string_list()   lists, or HTCondor's "a, b" strings
    In, Out, Err                    ─▶ stream_names()  the pilot's stdin/stdout/stderr names

Pure: reading an ad, never a file.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import classad2


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
    args = string_list(ad, "Args") if isinstance(ad.get("Args"), list) else None
    if args is not None:
        return args
    return shlex.split(string(ad, "Arguments"))


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
    return Path(string(ad, "Iwd") or ".")


def stream_names(ad: classad2.ClassAd) -> dict[str, str]:
    return {key: os.path.basename(string(ad, attr))
            for key, attr in (("stdin", "In"), ("stdout", "Out"), ("stderr", "Err"))
            if string(ad, attr) and string(ad, attr) != "/dev/null"}
