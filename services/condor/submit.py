"""Submit description files (condor_submit syntax) → one job ClassAd per proc.

`burst submit FILE.sub` reads the file with this module after the schedd has
allocated the cluster id, so $(Cluster) is known while parsing:

    jobs.sub ──lines──▶ pre-check (names the line of any junk)
                │
                ├─ split into queue blocks; commands accumulate across blocks
                ▼
    htcondor2.Submit(commands)  ──itemdata()──▶ items × count ──▶ procs 0..N-1
                │                                                   │
                └──────────── expand() with Process/Item/… set ─────┘
                                                                    ▼
                                                     JobSpec(proc, ClassAd)

htcondor2 does the parsing and the $(macro) expansion; the translation to an
ad is ours because `Submit.jobs()` is not implemented in the pip wheel.
Nothing partial is ever returned: any problem raises SubmitError, whose str()
is the one-line message for the user ("jobs.sub line 7: ...").

Submit command → job attribute (HTCondor names, so users' expressions work):

    executable              Cmd          absolute path; must be a file here unless
    transfer_executable     TransferExecutable   = false (then Cmd is on the execute side)
    arguments               Arguments    canonical "new syntax" string, 'b c' quoted
                            Args         ClassAd list of strings: the argv, {"a","b c"}
    environment (env)       Environment  canonical "new syntax" string: A=1 B='x y'
                            Env          ClassAd list of "K=V" strings, in file order
    initialdir              Iwd          absolute; default the submit file's directory
    input/output/error      In/Out/Err   as written (relative means under Iwd); /dev/null;
                                         output and error must be inside Iwd
    log                     UserLog      absolute (joined to Iwd); inside Iwd, its directory
                                         must exist
    transfer_input_files    TransferInput   ClassAd list; each must exist at submit time
    transfer_output_files   TransferOutput  ClassAd list
    request_cpus            RequestCpus     positive integer, default 1
    request_memory          RequestMemory   MiB: plain number = MiB; K/KB M/MB G/GB T/TB
                                            (every number must fit a 64-bit ClassAd integer)
    request_disk            RequestDisk     KiB: plain number = KiB; same units; 1 GiB default
    requirements            Requirements    (user's or true) && Cpus/Memory/Disk clauses
    rank                    Rank            default 0.0
    priority                JobPrio         integer, default 0
    batch_name              JobBatchName
    max_retries             MaxRetries      non-negative integer
    +Attr / MY.Attr         Attr            raw ClassAd expression (applied last)
    universe                JobUniverse     only vanilla (5)

plus ClusterId, ProcId, Owner, QDate, JobStatus (1, idle) and, with a submit
host, User and GlobalJobId. Args and Env are lists, not HTCondor's old-syntax
strings, so the pilot never re-parses quoting. `$$(Attr)` is kept verbatim for
the pilot, which calls `macros.substitute_slot_macros` with its slot ad. Other
commands are macros, as in condor_submit; `getenv` and `include` are not
supported (`include` is refused, so a file never silently loses commands).
Sizes, arguments and environment are read by `syntax.py`.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import classad2
import htcondor2

from .jobad import below
from .macros import macro_cycle, unterminated_macro
from .syntax import (
    format_arguments,
    format_environment,
    parse_arguments,
    parse_disk_kib,
    parse_environment,
    parse_memory_mib,
)

DEFAULT_REQUEST_MEMORY_MIB = 128  # HTCondor's JOB_DEFAULT_REQUESTMEMORY
DEFAULT_REQUEST_DISK_KIB = 1024 * 1024
MAX_PROCS_PER_CLUSTER = 100_000  # a typo'd `queue 1000000` must not flood the schedd
CLASSAD_INT_LIMIT = 2**63  # a ClassAd integer is 64-bit signed
VANILLA_UNIVERSE = 5
IDLE = 1
# Attributes the schedd owns: a +Attr overriding them would corrupt the queue.
SCHEDD_OWNED = frozenset({"clusterid", "procid", "owner", "qdate", "jobstatus",
                          "globaljobid", "user", "jobuniverse"})


@dataclass  # not frozen: raising sets __traceback__ on it
class SubmitError(Exception):
    source: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class JobSpec:
    """One proc of the cluster. `ad` is a live ClassAd: treat it as read-only."""

    proc: int
    ad: classad2.ClassAd

    @property
    def ad_text(self) -> str:
        """The ad in one-line new ClassAd syntax, as carried by schemas.job.ProcAd."""
        return repr(self.ad)


def parse_submit_file(path: str | Path, *, cluster: int, owner: str, submit_host: str = "",
                      now: float | None = None) -> list[JobSpec]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise SubmitError(source, None, f"cannot read the submit file: {err}") from None
    return parse_submit_text(text, cluster=cluster, owner=owner,
                             initialdir_default=Path(path).absolute().parent,
                             source_name=source, submit_host=submit_host, now=now)


def parse_submit_text(text: str, *, cluster: int, owner: str, initialdir_default: Path,
                      source_name: str = "<text>", submit_host: str = "",
                      now: float | None = None) -> list[JobSpec]:
    ctx = _Context(source=source_name, base=Path(initialdir_default).absolute(),
                   cluster=cluster, owner=owner, submit_host=submit_host,
                   qdate=int(time.time() if now is None else now))
    specs: list[JobSpec] = []
    blocks = _split_blocks(_logical_lines(text), ctx.source)
    for block in blocks:
        specs.extend(_block_jobs(block, ctx, first_proc=len(specs)))
    if not specs:
        raise ctx.error(blocks[0].queue.number, "the queue statements queue no jobs")
    return specs


# --- lines and queue blocks ----------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    source: str
    base: Path  # the submit file's directory: relative paths and globs start here
    cluster: int
    owner: str
    submit_host: str
    qdate: int

    def error(self, line: int | None, problem: str) -> SubmitError:
        return SubmitError(self.source, line, problem)


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


def _logical_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        start = start or number
        # As condor_submit: drop the backslash and the next line's indentation.
        piece = raw.lstrip() if pending else raw
        if raw.rstrip().endswith("\\"):
            pending.append(piece.rstrip()[:-1])
            continue
        lines.append(_Line(start, "".join([*pending, piece]).strip()))
        pending, start = [], 0
    if pending:
        lines.append(_Line(start, "".join(pending).strip()))
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
    if re.match(r"include\b", line.text, re.I):
        raise SubmitError(source, line.number, "'include' is not supported: inline the commands")
    command = _COMMAND.match(line.text)
    if command is None:
        raise SubmitError(source, line.number, f"expected 'name = value', a queue statement or "
                                               f"a # comment, got {line.text!r}")
    if not _KEY.match(command["key"]):
        raise SubmitError(source, line.number, f"{command['key']!r} is not a valid command name")
    if (macro := unterminated_macro(command["value"])) is not None:
        raise SubmitError(source, line.number, f"unterminated macro {macro!r}: missing ')'")
    return line


def _command_lines(commands: Sequence[_Line]) -> dict[str, tuple[int, str]]:
    """Lower-cased command name (as htcondor2 keys it: +Foo is my.foo) → the last line
    defining it and the name as written there, for error messages."""
    lines = {}
    for line in commands:
        if command := _COMMAND.match(line.text):
            key = command["key"].lower()
            lines["my." + key[1:] if key.startswith("+") else key] = (line.number, command["key"])
    return lines


# --- one queue statement → procs ------------------------------------------------------------

_QUEUE_ARGS = re.compile(r"(?P<head>.*?)\s*(?:\b(?P<mode>in|from|matching)\b\s*(?P<rest>.*))?$",
                         re.I | re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_SLICE = re.compile(r"\[\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?\]\s*")


@dataclass(frozen=True)
class _QueueArgs:
    count: str  # as written; may hold macros. "" means 1
    names: tuple[str, ...]  # item variable names; () means Item
    mode: str  # "", "in", "from" or "matching"
    qualifier: str  # "files", "dirs" or "" after "matching"
    rest: str  # the item list, file name or globs: what follows mode, qualifier and slice
    items: slice


def _parse_queue_args(args: str, line: int, ctx: _Context) -> _QueueArgs:
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
    return _QueueArgs(count, tuple(head), mode, qualifier,
                      rest[sliced.end():] if sliced else rest, _slice_of(sliced))


def _slice_of(match: re.Match[str] | None) -> slice:
    if match is None:
        return slice(None)
    return slice(*(int(part) if part else None for part in match.groups()))


def _queue_count(queue: _QueueArgs, sub: htcondor2.Submit, line: int, ctx: _Context) -> int:
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


def _queue_items(queue: _QueueArgs, sub: htcondor2.Submit, line: int,
                 ctx: _Context) -> list[dict[str, str]]:
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


def _anchored_item_source(queue: _QueueArgs, line: int, ctx: _Context) -> str:
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


def _block_jobs(block: _Block, ctx: _Context, first_proc: int) -> list[JobSpec]:
    line = block.queue.number
    try:
        sub = htcondor2.Submit("\n".join(command.text for command in block.commands))
    except ValueError as err:
        raise ctx.error(line, f"the commands before this queue statement do not parse: {err}") \
            from None
    commands = dict(sub)
    where = _Where(ctx, _command_lines(block.commands), line)
    _refuse_macro_loops(commands, where)  # before anything expands: that would hang
    queue = _parse_queue_args(block.queue.text, line, ctx)
    count = _queue_count(queue, sub, line, ctx)
    items = _queue_items(queue, sub, line, ctx)
    if first_proc + count * len(items) > MAX_PROCS_PER_CLUSTER:
        raise ctx.error(line, f"more than {MAX_PROCS_PER_CLUSTER} procs in one cluster")
    _refuse_macro_loops({**commands, **_values_by_name(items)}, where)
    # One Submit per block whose per-proc macros are overwritten for each proc: building
    # one per proc would cost more than the expansion itself.
    template = htcondor2.Submit(commands)
    procs = ((index, item, step) for index, item in enumerate(items) for step in range(count))
    return [_job(template, commands, where, first_proc + offset, index, item, step)
            for offset, (index, item, step) in enumerate(procs)]


def _values_by_name(items: Sequence[Mapping[str, str]]) -> dict[str, str]:
    names = {name for item in items for name in item}
    return {name: " ".join(item.get(name, "") for item in items) for name in names}


def _refuse_macro_loops(values: Mapping[str, str], where: _Where) -> None:
    if cycle := macro_cycle(values):
        names = [where.lines.get(name, (0, name))[1] for name in cycle]
        raise where.ctx.error(where.lines.get(cycle[0], (where.queue_line, ""))[0],
                              "macros refer to each other in a loop: " + " -> ".join(names))


def _job(template: htcondor2.Submit, commands: Mapping[str, str], where: _Where, proc: int,
         index: int, item: Mapping[str, str], step: int) -> JobSpec:
    per_proc = {"Process": proc, "ProcId": proc, "Cluster": where.ctx.cluster,
                "ClusterId": where.ctx.cluster, "Step": step, "ItemIndex": index, "Row": index}
    for name, value in {**per_proc, **item}.items():
        template[name] = str(value)
    expanded = {}
    for key, raw in commands.items():
        if not raw.strip():
            expanded[key.lower()] = ""  # htcondor2 treats an empty value as no key at all
        elif key.lower() in _MAPPED or key.lower().startswith("my."):
            try:
                expanded[key.lower()] = template.expand(key).strip()
            except (KeyError, ValueError) as err:
                raise where.error(key.lower(), f"cannot expand its macros: {err}") from None
    custom = {key.lower(): key[3:] for key in commands if key.lower().startswith("my.")}
    return JobSpec(proc, _job_ad(expanded, custom, where, proc))


# --- translation of expanded commands into an ad --------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Turns a problem with a command into a SubmitError naming that command's line."""

    ctx: _Context
    lines: Mapping[str, tuple[int, str]]  # from _command_lines
    queue_line: int

    def error(self, key: str, problem: str) -> SubmitError:
        line, label = self.lines.get(key, (self.queue_line, key))
        return self.ctx.error(line, f"{label}: {problem}")


