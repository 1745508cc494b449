"""Submit description files (condor_submit syntax) → one job ClassAd per proc.

`burst submit FILE.sub` reads the file with this module after the schedd has
allocated the cluster id, so $(Cluster) is known while parsing; `burst submit
--dry-run` reads it with cluster 1, as condor_submit -dry-run does:

    jobs.sub ──lines──▶ pre-check (names the line of any junk or refused command)
                │
                ├─ split into queue blocks; commands accumulate across blocks
                ▼
    htcondor2.Submit(commands) ──queuestmt.py──▶ items × count ──▶ procs 0..N-1
                │                                                   │
                └──── expand() with Process/Item/… set, item ───────┘
                      variables named like commands applied         ▼
                                          translate.py ──▶ JobSpec(proc, ClassAd)
                                                          + warnings (commands.py)

htcondor2 does the parsing and the $(macro) expansion; the translation to an
ad is ours because `Submit.jobs()` is not implemented in the pip wheel. What
each command does is in the table of commands.py: supported ones land in the
ad (translate.py, policy.py), warned ones are accepted and named in a warning,
refused ones stop the file, quiet ones are ignored. Nothing partial is ever
returned: any problem raises SubmitError, whose str() is the one-line message
for the user ("jobs.sub line 7: ..."). Lines end only at "\\n", as in
condor_submit, so other control characters stay inside their line.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import classad2
import htcondor2

from . import commands as table
from .macros import macro_cycle, unterminated_macro
from .queuestmt import parse_queue_args, queue_count, queue_items
from .translate import job_ad
from .where import Context, SubmitError, SubmitWarning, Where

__all__ = ["JobSpec", "Submission", "SubmitError", "SubmitWarning", "parse_submit_file",
           "parse_submit_text", "read_submit_file", "read_submit_text"]

MAX_PROCS_PER_CLUSTER = 100_000  # a typo'd `queue 1000000` must not flood the schedd
_C_SPACE = " \t\n\r\v\f"  # condor_submit trims C's whitespace, not Unicode's


@dataclass(frozen=True)
class JobSpec:
    """One proc of the cluster. `ad` is a live ClassAd: treat it as read-only."""

    proc: int
    ad: classad2.ClassAd

    @property
    def ad_text(self) -> str:
        """The ad in one-line new ClassAd syntax, as carried by schemas.job.ProcAd."""
        return repr(self.ad)


@dataclass(frozen=True)
class Submission:
    jobs: list[JobSpec]
    warnings: list[SubmitWarning]  # each names its line; the CLI prints them on stderr


def read_submit_file(path: str | Path, *, cluster: int, owner: str, submit_host: str = "",
                     now: float | None = None,
                     environ: Mapping[str, str] | None = None) -> Submission:
    """The jobs of a submit file and the warnings about it. `environ` is the submitter's
    environment for getenv (default: this process's)."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise SubmitError(source, None, f"cannot read the submit file: {err}") from None
    return read_submit_text(text, cluster=cluster, owner=owner,
                            initialdir_default=Path(path).absolute().parent, source_name=source,
                            submit_host=submit_host, now=now, environ=environ)


def read_submit_text(text: str, *, cluster: int, owner: str, initialdir_default: Path,
                     source_name: str = "<text>", submit_host: str = "",
                     now: float | None = None,
                     environ: Mapping[str, str] | None = None) -> Submission:
    ctx = Context(source=source_name, base=Path(initialdir_default).absolute(),
                  cluster=cluster, owner=owner, submit_host=submit_host,
                  qdate=int(time.time() if now is None else now),
                  environ=os.environ if environ is None else environ)
    lines = _logical_lines(text)
    blocks = _split_blocks(lines, ctx.source)
    _warn_unused_macros(lines, ctx)
    specs: list[JobSpec] = []
    for block in blocks:
        specs.extend(_block_jobs(block, ctx, first_proc=len(specs)))
    if not specs:
        raise ctx.error(blocks[0].queue.number, "the queue statements queue no jobs")
    return Submission(specs, sorted(ctx.warnings, key=lambda warning: warning.line or 0))


def parse_submit_file(path: str | Path, *, cluster: int, owner: str, submit_host: str = "",
                      now: float | None = None,
                      environ: Mapping[str, str] | None = None) -> list[JobSpec]:
    """read_submit_file without the warnings."""
    return read_submit_file(path, cluster=cluster, owner=owner, submit_host=submit_host,
                            now=now, environ=environ).jobs


def parse_submit_text(text: str, *, cluster: int, owner: str, initialdir_default: Path,
                      source_name: str = "<text>", submit_host: str = "",
                      now: float | None = None,
                      environ: Mapping[str, str] | None = None) -> list[JobSpec]:
    return read_submit_text(text, cluster=cluster, owner=owner,
                            initialdir_default=initialdir_default, source_name=source_name,
                            submit_host=submit_host, now=now, environ=environ).jobs


# --- lines and queue blocks ----------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    number: int
    text: str  # stripped, with backslash continuations joined


@dataclass(frozen=True)
class _Block:
    commands: tuple[_Line, ...]  # every command before this queue statement, in order
    queue: _Line  # text after "queue", a multi-line item list folded in


_QUEUE = re.compile(r"queue(?:\s+(?P<args>.*))?$", re.I | re.S)
_COMMAND = re.compile(r"(?P<key>[^=]*?)\s*=\s*(?P<value>.*)$", re.S)
_KEY = re.compile(r"(?:\+|MY\.)?[A-Za-z_][A-Za-z0-9_.]*$", re.I)
_CONDITIONAL = re.compile(r"(?:if|elif|else|endif)(?:\s|$)", re.I)
_INCLUDE = re.compile(r"include\b", re.I)


def _logical_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        start = start or number
        # As condor_submit: drop the backslash and the next line's indentation.
        piece = raw.lstrip(_C_SPACE) if pending else raw
        if raw.rstrip(_C_SPACE).endswith("\\"):
            pending.append(piece.rstrip(_C_SPACE)[:-1])
            continue
        lines.append(_Line(start, "".join([*pending, piece]).strip(_C_SPACE)))
        pending, start = [], 0
    if pending:
        lines.append(_Line(start, "".join(pending).strip(_C_SPACE)))
    return lines


def _split_blocks(lines: list[_Line], source: str) -> list[_Block]:
    blocks: list[_Block] = []
    commands: list[_Line] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.text or line.text.startswith("#"):
            continue
        if (queue := _QUEUE.match(line.text)) is None:
            commands.append(_checked_command(line, source))
            continue
        args, index = _fold_item_list(queue["args"] or "", lines, index, line, source)
        blocks.append(_Block(tuple(commands), _Line(line.number, args)))
    if not blocks:
        raise SubmitError(source, None, "no queue statement: end the file with e.g. 'queue 1'")
    return blocks


def _fold_item_list(args: str, lines: list[_Line], index: int, queue: _Line,
                    source: str) -> tuple[str, int]:
    """`queue x from (` continues up to a line starting with ')': pull those lines in."""
    opened = args.rfind("(")
    if opened == -1 or ")" in args[opened:]:
        return args, index
    items = [args]
    while index < len(lines):
        text = lines[index].text
        index += 1
        if text.startswith(")"):
            return "\n".join([*items, ")"]), index
        if text and not text.startswith("#"):  # htcondor2 fails on blank item lines
            items.append(text)
    raise SubmitError(source, queue.number,
                      "the queue item list opened here is never closed by a line starting ')'")


def _checked_command(line: _Line, source: str) -> _Line:
    if _CONDITIONAL.match(line.text):
        return line
    if _INCLUDE.match(line.text):
        raise SubmitError(source, line.number,
                          f"'include' is not supported: {table.lookup('include').note}")
    command = _COMMAND.match(line.text)
    if command is None:
        raise SubmitError(source, line.number, f"expected 'name = value', a queue statement or "
                                               f"a # comment, got {line.text!r}")
    if not _KEY.match(command["key"]):
        raise SubmitError(source, line.number, f"{command['key']!r} is not a valid command name")
    if (macro := unterminated_macro(command["value"])) is not None:
        raise SubmitError(source, line.number, f"unterminated macro {macro!r}: missing ')'")
    known = table.lookup(command["key"])
    if known is not None and known.disposition is table.REFUSED and command["value"].strip() \
            and not known.is_default(command["value"]):
        raise SubmitError(source, line.number,
                          f"{command['key']} is not supported here: {known.note}")
    return line


def _command_lines(commands: Sequence[_Line]) -> dict[str, tuple[int, str]]:
    """Command (lower case as htcondor2 keys it: +Foo is my.foo; and its canonical name) →
    the last line defining it and the name as written there, for messages."""
    lines = {}
    for line in commands:
        if command := _COMMAND.match(line.text):
            key = command["key"].lower()
            key = "my." + key[1:] if key.startswith("+") else key
            lines[key] = lines[table.canonical(key)] = (line.number, command["key"])
    return lines


def _warn_unused_macros(lines: Sequence[_Line], ctx: Context) -> None:
    """condor_submit's warning for a line no command and no $(macro) uses: often a typo."""
    defined = [(line, command) for line in lines
               if (command := _COMMAND.match(line.text)) and not _QUEUE.match(line.text)
               and not _CONDITIONAL.match(line.text)]
    for line, command in defined:
        name = command["key"].strip()
        if not _KEY.match(name) or name.startswith("+") or table.lookup(name) is not None:
            continue
        uses = re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])", re.I)
        others = (other.text if other is not line else command["value"] for other in lines)
        if not any(uses.search(text) for text in others):
            ctx.warn(line.number, f"{name!r} is not a submit command and nothing uses it: "
                                  "is it a typo?")


