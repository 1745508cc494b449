"""One proc's expanded submit commands → its job ClassAd, with HTCondor's attribute names.

    expanded {command: text} ─┬─ the program: universe, Iwd, Cmd, Arguments | Args
                              ├─ its environment: Environment | Env (+ getenv.py)
                              ├─ its files: In, Out, Err, UserLog, TransferInput, TransferOutput
                              ├─ what it asks for: Request*, Requirements, Rank
                              ├─ policy.py: hold, retries, policy expressions, groups, deferral
                              └─ +Attr / MY.Attr, last (they may override any of the above)

Values have the shapes condor_submit gives them (a job ad printed by `burst submit
--dry-run --json` reads like condor_submit -dry-run's): lists of files are
"a,b" strings, arguments and environment are HTCondor's raw strings.
Differences, on purpose: a relative executable is found from the submit file's
directory (condor_submit: its working directory), Requirements asks for Cpus,
Memory and Disk but not the submit host's Arch and OpSys (pilots are
heterogeneous), and URLs in transfer_input_files are limited to the schemes
the pilot fetches. Pure but for checking that the files a job names exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import classad2

from . import commands, getenv, jobad, policy
from .syntax import (
    format_arguments,
    format_environment,
    format_old_arguments,
    format_old_environment,
    is_new_syntax,
    parse_arguments,
    parse_disk_kib,
    parse_environment,
    parse_memory_mib,
)
from .where import Where, boolean, convert, expression, integer

DEFAULT_REQUEST_MEMORY_MIB = 128  # HTCondor's JOB_DEFAULT_REQUESTMEMORY
DEFAULT_REQUEST_DISK_KIB = 1024 * 1024
VANILLA_UNIVERSE = 5
IDLE = 1
# Attributes the schedd owns: a +Attr overriding them would corrupt the queue.
SCHEDD_OWNED = frozenset({"clusterid", "procid", "owner", "qdate", "jobstatus",
                          "globaljobid", "user", "jobuniverse"})
FETCHED_SCHEMES = ("http", "https", "s3")  # the pilot fetches these itself
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTAINER_UNIVERSES = ("container", "docker")
SHELL = "/bin/sh"


def job_ad(expanded: Mapping[str, str], custom: Mapping[str, str], where: Where,
           proc: int) -> classad2.ClassAd:
    ctx = where.ctx
    _check_universe(expanded, where)
    iwd = _iwd(expanded, where)
    ad = classad2.ClassAd()
    ad["ClusterId"], ad["ProcId"], ad["Owner"] = ctx.cluster, proc, ctx.owner
    ad["JobUniverse"], ad["JobStatus"], ad["QDate"] = VANILLA_UNIVERSE, IDLE, ctx.qdate
    ad["EnteredCurrentStatus"] = ctx.qdate
    # The counters policy expressions read (OnExitRemove, PeriodicRemove, ...), as
    # condor_submit starts them.
    for counter in ("NumJobStarts", "NumJobCompletions", "NumRestarts", "NumSystemHolds"):
        ad[counter] = 0
    ad["ExitBySignal"] = False
    if ctx.submit_host:
        ad["User"] = f"{ctx.owner}@{ctx.submit_host}"
        ad["GlobalJobId"] = f"{ctx.submit_host}#{ctx.cluster}.{proc}#{ctx.qdate}"
    ad["Iwd"] = str(iwd)
    ad[jobad.SUBMIT_DIR] = str(ctx.base)
    _add_program(ad, expanded, where)
    _add_environment(ad, expanded, where)
    _add_files(ad, expanded, iwd, where)
    _add_resources(ad, expanded, where)
    ad["JobPrio"] = convert(expanded, "priority", integer, 0, where)
    for key, attr in (("batch_name", "JobBatchName"), ("description", "JobDescription")):
        if text := expanded.get(key, "").strip().strip('"'):
            ad[attr] = text
    policy.add_policy(ad, expanded, where)
    _add_custom(ad, expanded, custom, where)
    return ad


def _check_universe(expanded: Mapping[str, str], where: Where) -> None:
    universe = expanded.get("universe", "vanilla").strip().lower()
    if universe in ("vanilla", "5"):
        return
    if universe in _CONTAINER_UNIVERSES:
        where.warn("universe", f"the {universe} universe is not served: the job runs as "
                               "vanilla, on the pilot's host, without a container")
        return
    raise where.error("universe", f"only the vanilla universe is served here, not {universe!r}")


def _iwd(expanded: Mapping[str, str], where: Where) -> Path:
    given = expanded.get("initialdir", "")
    iwd = Path(os.path.normpath(where.ctx.base / given)) if given else where.ctx.base
    if not iwd.is_dir():
        raise where.error("initialdir", f"directory {str(iwd)!r} does not exist")
    return iwd


# --- the program -----------------------------------------------------------------------------


def _add_program(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    if shell := expanded.get("shell", ""):
        for other in ("executable", "arguments"):
            if expanded.get(other):
                raise where.error(other, "give either shell or executable and arguments, "
                                         "not both")
        ad["Cmd"], ad["TransferExecutable"] = SHELL, False
        ad["Arguments"] = format_arguments(["-c", shell])
        return
    ad["Cmd"] = _executable(ad, expanded, where)
    text = expanded.get("arguments", "")
    argv = convert(expanded, "arguments", parse_arguments, [], where)
    if text and not is_new_syntax(text):
        ad["Args"] = format_old_arguments(argv)
    else:
        ad["Arguments"] = format_arguments(argv)


def _executable(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> str:
    given = expanded.get("executable", "")
    if not given:
        raise where.ctx.error(where.queue_line,
                              "no executable (or shell) given before this queue statement")
    # In the container universes an absolute executable is the image's own, as HTCondor
    # assumes there; elsewhere it travels with the job unless the file says otherwise.
    in_image = (expanded.get("universe", "").strip().lower() in _CONTAINER_UNIVERSES
                and os.path.isabs(given))
    if not convert(expanded, "transfer_executable", boolean, not in_image, where):
        ad["TransferExecutable"] = False
        return given  # found on the pilot, as condor_submit leaves it unresolved
    # It travels with the job (the CLI reads it), so it must be a program here: an absolute
    # path that exists only on the execute side needs transfer_executable = false.
    base = where.ctx.base
    path = Path(os.path.normpath(base / given))  # an absolute `given` stays as it is
    if path.is_dir():
        raise where.error("executable", f"{given!r} is a directory, not a program")
    if not path.is_file():
        found_from = "" if os.path.isabs(given) else (
            f" in {base} (a relative executable is found from the submit file's directory, "
            "not from initialdir)")
        raise where.error("executable", f"{given!r} not found{found_from}; a program that "
                                        "exists only on the execute side needs "
                                        "transfer_executable = false")
    return str(path)


def _add_environment(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    env = convert(expanded, "environment", parse_environment, {}, where)
    # condor_submit writes the old syntax (Env) when `env` is given in it, even beside an
    # `environment` that wins; and with either, getenv leaves out values Env cannot carry.
    old_syntax = bool(expanded.get("env")) and not is_new_syntax(expanded["env"])
    if selection := convert(expanded, "getenv", getenv.parse, None, where):
        taken = getenv.select(selection, where.ctx.environ, already=set(env),
                              v1=bool(expanded.get("environment")))
        env.update(taken.env)
        if taken.kept_back:
            where.warn("getenv", f"not copied: {', '.join(taken.kept_back)} (the pool's own "
                                 "variables never go to jobs)")
        if taken.secret:
            where.warn("getenv", f"not copied, as they look secret: {', '.join(taken.secret)}"
                                 " (name them exactly in the getenv list to send them)")
    env = dict(sorted(env.items()))  # condor_submit writes them sorted by name
    if old_syntax:
        ad["Env"], ad["EnvDelim"] = format_old_environment(env), ";"
    else:
        ad["Environment"] = format_environment(env)


# --- files -----------------------------------------------------------------------------------


def _add_files(ad: classad2.ClassAd, expanded: Mapping[str, str], iwd: Path,
               where: Where) -> None:
    stdin = expanded.get("input", "")
    if stdin and stdin != "/dev/null" and not (iwd / stdin).exists():
        raise where.error("input", f"file {stdin!r} not found in {iwd}")
    ad["In"] = stdin or "/dev/null"
    ad["Out"] = _inside_iwd(expanded, "output", iwd, where) or "/dev/null"
    ad["Err"] = _inside_iwd(expanded, "error", iwd, where) or "/dev/null"
    if log := _inside_iwd(expanded, "log", iwd, where):
        ad["UserLog"] = os.path.normpath(iwd / log)
        if not (iwd / log).parent.is_dir():
            raise where.error("log", f"directory {str((iwd / log).parent)!r} does not exist")
    if inputs := _file_list(expanded.get("transfer_input_files", "")):
        for name in inputs:
            _check_input(name, iwd, where)
        ad["TransferInput"] = ",".join(inputs)
    outputs = expanded.get("transfer_output_files", "")
    if outputs.strip() == '""':
        ad["TransferOutput"] = ""  # condor_submit's special case: transfer nothing back
    elif names := _file_list(outputs):
        ad["TransferOutput"] = ",".join(names)


def _inside_iwd(expanded: Mapping[str, str], key: str, iwd: Path, where: Where) -> str:
    """A file the schedd writes (output, error, log): inside the initialdir, or the submit
    file's directory when the initialdir is below it (jobad.file_root); nowhere else."""
    name = expanded.get(key, "")
    if name and name != "/dev/null":
        probe = classad2.ClassAd({"Iwd": str(iwd), jobad.SUBMIT_DIR: str(where.ctx.base)})
        try:
            jobad.file_root(probe, name)
        except ValueError as err:
            raise where.error(key, f"{err}; the schedd writes a job's files there only") \
                from None
    return name