_MAPPED = frozenset({
    "executable", "arguments", "environment", "env", "initialdir", "initial_dir", "input",
    "output", "error", "log", "transfer_input_files", "transfer_output_files", "request_cpus",
    "request_memory", "request_disk", "requirements", "rank", "priority", "universe",
    "batch_name", "max_retries", "transfer_executable"})

_T = TypeVar("_T")


def _convert(expanded: Mapping[str, str], key: str, convert: Callable[[str], _T],
             default: _T, where: _Where) -> _T:
    raw = expanded.get(key, "")
    if not raw:
        return default
    try:
        value = convert(raw)
    except ValueError as err:
        raise where.error(key, str(err)) from None
    if isinstance(value, int) and not -CLASSAD_INT_LIMIT <= value < CLASSAD_INT_LIMIT:
        raise where.error(key, f"{raw!r} is too large")
    return value


def _job_ad(expanded: Mapping[str, str], custom: Mapping[str, str], where: _Where,
            proc: int) -> classad2.ClassAd:
    ctx = where.ctx
    universe = expanded.get("universe", "vanilla").lower()
    if universe != "vanilla":
        raise where.error("universe", f"only the vanilla universe is supported, not {universe!r}")
    iwd = _iwd(expanded, where)
    ad = classad2.ClassAd()
    ad["ClusterId"], ad["ProcId"], ad["Owner"] = ctx.cluster, proc, ctx.owner
    ad["JobUniverse"], ad["JobStatus"], ad["QDate"] = VANILLA_UNIVERSE, IDLE, ctx.qdate
    if ctx.submit_host:
        ad["User"] = f"{ctx.owner}@{ctx.submit_host}"
        ad["GlobalJobId"] = f"{ctx.submit_host}#{ctx.cluster}.{proc}#{ctx.qdate}"
    ad["Iwd"] = str(iwd)
    ad["Cmd"] = _executable(expanded, iwd, where)
    if not _convert(expanded, "transfer_executable", _boolean, True, where):
        ad["TransferExecutable"] = False
    argv = _convert(expanded, "arguments", parse_arguments, [], where)
    ad["Args"], ad["Arguments"] = argv, format_arguments(argv)
    env_key = "environment" if "environment" in expanded else "env"
    env = _convert(expanded, env_key, parse_environment, {}, where)
    ad["Env"], ad["Environment"] = [f"{k}={v}" for k, v in env.items()], format_environment(env)
    _add_files(ad, expanded, iwd, where)
    _add_resources(ad, expanded, where)
    ad["JobPrio"] = _convert(expanded, "priority", _integer, 0, where)
    ad["MaxRetries"] = _convert(expanded, "max_retries", _non_negative, 0, where)
    if batch := expanded.get("batch_name"):
        ad["JobBatchName"] = batch
    _add_custom(ad, expanded, custom, where)
    return ad


