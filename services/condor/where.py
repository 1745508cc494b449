"""Where a problem or a warning in a submit file is: its file and line. Pure.

Every refusal is a SubmitError whose str() is the one line a user sees
("jobs.sub line 7: request_cpus: 'two' is not a positive integer"); every
warning is a SubmitWarning of the same shape, collected while the file is read
and printed by the CLI on stderr. The small converters here turn a command's
expanded text into a value or a SubmitError naming that command's line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import classad2


@dataclass(frozen=True)
class Located:
    """Something said about a submit file, at a line (None: the whole file)."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where}: {self.message}"


CLASSAD_INT_LIMIT = 2**63  # a ClassAd integer is 64-bit signed


class SubmitError(Exception):
    """Why the file is refused; nothing of it is queued. A plain exception, not a frozen
    dataclass: raising one through a context manager sets its __traceback__."""

    def __init__(self, source: str, line: int | None, message: str):
        super().__init__(source, line, message)
        self.source, self.line, self.message = source, line, message

    def __str__(self) -> str:
        return str(Located(self.source, self.line, self.message))

    @property
    def problem(self) -> str:
        return self.message


@dataclass(frozen=True)
class SubmitWarning(Located):
    """A command accepted but not served as HTCondor would (or a likely typo)."""


@dataclass(frozen=True)
class Context:
    """One submit file being read: what every job of it shares."""

    source: str
    base: Path  # the submit file's directory: relative paths and globs start here
    cluster: int
    owner: str
    submit_host: str
    qdate: int
    environ: Mapping[str, str]  # the submitter's environment, for getenv
    warnings: list[SubmitWarning] = field(default_factory=list)

    def error(self, line: int | None, problem: str) -> SubmitError:
        return SubmitError(self.source, line, problem)

    def warn(self, line: int | None, message: str) -> None:
        warning = SubmitWarning(self.source, line, message)
        if warning not in self.warnings:  # a command shared by every proc warns once
            self.warnings.append(warning)


@dataclass(frozen=True)
class Where:
    """Turns a problem with a command into a SubmitError (or a warning) naming its line."""

    ctx: Context
    lines: Mapping[str, tuple[int, str]]  # canonical command -> (line, name as written)
    queue_line: int

    def line_of(self, key: str) -> int:
        return self.lines.get(key, (self.queue_line, key))[0]

    def error(self, key: str, problem: str) -> SubmitError:
        line, label = self.lines.get(key, (self.queue_line, key))
        return self.ctx.error(line, f"{label}: {problem}")

    def warn(self, key: str, message: str) -> None:
        line, label = self.lines.get(key, (self.queue_line, key))
        self.ctx.warn(line, f"{label}: {message}")


_T = TypeVar("_T")


def convert(expanded: Mapping[str, str], key: str, converter: Callable[[str], _T],
            default: _T, where: Where) -> _T:
    raw = expanded.get(key, "")
    if not raw:
        return default
    try:
        value = converter(raw)
    except ValueError as err:
        raise where.error(key, str(err)) from None
    if isinstance(value, int) and not -CLASSAD_INT_LIMIT <= value < CLASSAD_INT_LIMIT:
        raise where.error(key, f"{raw!r} is too large")
    return value


def expression(text: str) -> classad2.ExprTree:
    try:
        return classad2.ExprTree(text)
    except classad2.ClassAdException:
        raise ValueError(f"{text!r} is not a valid ClassAd expression") from None


def integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def non_negative(text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text.strip()):
        raise ValueError(f"{text!r} is not a non-negative integer")
    return int(text)


BOOLEANS = {"true": True, "yes": True, "t": True, "1": True,
             "false": False, "no": False, "f": False, "0": False}


def boolean(text: str) -> bool:
    """true/false/yes/no/1/0, or an expression that evaluates to one (`$(Process) == 1`), as
    condor_submit takes them."""
    value = BOOLEANS.get(text.strip().lower())
    if value is not None:
        return value
    try:
        result = classad2.ExprTree(text).eval()
    except classad2.ClassAdException:
        result = None
    # classad2.Value (Undefined, Error) is an IntEnum: rule it out before trusting numbers.
    if isinstance(result, classad2.Value) or not isinstance(result, (bool, int, float)):
        raise ValueError(f"{text!r} is not true or false")
    return bool(result)