# --- one queue statement → procs ------------------------------------------------------------


def _block_jobs(block: _Block, ctx: Context, first_proc: int) -> list[JobSpec]:
    line = block.queue.number
    try:
        sub = htcondor2.Submit("\n".join(command.text for command in block.commands))
    except ValueError as err:
        raise ctx.error(line, f"the commands before this queue statement do not parse: {err}") \
            from None
    commands = dict(sub)
    where = Where(ctx, _command_lines(block.commands), line)
    _refuse_macro_loops(commands, where)  # before anything expands: that would hang
    queue = parse_queue_args(block.queue.text, line, ctx)
    count = queue_count(queue, sub, line, ctx)
    items = queue_items(queue, sub, line, ctx)
    if first_proc + count * len(items) > MAX_PROCS_PER_CLUSTER:
        raise ctx.error(line, f"more than {MAX_PROCS_PER_CLUSTER} procs in one cluster")
    _refuse_macro_loops({**commands, **_values_by_name(items)}, where)
    _warn_not_served({**commands, **{name: "" for item in items for name in item}}, where)
    # One Submit per block whose per-proc macros are overwritten for each proc: building
    # one per proc would cost more than the expansion itself.
    template = htcondor2.Submit(commands)
    procs = ((index, item, step) for index, item in enumerate(items) for step in range(count))
    return [_job(template, commands, where, first_proc + offset, index, item, step)
            for offset, (index, item, step) in enumerate(procs)]


