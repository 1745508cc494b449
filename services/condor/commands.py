"""Every HTCondor submit command, and what burstwms does with it: the one table.

    jobs.sub ──names──▶ lookup() ──▶ Command(disposition, attrs, note)
                                       │
           supported ── translated into the job ad (translate.py, policy.py)
           warned ───── accepted; a warning at submit names it (and the ad may record it)
           refused ──── the file is refused, naming the line
           quiet ────── changes nothing here (e.g. e-mail, file transfer modes): ignored

Names are case-insensitive, as in condor_submit; `aliases` are the other spellings
condor_submit accepts (mostly the job attribute's own name, `RequestMemory = 2048`).
A row with `prefix=True` covers a family (`cron_*`, `request_*`). The README's
table of submit commands is rendered from this one (`markdown_table`) and a test
keeps the two equal. Pure data; no I/O.

Commands HTCondor does not know are macros ($(name)), as in condor_submit; one
that nothing refers to gets condor_submit's "unused, is it a typo?" warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .where import BOOLEANS


class Disposition(Enum):
    SUPPORTED = "supported"
    WARNED = "warned"
    REFUSED = "refused"
    QUIET = "quiet"


SUPPORTED, WARNED, REFUSED, QUIET = Disposition

# Accepted into the ad now, acted on once another part of the pool serves it. Flip to
# SUPPORTED (and regenerate the README table) when that lands:
POLICY = SUPPORTED  # the schedd evaluates job policy expressions (services/schedd/policy.py)
FAIR_SHARE = SUPPORTED  # the negotiator uses accounting groups and concurrency limits


@dataclass(frozen=True)
class Command:
    name: str  # canonical, lower case; for a family, its prefix ("cron_")
    disposition: Disposition
    note: str  # what happens here: the README table's last column, and the warning text
    attrs: tuple[str, ...] = ()  # job ad attributes it sets (HTCondor's names)
    aliases: tuple[str, ...] = ()
    prefix: bool = False
    shown: str = ""  # how the README names it, where the name alone would puzzle
    default: str = ""  # condor_submit's default: written out, it changes nothing to warn about

    @property
    def label(self) -> str:
        if self.shown:
            return self.shown
        return " / ".join(f"{name}*" if self.prefix else name
                          for name in (self.name, *self.aliases))

    def is_default(self, value: str) -> bool:
        """`stream_output = false` asks for what happens anyway: no warning, no refusal."""
        return bool(self.default) and (BOOLEANS.get(value.strip().lower())
                                       == BOOLEANS[self.default])


def _rows(disposition: Disposition, note: str, *names: str,
          default: str = "") -> tuple[Command, ...]:
    return tuple(Command(name, disposition, note, default=default) for name in names)


_BASIC = (
    Command("executable", SUPPORTED, "relative paths are found from the submit file's "
            "directory (condor_submit: its working directory)", ("Cmd",), ("cmd",)),
    Command("arguments", SUPPORTED, "both syntaxes; the new one (in double quotes) sets "
            "Arguments, the old one Args", ("Arguments", "Args"), ("args",)),
    Command("shell", SUPPORTED, "runs the command line with /bin/sh -c instead of an "
            "executable", ("Cmd", "Arguments", "TransferExecutable")),
    Command("environment", SUPPORTED, "both syntaxes; `env` with the old syntax sets Env",
            ("Environment", "Env"), ("env",)),
    Command("getenv", SUPPORTED, "true, or HTCondor 10's list of names and patterns (!NAME "
            "excludes); copies the submitter's environment at submit time, but never the "
            "pool's own variables, and secret-looking ones only when named exactly",
            ("Environment",), ("get_env",)),
    Command("input", SUPPORTED, "stdin, sent with the job", ("In",), ("stdin",)),
    Command("output", SUPPORTED, "stdout, written back; inside the initial directory or the "
            "submit file's (the schedd writes nowhere else)", ("Out",),
            ("stdout",)),
    Command("error", SUPPORTED, "stderr, written back; inside the initial directory or the "
            "submit file's", ("Err",),
            ("stderr",)),
    Command("log", SUPPORTED, "the job's user log, HTCondor's event format; inside the "
            "initial directory or the submit file's, in a directory that exists", ("UserLog",),
            ("userlog",)),
    Command("initialdir", SUPPORTED, "relative to the submit file's directory", ("Iwd",),
            ("initial_dir", "iwd", "job_iwd")),
    Command("transfer_input_files", SUPPORTED, "files must exist at submit and are sent with "
            "the job (big ones through the pool's object storage); http://, https:// and "
            "s3://BUCKET/KEY URLs are fetched by the pilot before the job starts, "
            "`URL#sha256=HEX` checks what arrives, s3:// needs the pool's object storage; "
            "other URL schemes are refused",
            ("TransferInput",), ("transferinputfiles",)),
    Command("transfer_output_files", SUPPORTED, '`""` transfers nothing back',
            ("TransferOutput",), ("transferoutputfiles",)),
    Command("transfer_executable", SUPPORTED, "false: the executable is found on the pilot",
            ("TransferExecutable",), ("transferexecutable",)),
    Command("universe", SUPPORTED, "vanilla; container and docker run as vanilla with a "
            "warning; every other universe is refused", ("JobUniverse",)),
    Command("queue", SUPPORTED, "`queue`, `queue N`, `in`/`from`/`matching`, slices; an item "
            "variable named like a command (`queue arguments from args.txt`) sets it"),
    Command("hold", SUPPORTED, "true queues the job held (JobStatus 5, HoldReasonCode 15)",
            ("JobStatus", "HoldReason", "HoldReasonCode")),
    Command("batch_name", SUPPORTED, "", ("JobBatchName",)),
    Command("description", SUPPORTED, "", ("JobDescription",)),
    Command("priority", SUPPORTED, "orders one owner's jobs", ("JobPrio",),
            ("prio", "jobprio")),
)

_MATCHMAKING = (
    Command("request_cpus", SUPPORTED, "a whole number or an expression", ("RequestCpus",),
            ("requestcpus",)),
    Command("request_memory", SUPPORTED, "MiB; K/M/G/T units; or an expression",
            ("RequestMemory",), ("requestmemory",)),
    Command("request_disk", SUPPORTED, "KiB; K/M/G/T units; or an expression",
            ("RequestDisk",), ("requestdisk",)),
    Command("request_gpus", SUPPORTED, "the job only matches slots with that many GPUs free "
            "(entries declare them: gpus = N) and its claim takes them",
            ("RequestGPUs",), ("requestgpus",)),
    Command("request_cpu", WARNED, "not a submit command: did you mean request_cpus?"),
    Command("request_gpu", WARNED, "not a submit command: did you mean request_gpus?"),
    *_rows(WARNED, "not a submit command: did you mean gpus_minimum_memory?",
           "request_gpu_memory", "request_gpus_memory"),
    Command("request_", SUPPORTED, "custom resources: request_<name> sets Request<name>; the "
            "job only matches slots with that much <name> free (entries declare them: "
            "resources = { Boats = 2 }) and its claim takes it", ("Request<name>",),
            prefix=True),
    Command("requirements", SUPPORTED, "ANDed with the resource requests",
            ("Requirements",)),
    Command("rank", SUPPORTED, "", ("Rank",), ("preferences",)),
    Command("+", SUPPORTED, "any ClassAd expression, applied last", ("<Attr>",), ("my.",),
            prefix=True, shown="+Attr / MY.Attr"),
)

_UNDEFINED = "; one that is Undefined holds the job (HoldReasonCode 5), as HTCondor does"
_PERIODIC = "evaluated by the schedd every [services] periodic_interval_s (60 s)"

_POLICY = (
    Command("on_exit_remove", POLICY, "evaluated when a run ends: false puts the job back to "
            "idle to run again" + _UNDEFINED, ("OnExitRemove",), ("onexitremove",)),
    Command("on_exit_hold", POLICY, "evaluated when a run ends: true holds the job "
            "(HoldReasonCode 3)" + _UNDEFINED, ("OnExitHold",), ("onexithold",)),
    Command("periodic_remove", POLICY, f"{_PERIODIC} in any state: true removes the job"
            + _UNDEFINED, ("PeriodicRemove",), ("periodicremove",)),
    Command("periodic_hold", POLICY, f"{_PERIODIC} unless held: true holds the job "
            "(HoldReasonCode 3), killing a running one" + _UNDEFINED, ("PeriodicHold",),
            ("periodichold",)),
    Command("periodic_release", POLICY, f"{_PERIODIC} while held (not held by `burst hold`): "
            "true releases the job", ("PeriodicRelease",), ("periodicrelease",)),
    *(Command(name, POLICY, "the held job's HoldReason / HoldReasonSubCode", (attr,),
              (attr.lower(),))
      for name, attr in (("on_exit_hold_reason", "OnExitHoldReason"),
                         ("on_exit_hold_subcode", "OnExitHoldSubCode"),
                         ("periodic_hold_reason", "PeriodicHoldReason"),
                         ("periodic_hold_subcode", "PeriodicHoldSubCode"))),
    Command("max_retries", POLICY, "folded into OnExitRemove as condor_submit does: a failed "
            "job runs again up to that many more times", ("JobMaxRetries", "OnExitRemove"),
            ("jobmaxretries",)),
    Command("retry_until", POLICY, "folded into OnExitRemove as condor_submit does",
            ("OnExitRemove",)),
    Command("success_exit_code", POLICY, "folded into OnExitRemove: the exit code that ends "
            "the retries", ("JobSuccessExitCode", "OnExitRemove"), ("jobsuccessexitcode",)),
    Command("periodic_vacate", WARNED, "ignored: jobs are not vacated here"),
)

_FAIR_SHARE = (
    Command("accounting_group", FAIR_SHARE, "AccountingGroup = group.user is the fair-share "
            "principal; quotas from [[accounting_group]] (one level)",
            ("AcctGroup", "AccountingGroup"),
            ("accountinggroup",)),
    Command("accounting_group_user", FAIR_SHARE, "the user part of the principal; default: "
            "the owner",
            ("AcctGroupUser", "AccountingGroup"), ("acctgroupuser",)),
    Command("nice_user", FAIR_SHARE, "the nice-user accounting group, as HTCondor 9+ does: "
            "it gets only what nobody else wants",
            ("NiceUser", "AcctGroup", "AccountingGroup"), ("niceuser",), default="false"),
    Command("concurrency_limits", FAIR_SHARE, "honoured by the negotiator; limits from "
            "[concurrency_limits], default [negotiator] concurrency_limit_default",
            ("ConcurrencyLimits",)),
    Command("concurrency_limits_expr", FAIR_SHARE, "honoured when it reads only the job's "
            "own attributes", ("ConcurrencyLimits",)),
)

_DEFERRAL = (
    Command("deferral_time", SUPPORTED, "the job stays idle, no demand and not matched, until "
            "then (a time or an expression, e.g. QDate + 3600)", ("DeferralTime",),
            ("deferraltime",)),
    Command("deferral_window", WARNED, "recorded; a job that starts late still runs (HTCondor "
            "holds one that misses its window)", ("DeferralWindow",), ("deferralwindow",)),
    Command("deferral_prep_time", WARNED, "recorded; the job is matched from its deferral time "
            "on, not before", ("DeferralPrepTime",), ("deferralpreptime",)),
    *(Command(name, WARNED, "recorded; the job runs once, at once, not on the schedule",
              (attr,), (attr.lower(),))
      for name, attr in (("cron_minute", "CronMinute"), ("cron_hour", "CronHour"),
                         ("cron_day_of_month", "CronDayOfMonth"), ("cron_month", "CronMonth"),
                         ("cron_day_of_week", "CronDayOfWeek"))),
    Command("cron_window", WARNED, "recorded", ("DeferralWindow",), ("cronwindow",)),
    Command("cron_prep_time", WARNED, "recorded", ("DeferralPrepTime",), ("cronpreptime",)),
)

_NOT_SERVED = (
    *_rows(WARNED, "ignored: the job runs on the pilot's host, without the container",
           "container_image", "docker_image", "docker_network_type", "docker_pull_policy",
           "container_target_dir", "container_service_names", "mount_under_scratch"),
    *_rows(WARNED, "ignored: the job runs on the pilot's host, without the container",
           "docker_override_entrypoint", default="false"),
    *_rows(WARNED, "ignored: the job runs on the pilot's host, without the container",
           "transfer_container", default="true"),
    *_rows(WARNED, "ignored: the pilot stops jobs with SIGTERM, then SIGKILL",
           "remove_kill_sig", "hold_kill_sig", "kill_sig_timeout", "job_max_vacate_time"),
    *_rows(WARNED, "ignored: the pilot stops jobs with SIGTERM, then SIGKILL",
           "want_graceful_removal", default="false"),
    Command("kill_sig", WARNED, "ignored: the pilot stops jobs with SIGTERM, then SIGKILL",
            aliases=("killsig",)),
    *(Command(name, WARNED, "ignored: output and error come back when the job ends",
              aliases=(alias,), default="false")
      for name, alias in (("stream_output", "streamout"), ("stream_error", "streamerr"),
                          ("stream_input", "streamin"))),
    *_rows(WARNED, "ignored: standard streams are always transferred", "transfer_input",
           "transfer_output", "transfer_error", default="true"),
    *_rows(WARNED, "ignored: outputs are written into the initial directory under their own "
           "names", "transfer_output_remaps", "output_destination"),
    *_rows(WARNED, "ignored: outputs are written into the initial directory under their own "
           "names", "preserve_relative_paths", default="false"),
    *_rows(WARNED, "ignored: no time limit is enforced", "allowed_job_duration",
           "allowed_execute_duration"),
    *_rows(WARNED, "ignored: no transfer size limit but the pool's own (64 MiB per job "
                   "without object storage; url_max_bytes for URLs)",
           "max_transfer_input_mb", "max_transfer_output_mb"),
    *_rows(WARNED, "ignored: no self-checkpointing", "checkpoint_exit_code",
           "transfer_checkpoint_files", "checkpoint_destination"),
    *_rows(WARNED, "ignored: no credentials are sent to pilots", "use_x509userproxy",
           "use_scitokens", "use_scitoken", default="false"),
    *_rows(WARNED, "ignored: no credentials are sent to pilots", "x509userproxy",
           "scitokens_file",
           "use_oauth_services", "send_credential", "aws_access_key_id_file",
           "aws_secret_access_key_file", "aws_region", "s3_access_key_id_file",
           "s3_secret_access_key_file", "gs_access_key_id_file", "gs_secret_access_key_file"),
    *_rows(WARNED, "ignored: GPU properties are not matched yet", "require_gpus",
           "gpus_minimum_memory", "gpus_minimum_capability", "gpus_maximum_capability",
           "gpus_minimum_runtime", "cuda_version"),
    *_rows(WARNED, "ignored", "transfer_plugins", "public_input_files", "noop_job_exit_code",
           "noop_job_exit_signal", "manifest_dir"),
    *_rows(WARNED, "ignored", "log_xml", "encrypt_execute_directory", "manifest",
           default="false"),
)

_REFUSED = (
    Command("include", REFUSED, "inline the commands instead"),
    Command("noop_job", REFUSED, "a no-op job would run here: leave it out of the file",
            default="false"),
    *_rows(REFUSED, "write `arguments`/`environment` in the new syntax instead",
           "arguments2", "environment2"),
)

_QUIET = (
    *_rows(QUIET, "e-mail is not sent", "notification", "email_attributes"),
    Command("notify_user", QUIET, "e-mail is not sent", aliases=("notifyuser",)),
    Command("should_transfer_files", QUIET, "files are always transferred",
            aliases=("shouldtransferfiles",)),
    Command("when_to_transfer_output", QUIET, "files are always transferred",
            aliases=("whentotransferoutput",)),
    *_rows(QUIET, "files are always transferred", "skip_filechecks", "copy_to_spool",
           "encrypt_input_files", "encrypt_output_files", "dont_encrypt_input_files",
           "dont_encrypt_output_files", "erase_output_and_error_on_restart"),
    *_rows(QUIET, "no meaning on a pilot", "job_lease_duration", "keep_claim_idle",
           "image_size", "disk_usage", "memory_usage", "next_job_start_delay",
           "max_job_retirement_time", "maxjobretirementtime", "core_size", "coresize",
           "stack_size", "want_io_proxy",
           "want_remote_io", "starter_debug", "starter_log", "run_as_owner", "load_profile",
           "suspend_job_at_exec", "leave_in_queue", "skip_if_dataflow",
           "allow_arguments_v1", "allow_environment_v1"),
    *_rows(QUIET, "bookkeeping only", "job_machine_attrs", "job_machine_attrs_history_length",
           "job_ad_information_attrs", "ulog_execute_attrs", "submit_event_notes",
           "submit_event_user_notes", "match_list_length", "batch_id", "jobset",
           "max_materialize", "max_idle", "materialize_max_idle", "dagman_log",
           "dagman_job_id", "dag_node_name"),
    *_rows(QUIET, "only meaningful in a refused universe", "grid_resource", "machine_count",
           "node_count", "jar_files", "java_vm_args", "java_vm_arguments",
           "parallel_script_shadow", "parallel_script_starter", "wantparallelscheduling",
           "append_files", "compress_files", "fetch_files", "local_files", "file_remaps"),
    *(Command(name, QUIET, "only meaningful in a refused universe", prefix=True)
      for name in ("ec2_", "gce_", "azure_", "arc_", "batch_", "cloud_label_", "vm_", "xen_",
                   "globus_", "nordugrid_", "cream_", "remote_", "tool_daemon_", "buffer_")),
)

COMMANDS: tuple[Command, ...] = (*_BASIC, *_MATCHMAKING, *_POLICY, *_FAIR_SHARE, *_DEFERRAL,
                                 *_NOT_SERVED, *_REFUSED, *_QUIET)

_EXACT = {name: command for command in COMMANDS if not command.prefix
          for name in (command.name, *command.aliases)}
_PREFIXES = sorted(((name, command) for command in COMMANDS if command.prefix
                    for name in (command.name, *command.aliases)),
                   key=lambda pair: -len(pair[0]))


def lookup(name: str) -> Command | None:
    """The table's row for a command as written (any case), or None for a macro."""
    key = name.lower()
    if key in _EXACT:
        return _EXACT[key]
    return next((command for prefix, command in _PREFIXES
                 if key.startswith(prefix) and len(key) > len(prefix)), None)