def _iwd(expanded: Mapping[str, str], where: _Where) -> Path:
    key = "initialdir" if "initialdir" in expanded else "initial_dir"
    given = expanded.get(key, "")
    iwd = Path(os.path.normpath(where.ctx.base / given)) if given else where.ctx.base
    if not iwd.is_dir():
        raise where.error(key, f"directory {str(iwd)!r} does not exist")
    return iwd


def _executable(expanded: Mapping[str, str], iwd: Path, where: _Where) -> str:
    """The executable's path; it travels with the job, so it must be a file here, unless
    `transfer_executable = false` says it is on the execute side (e.g. /usr/bin/python3)."""
    given = expanded.get("executable", "")
    if not given:
        raise where.ctx.error(where.queue_line, "no executable given before this queue statement")
    path = Path(os.path.normpath(iwd / given))  # an absolute `given` stays as it is
    if not _convert(expanded, "transfer_executable", _boolean, True, where):
        if not os.path.isabs(given):
            raise where.error("executable", f"{given!r} must be an absolute path on the "
                                            "execute side when transfer_executable = false")
        return given
    if path.is_dir():
        raise where.error("executable", f"{given!r} is a directory, not a program")
    if not path.is_file():
        where_not = "" if os.path.isabs(given) else f" in {iwd}"
        raise where.error("executable", f"{given!r} not found{where_not} (a program that "
                                        "exists only on the execute side needs "
                                        "transfer_executable = false)")
    return str(path)


