"""`getenv`: which of the submitter's environment variables a job takes along. Pure.

    getenv = true                     every variable          (condor_submit: the same)
    getenv = HOME, CONDA*, !CONDA_X   names and patterns      (HTCondor 10's list form)

The list form follows condor_submit: items are separated by commas, semicolons or
whitespace; `!` before an item excludes what it matches; `*` matches anything, and
names match without regard to case. Variables the submit file sets with
`environment` are never overridden, and values a job ad cannot carry are left
out silently (a newline; while `environment` or `env` is given also a `;`,
which condor_submit's filter keeps out of the old syntax).

Where we differ, on purpose: a pilot runs on a machine of the pool, not the
submitter's, and the job ad travels through the schedd, so two kinds of
variable stay behind, each named in a warning:

- the pool's own (AMQP_URL carries the broker's password, BURST_* names the
  user's token and the pool's key): never copied, even when named;
- secret-looking names (*_KEY*, *SECRET*, *TOKEN*, *PASSWORD*, *PASSWD*,
  *CREDENTIAL*): copied only when the list names them exactly, never by
  `true` or by a pattern.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .where import BOOLEANS

POOL_VARIABLES = ("AMQP_URL", "BURST_*")
SECRET_PATTERNS = ("*_KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*")


@dataclass(frozen=True)
class Selection:
    """What a getenv value asks for: everything, or names and patterns in and out."""

    everything: bool
    wanted: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


@dataclass
class Imported:
    env: dict[str, str] = field(default_factory=dict)
    kept_back: list[str] = field(default_factory=list)  # the pool's own variables
    secret: list[str] = field(default_factory=list)  # secret-looking, not named exactly


def parse(value: str) -> Selection | None:
    """The getenv value; None for false (nothing to copy)."""
    text = value.strip()
    if text.lower() in BOOLEANS:
        return Selection(everything=True) if BOOLEANS[text.lower()] else None
    items = [item for item in re.split(r"[,;\s]+", text) if item]
    wanted = tuple(item for item in items if not item.startswith("!"))
    excluded = tuple(item[1:] for item in items if item.startswith("!") and len(item) > 1)
    return Selection(everything=not wanted, wanted=wanted, excluded=excluded)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern.upper()) for pattern in patterns)


def select(selection: Selection, environ: Mapping[str, str], *, already: set[str],
           v1: bool = False) -> Imported:
    """The variables of `environ` the job takes along, and the ones kept back."""
    exact = {name.upper() for name in selection.wanted if "*" not in name}
    out = Imported()
    for name in sorted(environ):
        value = environ[name]
        if name in already or _matches(name, selection.excluded):
            continue
        if not selection.everything and not _matches(name, selection.wanted):
            continue
        if "\n" in value or "\0" in value or (v1 and ";" in value):
            continue  # condor_submit drops what the ad cannot carry, silently
        if _matches(name, POOL_VARIABLES):
            out.kept_back.append(name)
        elif _matches(name, SECRET_PATTERNS) and name.upper() not in exact:
            out.secret.append(name)
        else:
            out.env[name] = value
    return out
