"""`burst`: the command line of a burstwms pool (DESIGN.md, "Interface").

Exit codes: 0 success; 1 the command failed (bad file, job held, unknown id);
2 usage error or `wait` timed out; 3 the broker or a service did not answer.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from services.runtime.bus import BrokerUnavailable, RemoteError, RpcTimeout
from services.runtime.codec import decode_or_none
from services.runtime.config import ConfigError, Settings

from . import identity, output, stack

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
TERMINAL_STATES = ("completed", "held", "removed")


class Failure(click.ClickException):
    """A one-line error with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"burst: {self.message}", err=True)


def friendly(fn: Callable) -> Callable:
    """Turn infrastructure errors into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokerUnavailable as exc:
            raise Failure(str(exc), EXIT_UNAVAILABLE) from None
        except RpcTimeout as exc:
            raise Failure(f"{exc}; is the stack up? (burst up -d)", EXIT_UNAVAILABLE) from None
        except RemoteError as exc:
            raise Failure(str(exc)) from None
        except ConfigError as exc:
            raise Failure(str(exc), EXIT_USAGE) from None

    return wrapper


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None


def schedd_name(s: Settings, explicit: str | None) -> str:
    if explicit:
        return explicit
    import os

    if os.environ.get("BURST_SCHEDD"):
        return os.environ["BURST_SCHEDD"]
    try:
        from services.runtime.config import load_pool_config

        return load_pool_config(s.config_path).services.schedd_name
    except ConfigError:
        return "schedd"


def client_bus(s: Settings):
    """A bus that signs what it sends with the user's token (identity.py)."""
    from services.runtime.bus import connect

    try:
        signer = identity.signer(s)
    except identity.NoIdentity as exc:
        raise Failure(str(exc)) from None
    bus = connect(s, "cli", signer=signer)
    bus.start()
    return bus


schedd_option = click.option("--schedd", "schedd", default=None,
                             help="schedd to talk to (default: BURST_SCHEDD or the config)")
DEFAULT_TIMEOUT_S = 5.0