def _values_by_name(items: Sequence[Mapping[str, str]]) -> dict[str, str]:
    names = {name for item in items for name in item}
    return {name: " ".join(item.get(name, "") for item in items) for name in names}


def _refuse_macro_loops(values: Mapping[str, str], where: Where) -> None:
    if cycle := macro_cycle(values):
        names = [where.lines.get(name, (0, name))[1] for name in cycle]
        raise where.ctx.error(where.lines.get(cycle[0], (where.queue_line, ""))[0],
                              "macros refer to each other in a loop: " + " -> ".join(names))


def _warn_not_served(values: Mapping[str, str], where: Where) -> None:
    """Name each command the pool does not serve, unless it asks for the default."""
    for name, value in sorted(values.items()):
        command = table.lookup(name)
        if command is not None and command.disposition is table.WARNED \
                and not command.is_default(value):
            where.warn(table.canonical(name), command.note)


def _job(template: htcondor2.Submit, commands: Mapping[str, str], where: Where, proc: int,
         index: int, item: Mapping[str, str], step: int) -> JobSpec:
    per_proc = {"Process": proc, "ProcId": proc, "Cluster": where.ctx.cluster,
                "ClusterId": where.ctx.cluster, "Step": step, "ItemIndex": index, "Row": index}
    for name, value in {**per_proc, **item}.items():
        template[name] = str(value)
    # An item variable named like a command is that command for this proc, as in
    # condor_submit (`queue arguments from args.txt`): it overrides the file's line.
    raw = {**{key.lower(): value for key, value in commands.items()},
           **{name.lower(): value for name, value in item.items()}}
    expanded: dict[str, str] = {}
    for key in sorted(raw, key=lambda key: key != table.canonical(key)):  # canonical first
        command = table.lookup(key)
        name = table.canonical(key)
        if command is None or command.disposition is table.QUIET:
            continue
        value = _expand(template, key, raw[key], where, name)
        expanded.setdefault(name, value)  # the canonical spelling wins over an alias
        if key != name:
            expanded[key] = value  # what an alias said still counts (`env` asks for Env)
    custom = {key.lower(): key[3:] for key in commands if key.lower().startswith("my.")}
    return JobSpec(proc, job_ad(expanded, custom, where, proc))


def _expand(template: htcondor2.Submit, key: str, raw: str, where: Where, name: str) -> str:
    if not raw.strip():
        return ""  # htcondor2 takes an empty value for no key at all: keep it empty
    try:
        return template.expand(key).strip()
    except KeyError:
        return ""  # it expanded to nothing ($(undefined)), which htcondor2 reports so
    except ValueError as err:
        raise where.error(name, f"cannot expand its macros: {err}") from None