def _file_list(value: str) -> list[str]:
    """condor_submit's file lists: comma separated, each name trimmed; `""` is empty."""
    if value.strip() == '""':
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def _check_input(name: str, iwd: Path, where: Where) -> None:
    if url := _URL.match(name):
        scheme = url[1].lower()
        if scheme not in FETCHED_SCHEMES:
            raise where.error("transfer_input_files", f"{name!r}: the {scheme}:// scheme is "
                              "not served here (http://, https:// and s3:// are)")
        return
    if not (iwd / name).exists():
        raise where.error("transfer_input_files", f"{name!r} does not exist in {iwd}")


# --- what the job asks for -------------------------------------------------------------------


def _add_resources(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    ad["RequestCpus"] = convert(expanded, "request_cpus", _cpus, 1, where)
    ad["RequestMemory"] = convert(expanded, "request_memory", _sized(parse_memory_mib),
                                  DEFAULT_REQUEST_MEMORY_MIB, where)
    ad["RequestDisk"] = convert(expanded, "request_disk", _sized(parse_disk_kib),
                                DEFAULT_REQUEST_DISK_KIB, where)
    clauses = [f"({convert(expanded, 'requirements', expression, 'true', where)})",
               "(TARGET.Cpus >= MY.RequestCpus)", "(TARGET.Memory >= MY.RequestMemory)",
               "(TARGET.Disk >= MY.RequestDisk)"]
    for key, name in _custom_resources(expanded, where):
        attr = f"Request{name}"
        ad[attr] = convert(expanded, key, expression, classad2.ExprTree("0"), where)
        value = ad.eval(attr)
        if isinstance(value, str):
            if value:
                clauses.append(f"regexp(MY.{attr}, TARGET.{name})")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value > 0:
            clauses.append(f"(TARGET.{name} >= MY.{attr})")  # none for a request of 0
    ad["Requirements"] = classad2.ExprTree(" && ".join(clauses))
    ad["Rank"] = convert(expanded, "rank", expression, classad2.ExprTree("0.0"), where)


def _custom_resources(expanded: Mapping[str, str], where: Where) -> list[tuple[str, str]]:
    """(command, resource name) for request_gpus and request_<name>, as condor_submit names
    them: request_gpus is RequestGPUs, any other keeps the case it was written in."""
    found = []
    for key in sorted(expanded):
        if key == "request_gpus":
            found.append((key, "GPUs"))
        elif _is_custom_request(key):
            name = where.lines.get(key, (0, key))[1][len("request_"):]
            if len(name) < 2 or name.startswith("_"):
                where.warn(key, "ignored: a resource name has at least 2 characters and does "
                                "not start with _")
                continue
            found.append((key, name))
    return found


def _is_custom_request(key: str) -> bool:
    command = commands.lookup(key)
    return command is not None and command.prefix and command.name == "request_"


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*")
_BARE_NAME = re.compile(r"\s*[A-Za-z_][\w.]*\s*")


def _cpus(text: str) -> int | classad2.ExprTree:
    if _NUMBER.fullmatch(text):
        if not re.fullmatch(r"\s*\+?\d+\s*", text) or int(text) <= 0:
            raise ValueError(f"{text!r} is not a positive integer")
        return int(text)
    return _request_expression(text, "a positive integer")


def _sized(parse: Callable[[str], int]) -> Callable[[str], int | classad2.ExprTree]:
    def size_or_expression(text: str) -> int | classad2.ExprTree:
        try:
            return parse(text)
        except ValueError:
            if re.fullmatch(r"[\s\d.+-]*[A-Za-z]*\s*", text):
                raise  # a number with a bad unit or value, not an expression
            return _request_expression(text, "a size")
    return size_or_expression


def _request_expression(text: str, what: str) -> classad2.ExprTree:
    """condor_submit keeps a request that is not a plain number as an expression, e.g.
    ifThenElse(MemoryUsage =!= undefined, MemoryUsage * 3/2, 2048); a bare name, or one
    that can only be something else than a positive number, is a mistake instead."""
    expr = expression(text)
    if _BARE_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not {what}")
    value = expr.eval()
    # classad2.Value (Undefined, Error) is an IntEnum: test it before trusting numbers.
    if isinstance(value, classad2.Value):
        return expr  # depends on attributes known only later, like MemoryUsage
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{text!r} is not {what}")
    return expr


def _add_custom(ad: classad2.ClassAd, expanded: Mapping[str, str], custom: Mapping[str, str],
                where: Where) -> None:
    """+Attr comes last so it may override a mapped attribute, as in condor_submit."""
    for key, attr in custom.items():
        if attr.lower() in SCHEDD_OWNED:
            raise where.error(key, f"{attr} is set by the schedd and cannot be overridden")
        if not expanded[key]:
            raise where.error(key, "no value given")
        ad[attr] = convert(expanded, key, expression, classad2.ExprTree("undefined"), where)
        if attr.lower() == "desired_sites" and not isinstance(ad.eval(attr), str):
            raise where.error(key, 'DESIRED_Sites must be a quoted string like "site_a,site_b"')