def canonical(name: str) -> str:
    """The command's canonical name; a family member or a macro keeps its own (lower) name."""
    command = lookup(name)
    return command.name if command is not None and not command.prefix else name.lower()


# --- the README's table ----------------------------------------------------------------------

README_BEGIN = "<!-- submit-commands: generated from services/condor/commands.py -->"
README_END = "<!-- end submit-commands -->"


def markdown_table() -> str:
    """The README's table of submit commands, one row per disposition and note."""
    lines = ["| submit command | here | job ad | what happens |", "|---|---|---|---|"]
    order = {SUPPORTED: 0, WARNED: 1, REFUSED: 2, QUIET: 3}
    groups: dict[tuple[Disposition, str, tuple[str, ...]], list[str]] = {}
    for command in sorted(COMMANDS, key=lambda c: order[c.disposition]):
        groups.setdefault((command.disposition, command.note, command.attrs), []).append(
            " / ".join(f"`{name}`" for name in command.label.split(" / ")))
    for (disposition, note, attrs), names in groups.items():
        ad = ", ".join(f"`{attr}`" for attr in attrs)
        lines.append(f"| {', '.join(names)} | {disposition.value} | {ad} | "
                     f"{note.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m services.condor.commands`: the README's table
    print(f"{README_BEGIN}\n{markdown_table()}\n{README_END}")
