"""Queue statements: how many procs, and the item rows that set their variables.

    queue                         one proc
    queue 3                       three (the count may be a macro or an expression)
    queue x,y from rows.txt       one proc per row; x and y set from its words
    queue in [1:3] (a b c d)      a slice of an inline list; the variable is Item
    queue f matching files *.dat  one per file the glob finds

htcondor2.Submit.itemdata() reads the rows; what is ours is parsing the
statement to anchor item files and globs at the submit file's directory (the
process's working directory may be anywhere) and to name the line of any error.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import classad2
import htcondor2

from .where import Context

_QUEUE_ARGS = re.compile(r"(?P<head>.*?)\s*(?:\b(?P<mode>in|from|matching)\b\s*(?P<rest>.*))?$",
                         re.I | re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_SLICE = re.compile(r"\[\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?\]\s*")


@dataclass(frozen=True)
class QueueArgs:
    count: str  # as written; may hold macros. "" means 1
    names: tuple[str, ...]  # item variable names; () means Item
    mode: str  # "", "in", "from" or "matching"
    qualifier: str  # "files", "dirs" or "" after "matching"
    rest: str  # the item list, file name or globs: what follows mode, qualifier and slice
    items: slice


def parse_queue_args(args: str, line: int, ctx: Context) -> QueueArgs:
    match = _QUEUE_ARGS.match(args.strip())
    assert match is not None  # every group is optional
    head = [word for word in re.split(r"[\s,]+", match["head"]) if word]
    mode = (match["mode"] or "").lower()
    count = head.pop(0) if head and (not mode or not _NAME.match(head[0])) else ""
    if not mode and head:
        raise ctx.error(line, f"bad queue statement 'queue {args.strip()}': after the count "
                              "expected 'in', 'from' or 'matching'")
    if bad := [name for name in head if not _NAME.match(name)]:
        raise ctx.error(line, f"bad queue variable name {bad[0]!r}")
    if mode in ("in", "matching") and len(head) > 1:
        raise ctx.error(line, f"'queue ... {mode}' takes one variable name, got {len(head)}")
    rest = match["rest"] or ""
    kind = re.match(r"(files|dirs)\b\s*", rest, re.I) if mode == "matching" else None
    qualifier, rest = (kind[1].lower(), rest[kind.end():]) if kind else ("", rest)
    sliced = _SLICE.match(rest)
    return QueueArgs(count, tuple(head), mode, qualifier,
                      rest[sliced.end():] if sliced else rest, _slice_of(sliced))


def _slice_of(match: re.Match[str] | None) -> slice:
    if match is None:
        return slice(None)
    return slice(*(int(part) if part else None for part in match.groups()))


def queue_count(queue: QueueArgs, sub: htcondor2.Submit, line: int, ctx: Context) -> int:
    if not queue.count:
        return 1
    try:
        text = _expand_text(sub, queue.count)
    except (KeyError, ValueError):  # htcondor2's way of saying a macro did not expand
        raise ctx.error(line, f"queue count {queue.count!r} does not expand to a number") \
            from None
    try:
        value = int(text) if re.fullmatch(r"-?\d+", text) else classad2.ExprTree(text).eval()
    except classad2.ClassAdException:
        value = None
    # classad2.Value (Undefined, Error) is an IntEnum: exclude it before trusting int.
    if isinstance(value, (classad2.Value, bool)) or not isinstance(value, int):
        raise ctx.error(line, f"queue count {queue.count!r} is not a whole number")
    if value < 0:
        raise ctx.error(line, f"queue count {value} is negative")
    return value


def _expand_text(sub: htcondor2.Submit, text: str) -> str:
    probe = htcondor2.Submit(dict(sub))
    probe["BurstExpandProbe"] = text
    return probe.expand("BurstExpandProbe").strip()


def queue_items(queue: QueueArgs, sub: htcondor2.Submit, line: int,
                 ctx: Context) -> list[dict[str, str]]:
    if not queue.mode:
        return [{}]
    names = ",".join(queue.names)
    rest = _anchored_item_source(queue, line, ctx)
    try:
        items = sub.itemdata(f"{names} {queue.mode} {rest}")
    except ValueError as err:
        raise ctx.error(line, f"bad queue statement: {err}") from None
    found = list(items or [])[queue.items]
    if queue.mode == "matching":
        return [{name: _relative_to(value, ctx.base) for name, value in item.items()}
                for item in found]
    return found


def _anchored_item_source(queue: QueueArgs, line: int, ctx: Context) -> str:
    """htcondor2 reads item files and globs relative to the process cwd; anchor them at
    the submit file's directory instead (chdir would race with other threads)."""
    rest = queue.rest.strip()
    if queue.mode == "from" and not rest.startswith("("):
        if rest.endswith("|"):
            raise ctx.error(line, "'queue ... from command |' is not supported")
        path = ctx.base / rest
        if not path.is_file():
            raise ctx.error(line, f"queue item file {rest!r} not found in {ctx.base}")
        return str(path)
    if queue.mode == "matching":
        base = glob.escape(str(ctx.base))
        patterns = (os.path.join(base, word) for word in rest.strip("()").split())
        return " ".join([queue.qualifier, *patterns]).strip()
    return rest


def _relative_to(value: str, base: Path) -> str:
    prefix = str(base).rstrip("/") + "/"
    return value[len(prefix):] if value.startswith(prefix) else value