class JobIdType(click.ParamType):
    """CLUSTER or CLUSTER.PROC, checked before anything is sent (a usage error otherwise)."""

    name = "ID"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from services.condor.jobids import parse_job_id

        try:
            cluster, proc = parse_job_id(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return f"{cluster}" if proc is None else f"{cluster}.{proc}"


JOB_ID = JobIdType()


def rpc_timeout() -> float:
    """Seconds to wait for a service's answer: `burst --timeout S` (or BURST_TIMEOUT)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    value = root.params.get("timeout") if root is not None else None
    return DEFAULT_TIMEOUT_S if value is None else value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S,
              envvar="BURST_TIMEOUT", show_default=True, metavar="S",
              help="seconds to wait for a service to answer before saying it did not")
def cli(timeout: float) -> None:
    """burstwms: grow an HTCondor-style pool onto local processes, grids and clouds."""


# --- the stack -----------------------------------------------------------------------------


@cli.command()
@click.option("-d", "detach", is_flag=True, help="return once every service is ready")
@friendly
def up(detach: bool) -> None:
    """Start every service that is not running yet."""
    s = settings()
    from services.runtime.config import load_pool_config
    from services.runtime.rabbit import broker_answers

    load_pool_config(s.config_path)  # fail here, with the field named, not in a service log
    if not broker_answers(s):
        raise BrokerUnavailable(s.safe_url)
    made = identity.ensure_own_token(s)
    if made is not None:
        click.echo(f"your token (administrator of this pool): {made}")
    procs = stack.start(s)
    failed = stack.wait_ready(s, procs)
    for name in failed:
        click.echo(f"burst: {name} did not start; last lines of {stack.log_path(s, name)}:",
                   err=True)
        click.echo(stack.log_tail(s, name), err=True)
    if failed:
        raise Failure(f"{len(failed)} service(s) failed to start: {', '.join(failed)}")
    for state in stack.service_states(s):
        note = "started" if state.name in procs else "already running"
        click.echo(f"{state.name:<11} pid {state.pid:<8} {note}")
    if detach:
        return
    click.echo("running; Ctrl-C stops the stack")
    try:
        while all(st.alive for st in stack.service_states(s)):
            time.sleep(1)
        raise Failure("a service stopped; see the logs in " + str(s.path("logs")))
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        stack.stop(s)


@cli.command()
@friendly
def down() -> None:
    """Stop the services and local pilots (queued work stays in the broker and the schedd)."""
    s = settings()
    leftover = stack.stop(s)
    if leftover:
        raise Failure(f"still running after SIGTERM: {', '.join(leftover)}")
    click.echo("stopped")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("name")
@click.pass_context
def service(ctx: click.Context, name: str) -> None:
    """Run one service in the foreground (what compose uses): burst service NAME [--help]."""
    from .launch import launch

    known = stack.SERVICES + ("glidein", stack.CLOUD)
    if name in ("-h", "--help"):
        click.echo(ctx.get_help())
        click.echo(f"\nservices: {', '.join(known)}")
        return
    if name not in known:
        raise Failure(f"unknown service {name!r}; one of {', '.join(known)}", EXIT_USAGE)
    sys.exit(launch(name).main(ctx.args))


# --- jobs ----------------------------------------------------------------------------------



@cli.group()
def key() -> None:
    """The pool key every service signs with."""


@key.command("init")
@friendly
def key_init() -> None:
    """Make the pool key if there is none (BURST_POOL_KEY_FILE, or <state dir>/keys/pool.key)
    and print where it is: once, before services on several hosts or containers share it."""
    from services.runtime import security

    path = security.pool_key_path(settings().state_dir)
    try:
        security.load_pool_key(path, create=True)
    except (security.AuthError, OSError) as exc:
        raise Failure(str(exc)) from None
    click.echo(str(path))


@cli.group()
def token() -> None:
    """User tokens: who may submit and act on which jobs."""


@token.command("issue")
@click.argument("user")
@click.option("--admin", is_flag=True, help="may act on every owner's jobs")
@click.option("--lifetime", type=float, default=0.0, metavar="S",
              help="expires after S seconds (default: never)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write it here (default: <state dir>/tokens/USER.token)")
@friendly
def token_issue(user: str, admin: bool, lifetime: float, out: Path | None) -> None:
    """Make USER a token file (needs the pool key: administrators only)."""
    from services.runtime.security import AuthError

    try:
        path = identity.issue(settings(), user, admin=admin, lifetime_s=lifetime, out=out)
    except AuthError as exc:
        raise Failure(str(exc)) from None
    except PermissionError as exc:
        raise Failure(f"cannot write the token: {exc}") from None
    click.echo(str(path))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="print {cluster, jobs} as JSON (with --dry-run: the ads)")
@click.option("--owner", default=None,
              help="submit as this owner (administrators only; default: your token's user)")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="print the job ads it would queue (--json: as a JSON list); queue nothing")
@schedd_option
@friendly
def submit(file: Path, as_json: bool, owner: str | None, dry_run: bool,
           schedd: str | None) -> None:
    """Queue the jobs of an HTCondor submit description file, with the files they take along
    (read here, with your rights)."""
    from services.condor.submit import SubmitError

    from . import dryrun

    if dry_run:
        dryrun.run(file, as_json=as_json, owner=owner)
        return
    s = settings()
    try:
        owner = owner or identity.signer(s).principal.name
    except identity.NoIdentity as exc:
        raise Failure(str(exc)) from None
    try:
        dryrun.check(file, owner=owner)  # prints the warnings once, before anything is sent
    except SubmitError as exc:
        raise Failure(str(exc)) from None
    except OSError as exc:
        raise Failure(f"{file}: {exc.strerror}") from None
    _check_submission(file, owner)  # every check before a cluster id is taken
    name = schedd_name(s, schedd)
    timeout = rpc_timeout()
    bus = client_bus(s)
    try:
        from schemas.job import ClusterNew

        allocated = bus.call(ClusterNew(owner=owner), to=name, timeout=timeout)
        cluster = allocated.cluster
        submission = _read_submission(file, cluster, owner, allocated.inline_max_bytes)
        _stage(bus, name, submission, timeout)
        jobs = _submit(bus, name, submission.job, timeout)
    finally:
        bus.stop()
    if as_json:
        click.echo(json.dumps({"cluster": cluster, "jobs": jobs}))
    else:
        click.echo(f"{len(jobs)} job(s) submitted to cluster {cluster}.")


def _check_submission(file: Path, owner: str) -> None:
    """What `burst submit` checks before it takes a cluster id: the file, and that every
    input file can be read (Failure, exit 1, names the problem)."""
    from services.condor.submit import SubmitError, parse_submit_file

    from . import inputs

    try:
        inputs.check(parse_submit_file(file, cluster=1, owner=owner), str(file), 1)
    except (SubmitError, inputs.InputError) as exc:
        raise Failure(str(exc)) from None


@dataclass(frozen=True)
class _Submission:
    job: Any  # the JobSubmit
    inputs: Any  # inputs.Inputs: its big files still to be uploaded
    source: str


def _read_submission(file: Path, cluster: int, owner: str,
                     inline_max_bytes: int) -> _Submission:
    """The JobSubmit for `file`, its input files read (those over inline_max_bytes, when
    the schedd has object storage, only hashed); Failure (exit 1) names the problem."""
    from schemas.job import JobSubmit, ProcAd
    from services.condor.submit import SubmitError, parse_submit_file

    from . import inputs

    try:
        specs = parse_submit_file(file, cluster=cluster, owner=owner)
        found = inputs.read(specs, str(file), cluster, inline_max_bytes=inline_max_bytes)
    except (SubmitError, inputs.InputError) as exc:
        raise Failure(str(exc)) from None
    procs = [ProcAd(proc=spec.proc, ad=spec.ad_text, inputs=found.index[spec.proc])
             for spec in specs]
    return _Submission(JobSubmit(cluster=cluster, owner=owner, submit_file=str(file.absolute()),
                                 procs=procs, input_sets=found.sets,
                                 stored_inputs=found.stored()), found, str(file))


def _stage(bus: Any, schedd: str, submission: _Submission, timeout: float) -> None:
    """Put the big input files in object storage, through URLs the schedd presigns."""
    from schemas.files import StoredFile
    from schemas.job import InputStage

    from . import inputs

    files = submission.inputs.uploads()
    if not files:
        return
    job = submission.job
    stage = InputStage(cluster=job.cluster, owner=job.owner,
                       files=[StoredFile(f.sha256, f.size) for f in files.values()])
    urls = bus.call(stage, to=schedd, timeout=timeout).urls
    try:
        inputs.upload(files, urls, submission.source)
    except inputs.InputError as exc:
        raise Failure(f"{exc} (cluster {job.cluster} was not queued)") from None


def _submit(bus: Any, schedd: str, submission: Any, timeout: float) -> list[str]:
    """Send the cluster and return its job ids; if the answer is late, ask the schedd
    whether it has the cluster, so a submission that took effect is never called failed."""
    size = sum(len(data) for files in submission.input_sets for data in files.values())
    try:
        # Big submissions take the schedd longer to spool: a second more per 10 MiB.
        return bus.call(submission, to=schedd, timeout=timeout + size / 10e6).jobs
    except RpcTimeout:
        cluster = submission.cluster
        try:
            jobs = query_with(bus, [str(cluster)], schedd, timeout)
        except RpcTimeout:
            raise Failure(f"schedd {schedd} did not answer within {timeout:g}s; cluster "
                          f"{cluster} was sent but not confirmed: check with `burst q "
                          f"{cluster}` once it answers", EXIT_UNAVAILABLE) from None
    if not jobs:
        # It answers in order: a submission not handled by now was dropped at its deadline.
        raise Failure(f"schedd {schedd} did not take cluster {cluster} within {timeout:g}s; "
                      "nothing was queued (try again, or a longer --timeout)", EXIT_UNAVAILABLE)
    return [job.id for job in jobs]


def query(s: Settings, ids: tuple[str, ...], schedd: str | None) -> list:
    bus = client_bus(s)
    try:
        return query_with(bus, list(ids), schedd_name(s, schedd), rpc_timeout())
    finally:
        bus.stop()


def query_with(bus: Any, ids: list[str], schedd: str, timeout: float) -> list:
    from schemas.job import JobQuery

    return bus.call(JobQuery(ids=ids), to=schedd, timeout=timeout).jobs


@cli.command()
@click.argument("ids", nargs=-1, type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of jobs")
@schedd_option
@friendly
def q(ids: tuple[str, ...], as_json: bool, schedd: str | None) -> None:
    """Show jobs: state, exit code, where they ran, why they wait."""
    jobs = query(settings(), ids, schedd)
    if as_json:
        click.echo(json.dumps([output.job_json(j) for j in jobs]))
    else:
        output.print_jobs(jobs)


@cli.command()
@click.argument("ids", nargs=-1, required=True, type=JOB_ID)
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="give up after S seconds (exit 2)")
@schedd_option
@friendly
def wait(ids: tuple[str, ...], timeout: float | None, schedd: str | None) -> None:
    """Wait until the jobs complete: exit 0; 1 if one is held or removed; 2 on timeout."""
    s = settings()
    deadline = None if timeout is None else time.monotonic() + timeout
    with output.Progress() as progress:  # stopped before any message below
        jobs = _wait_for_end(s, ids, schedd, deadline, progress)
    if jobs is None:
        raise Failure(f"timed out after {timeout:g}s", EXIT_USAGE)
    bad = [j for j in jobs if j.state in ("held", "removed")]
    for j in bad:
        reason = f": {j.hold_reason}" if j.hold_reason else ""
        click.echo(f"job {j.id} is {j.state}{reason}", err=True)
    if bad:
        sys.exit(EXIT_FAILED)
    click.echo(f"{len(jobs)} job(s) completed")


def _wait_for_end(s: Settings, ids: tuple[str, ...], schedd: str | None,
                  deadline: float | None, progress: output.Progress) -> list | None:
    """The jobs once all completed or one is held or removed; None at the deadline."""
    while True:
        jobs = query(s, ids, schedd)
        missing = [i for i in ids if not any(j.id == i or j.id.startswith(f"{i}.") for j in jobs)]
        if missing:
            raise Failure(f"no such job: {', '.join(missing)}")
        progress.show(jobs)
        if any(j.state in ("held", "removed") for j in jobs) or \
                all(j.state == "completed" for j in jobs):
            return jobs
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic())))


def _act(action: str, ids: tuple[str, ...], reason: str, schedd: str | None) -> None:
    from schemas.job import JobAction

    s = settings()
    bus = client_bus(s)
    try:
        result = bus.call(JobAction(action=action, ids=list(ids), reason=reason),
                          to=schedd_name(s, schedd), timeout=rpc_timeout())
    finally:
        bus.stop()
    verb = {"remove": "removed", "hold": "held", "release": "released"}[action]
    if result.changed:
        click.echo(f"{verb} {len(result.changed)} job(s): {' '.join(result.changed)}")
    for job_id, why in sorted(result.skipped.items()):
        click.echo(f"job {job_id} not {verb}: {why}", err=True)
    if not result.changed:
        sys.exit(EXIT_FAILED)


def _action_command(action: str, help_text: str) -> None:
    @click.argument("ids", nargs=-1, required=True, type=JOB_ID)
    @click.option("--reason", default="", help="recorded with the job")
    @schedd_option
    @friendly
    def command(ids: tuple[str, ...], reason: str, schedd: str | None) -> None:
        _act(action, ids, reason, schedd)

    command.__doc__ = help_text
    cli.command(name={"remove": "rm"}.get(action, action))(command)


_action_command("remove", "Remove jobs (a running job is killed on its pilot).")
_action_command("hold", "Hold jobs until released (a running job is stopped).")
_action_command("release", "Release held jobs back to idle.")


# --- the pool ------------------------------------------------------------------------------


def services_status(s: Settings) -> dict[str, dict[str, Any]]:
    from services.runtime.metrics import served_url

    services: dict[str, dict[str, Any]] = {
        st.name: {"pid": st.pid, "alive": st.alive} for st in stack.service_states(s)}
    for name, state in services.items():
        url = served_url(s.state_dir, name) if state["alive"] else None
        if url:
            state["metrics"] = url
    url = stack.web_url(s)
    if url and services.get("web", {}).get("alive"):
        services["web"]["url"] = url
    url = stack.metadata_url(s)
    if url and services.get("metadata", {}).get("alive"):
        services["metadata"]["url"] = url
    if stack.CLOUD in services:
        from services.cloudspec.endpoint import read_info

        services[stack.CLOUD]["endpoint"] = (read_info(s) or {}).get("endpoint")
    return services


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON (with --watch: a line each "
              "time it changes)")
@click.option("--since", default="24h", show_default=True,
              help="fold events from this time (epoch, ISO time, or an age like 1h)")
@click.option("--watch", "-w", is_flag=True, help="keep it live from the event stream "
              "(redrawn on a terminal, printed on each change otherwise); Ctrl-C stops")
@friendly
def status(as_json: bool, since: str, watch: bool) -> None:
    """Entries, pilots and VMs by state, slots, jobs: the pool as its events tell it."""
    from services.runtime.rabbit import read_event_log
    from services.views import PoolView
    from services.views.records import event_time

    s = settings()
    start = output.parse_since(since)
    if watch:
        from .watch import watch as watch_status

        watch_status(s, start, as_json, lambda: services_status(s))
        return
    view = PoolView()
    for env in read_event_log(s, since=start, idle_timeout=0.5):
        event = decode_or_none(env)
        if event is not None:
            view.apply(event, event_time(env, event))
    result = {**view.status(), "services": services_status(s)}
    if as_json:
        click.echo(json.dumps(result))
    else:
        output.print_status(result)


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing new events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--since", default=None, help="epoch seconds, ISO time, or an age like 10m, 2h")
@click.option("--entity", multiple=True, metavar="WORD",
              help="the first word of the routing key: job, pilot, slot, entry, demand, ...")
@click.option("--entry", multiple=True, metavar="NAME", help="events of this entry")
@click.option("--job", multiple=True, metavar="ID", help="this job (12.3) or cluster (12)")
@click.option("--owner", multiple=True, metavar="USER", help="events of this owner's jobs")
@click.option("--key", multiple=True, metavar="GLOB", help="routing key glob, e.g. 'pilot.*'")
@friendly
def events(follow: bool, as_json: bool, since: str | None, entity: tuple[str, ...],
           entry: tuple[str, ...], job: tuple[str, ...], owner: tuple[str, ...],
           key: tuple[str, ...]) -> None:
    """The event stream, one line per event. Filters given more than once match any of their
    values; different filters must all match."""
    from services.runtime.rabbit import read_event_log
    from services.views import EventFilter

    s = settings()
    start = output.parse_since(since) if since else None
    wanted = EventFilter.of(entity, entry, job, owner, key)
    try:
        for env in read_event_log(s, since=start, follow=follow, idle_timeout=0.5):
            event = decode_or_none(env)
            if wanted and not wanted.matches(env.routing_key, event):
                continue
            click.echo(output.event_json(env, event) if as_json else output.event_line(env, event))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        sys.stderr.close()


@cli.command()
@click.argument("job_id", metavar="ID", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="print the spans as JSON")
@schedd_option
@friendly
def trace(job_id: str, as_json: bool, schedd: str | None) -> None:
    """A job's flow as a span tree: submission, the decision and launch of its pilot, the
    pilot's boot and registration, the match, execution, and the return of its output
    (read from the local span store; ID may be a cluster)."""
    from services.runtime.spanstore import job_trace

    from . import traces

    s = settings()
    trace_id, spans = job_trace(s.state_dir, job_id, schedd_name(s, schedd))
    if not spans:
        raise Failure(f"no trace of {job_id} in {s.state_dir} (spans arrive a second or so "
                      "after they end; with OTEL_TRACES_EXPORTER set without `burst`, they "
                      "went only where it says)")
    if as_json:
        click.echo(traces.as_json(trace_id, job_id, spans))
    else:
        traces.print_tree(trace_id, job_id, spans)


@cli.command()
@click.argument("name", type=click.Choice(["negotiate", "bus"]))
@click.option("--json", "as_json", is_flag=True, help="one line: a flat JSON object")
@click.option("--jobs", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="negotiate: idle jobs")
@click.option("--autoclusters", type=click.IntRange(min=1), default=100, show_default=True,
              help="negotiate: autoclusters they fall in")
@click.option("--slots", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="negotiate: pilots' partitionable slots")
@friendly
def bench(name: str, as_json: bool, jobs: int, autoclusters: int, slots: int) -> None:
    """Benchmarks: negotiate (matchmaking passes), bus (runtime vs raw pika)."""
    import importlib

    from .launch import launch

    if name == "negotiate" and jobs < autoclusters:
        raise click.BadParameter("needs at least one job per autocluster", param_hint="--jobs")
    module = (launch("negotiator", "bench") if name == "negotiate"
              else importlib.import_module("services.runtime.bench"))
    result = (module.run(jobs=jobs, autoclusters=autoclusters, slots=slots)
              if name == "negotiate" else module.run(settings()))
    click.echo(json.dumps(result) if as_json else module.format_report(result))


def main() -> None:
    cli(prog_name="burst")


if __name__ == "__main__":
    main()