def _add_files(ad: classad2.ClassAd, expanded: Mapping[str, str], iwd: Path,
               where: _Where) -> None:
    stdin = expanded.get("input", "")
    if stdin and not (iwd / stdin).exists():
        raise where.error("input", f"file {stdin!r} not found in {iwd}")
    ad["In"] = stdin or "/dev/null"
    ad["Out"] = _inside_iwd(expanded, "output", iwd, where) or "/dev/null"
    ad["Err"] = _inside_iwd(expanded, "error", iwd, where) or "/dev/null"
    if log := _inside_iwd(expanded, "log", iwd, where):
        ad["UserLog"] = os.path.normpath(iwd / log)
        if not (iwd / log).parent.is_dir():
            raise where.error("log", f"directory {str((iwd / log).parent)!r} does not exist")
    inputs = _file_list(expanded.get("transfer_input_files", ""))
    if missing := [name for name in inputs if "://" not in name and not (iwd / name).exists()]:
        raise where.error("transfer_input_files", f"{missing[0]!r} does not exist in {iwd}")
    ad["TransferInput"] = inputs
    ad["TransferOutput"] = _file_list(expanded.get("transfer_output_files", ""))


def _inside_iwd(expanded: Mapping[str, str], key: str, iwd: Path, where: _Where) -> str:
    """A file the schedd writes (output, error, log): inside the initialdir, as the schedd
    writes nowhere else."""
    name = expanded.get(key, "")
    if name and name != "/dev/null":
        try:
            below(iwd, name)
        except ValueError as err:
            raise where.error(key, f"{err}; the schedd writes a job's files there only") \
                from None
    return name


def _file_list(value: str) -> list[str]:
    return [name for name in re.split(r"[\s,]+", value) if name]


def _add_resources(ad: classad2.ClassAd, expanded: Mapping[str, str], where: _Where) -> None:
    ad["RequestCpus"] = _convert(expanded, "request_cpus", _positive, 1, where)
    ad["RequestMemory"] = _convert(expanded, "request_memory", parse_memory_mib,
                                   DEFAULT_REQUEST_MEMORY_MIB, where)
    ad["RequestDisk"] = _convert(expanded, "request_disk", parse_disk_kib,
                                 DEFAULT_REQUEST_DISK_KIB, where)
    user = _convert(expanded, "requirements", _expression, classad2.ExprTree("true"), where)
    ad["Requirements"] = classad2.ExprTree(
        f"({user}) && (TARGET.Cpus >= MY.RequestCpus) && (TARGET.Memory >= MY.RequestMemory)"
        " && (TARGET.Disk >= MY.RequestDisk)")
    ad["Rank"] = _convert(expanded, "rank", _expression, classad2.ExprTree("0.0"), where)


def _add_custom(ad: classad2.ClassAd, expanded: Mapping[str, str], custom: Mapping[str, str],
                where: _Where) -> None:
    """+Attr comes last so it may override a mapped attribute, as in condor_submit."""
    for key, attr in custom.items():
        if attr.lower() in SCHEDD_OWNED:
            raise where.error(key, f"{attr} is set by the schedd and cannot be overridden")
        if not expanded[key]:
            raise where.error(key, "no value given")
        ad[attr] = _convert(expanded, key, _expression, classad2.ExprTree("undefined"), where)
        if attr.lower() == "desired_sites" and not isinstance(ad.eval(attr), str):
            raise where.error(key, 'DESIRED_Sites must be a quoted string like "site_a,site_b"')


def _expression(text: str) -> classad2.ExprTree:
    try:
        return classad2.ExprTree(text)
    except classad2.ClassAdException:
        raise ValueError(f"{text!r} is not a valid ClassAd expression") from None


def _integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def _positive(text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text) or int(text) <= 0:
        raise ValueError(f"{text!r} is not a positive integer")
    return int(text)


def _boolean(text: str) -> bool:
    value = {"true": True, "yes": True, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise ValueError(f"{text!r} is not true or false")
    return value


def _non_negative(text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text):
        raise ValueError(f"{text!r} is not a non-negative integer")
    return int(text)
