"""Running one job: a real subprocess in its own scratch directory, watched by polling.

    JobRun(activation, user).start() ──▶ <work>/execute/<claim>/ (0700, the job's uid): inputs
                                         written, $$() substituted; files to fetch (object
                                         storage, URLs: transfer.py) fetched in a thread;
                                         Popen as that user, in the pilot's process group,
                                         stdout/stderr to files
    poll() every ~20 ms ───────────────▶ None while it fetches, runs (every 0.5 s the RSS of
                                         its tree is checked against request_memory) or
                                         uploads its big outputs (a thread), then a JobResult
    cleanup() ─────────────────────────▶ scratch removed, once the agent has recorded the result
    kill() ────────────────────────────▶ SIGKILL to the whole tree, no result

Nothing here blocks: the agent calls poll() from a timer on the bus's I/O
thread, next to its handlers; network transfers run in a Worker thread the
poll picks up. A job becomes "held" (as HTCondor holds it) when an input
cannot be fetched, it cannot be started, a $$() macro cannot be substituted,
it outgrows its memory request, it does not produce the outputs it promised,
or they cannot be returned.

Jobs share the pilot's process group, so whatever kills the pilot's group
kills them (services/condor/pilotdir.py sweeps up after a pilot that died). A
job's own processes are its tree, plus what left the tree: processes of the
pilot's group marked with its BURST_CLAIM_ID, and every process of its slot
user when that uid is its alone. The pilot may be root: everything it reads
back from the scratch directory is opened without following symlinks.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import classad2
import psutil

from schemas.files import StoredOutput
from schemas.slot import ClaimActivate
from services.condor.macros import substitute_slot_macros

from . import transfer
from .isolation import SlotUser
from .transfer import Returned, Worker

log = logging.getLogger("burst.glidein.executor")

STDOUT, STDERR = "_condor_stdout", "_condor_stderr"  # capture files, as HTCondor's starter
JOB_AD, MACHINE_AD = ".job.ad", ".machine.ad"
SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@=,-]*$")  # claim ids name directories
MiB = 1024 * 1024

Substitute = Callable[[str, classad2.ClassAd], str]


@dataclass(frozen=True)
class ExecutorConfig:
    max_output_bytes: int = 64 * MiB  # what travels inside job.report (not uploaded)
    default_path: str = "/usr/local/bin:/usr/bin:/bin"  # the job's PATH: nothing of the pilot's
    sample_interval_s: float = 0.5  # RSS and cpu of the tree; reaping is checked every poll


@dataclass(frozen=True)
class JobResult:
    state: str  # exited | held
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str = ""
    stdout: bytes = b""
    stderr: bytes = b""
    output_files: dict[str, bytes] = field(default_factory=dict)
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_mb: int = 0
    stored_streams: dict[str, StoredOutput] = field(default_factory=dict)  # uploaded instead
    stored_files: dict[str, StoredOutput] = field(default_factory=dict)


class HoldJob(Exception):
    """The job cannot go on; it is held with this reason."""


def base_environment(scratch: Path, msg: ClaimActivate, slot: classad2.ClassAd,
                     path: str) -> dict[str, str]:
    """What every job starts with; the job's own environment is laid over it."""
    return {
        "PATH": path,
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "_CONDOR_SCRATCH_DIR": str(scratch),
        "_CONDOR_JOB_AD": str(scratch / JOB_AD),
        "_CONDOR_MACHINE_AD": str(scratch / MACHINE_AD),
        "BURST_JOB_ID": msg.job_id,
        "BURST_CLAIM_ID": msg.claim_id,
        "BURST_PILOT_ID": msg.pilot_id,
        "GLIDEIN_Site": _ad_string(slot, "GLIDEIN_Site"),
        "GLIDEIN_Entry_Name": _ad_string(slot, "GLIDEIN_Entry_Name"),
    }


def _ad_string(ad: classad2.ClassAd, name: str) -> str:
    value = ad.get(name)
    return value if isinstance(value, str) else ""


class JobRun:
    """One job from activation to result; see the module docstring."""

    def __init__(self, msg: ClaimActivate, slot: classad2.ClassAd, work_dir: Path, *,
                 config: ExecutorConfig = ExecutorConfig(), path: str | None = None,
                 substitute: Substitute = substitute_slot_macros, user: SlotUser | None = None):
        self.msg = msg
        self.slot = slot
        self.scratch = work_dir / "execute" / msg.claim_id
        self.config = config
        self.path = path or config.default_path
        self.substitute = substitute
        self.user = user  # None: the pilot's own user
        self.proc: subprocess.Popen | None = None
        self.create_time = 0.0  # of the job's process: with its pid, who it is after a crash
        self.started = 0.0
        self._sampled = 0.0
        self.peak_rss = 0
        self.cpu_seconds = 0.0
        self._inputs: dict[str, tuple[int, int]] = {}  # name -> (mtime_ns, size) as written
        self._hold_reason = ""  # set when we killed it for a reason; reported once reaped
        self._silent = False  # killed on order: no result wanted
        self._made_scratch = False  # only a directory we made is ever removed
        self.announced = False  # its `running` report is out (the agent's to set)
        self._command: tuple[list[str], dict[str, str]] = ([], {})  # argv, environment
        self._worker: Worker | None = None  # fetching inputs, or returning outputs
        self._exited: JobResult | None = None  # the result whose outputs are being uploaded

    @property
    def memory_limit_mb(self) -> int:
        return self.msg.memory_mb

    # --- start -------------------------------------------------------------------------------

    def start(self) -> JobResult | None:
        """Prepare and start the job, or start fetching its inputs first (poll() starts it
        then); a held result if it cannot be started (nothing left behind)."""
        self.started = time.monotonic()
        try:
            self._command = self._prepare()
        except HoldJob as exc:
            self.cleanup()
            return JobResult(state="held", reason=str(exc))
        except OSError as exc:  # a full or read-only disk: the job could never run here
            self.cleanup()
            return JobResult(state="held", reason=f"cannot prepare {self.scratch}: {exc}")
        if self.msg.fetch:
            self._worker = Worker(partial(transfer.fetch_inputs, self.msg, self.scratch),
                                  f"fetch-{self.msg.job_id}")
            return None
        return self._launch()

    def _launch(self) -> JobResult | None:
        try:
            self._adopt_fetched()
            self.proc = self._spawn(*self._command)
        except HoldJob as exc:
            self.cleanup()
            return JobResult(state="held", reason=str(exc))
        except OSError as exc:
            self.cleanup()
            return JobResult(state="held", reason=f"cannot prepare {self.scratch}: {exc}")
        try:
            self.create_time = psutil.Process(self.proc.pid).create_time()
        except psutil.Error:  # gone already; reaped on the first poll
            self.create_time = time.time()
        log.info("event=job_started job=%s claim=%s pid=%d user=%s", self.msg.job_id,
                 self.msg.claim_id, self.proc.pid, self.user.name if self.user else "pilot")
        return None

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        msg = self.msg
        if not SAFE_ID.match(msg.claim_id):
            raise HoldJob(f"claim id {msg.claim_id!r} cannot name a scratch directory")
        arguments = [self._substituted(arg, "arguments") for arg in msg.arguments]
        job_env = {key: self._substituted(value, f"environment {key}")
                   for key, value in msg.environment.items()}
        if self.scratch.exists():
            shutil.rmtree(self.scratch)  # left over from a pilot that died mid-job
        self.scratch.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.scratch.mkdir(mode=0o700)  # the job's alone (given to its user below)
        self._made_scratch = True
        self._write_inputs()
        env = {**base_environment(self.scratch, msg, self.slot, self.path), **job_env}
        return [self._executable(), *arguments], env

    def _substituted(self, text: str, where: str) -> str:
        if "$$(" not in text:
            return text
        try:
            return self.substitute(text, self.slot)
        # The substituter is another module's; whatever it raises, HTCondor holds the job.
        except Exception as exc:
            raise HoldJob(f"cannot substitute $$() in {where} {text!r}: {exc}") from None

    def _write_inputs(self) -> None:
        for name, data in self.msg.files.items():
            if "/" in name or "\0" in name or name in ("", ".", ".."):
                raise HoldJob(f"input file name {name!r} is not a plain file name")
            path = self.scratch / name
            path.write_bytes(data)
            if name == self.msg.executable:
                path.chmod(0o755)
        (self.scratch / JOB_AD).write_text(self.msg.job_ad or "[]")
        (self.scratch / MACHINE_AD).write_text(str(self.slot))
        for name in (*self.msg.files, JOB_AD, MACHINE_AD):
            st = (self.scratch / name).stat()
            self._inputs[name] = (st.st_mtime_ns, st.st_size)
        for name in (STDOUT, STDERR):
            (self.scratch / name).touch(mode=0o600)
        self._give_to_job(self.scratch, *(self.scratch / n for n in (*self._inputs, STDOUT,
                                                                     STDERR)))

    def _adopt_fetched(self) -> None:
        """Fetched files are inputs like the others: the job's, and not outputs unless it
        changes them."""
        for item in self.msg.fetch:
            path = self.scratch / item.name
            if item.name == self.msg.executable:
                path.chmod(0o755)
            st = path.stat()
            self._inputs[item.name] = (st.st_mtime_ns, st.st_size)
            self._give_to_job(path)

    @property
    def _sent(self) -> set[str]:
        """Every input file's name: inline, or fetched."""
        return {*self.msg.files, *(item.name for item in self.msg.fetch)}

    def _give_to_job(self, *paths: Path) -> None:
        """Its scratch directory and files belong to the job's user (the pilot wrote them)."""
        if self.user is None:
            return
        for path in paths:
            os.chown(path, self.user.uid, self.user.gid, follow_symlinks=False)

    def _executable(self) -> str:
        exe = self.msg.executable
        if not exe:
            raise HoldJob("the job has no executable")
        if exe in self._sent:
            return str(self.scratch / exe)
        return exe  # an absolute path on the pilot host, or a name found on PATH

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        stdin_name = self.msg.stream_names.get("stdin", "")
        if stdin_name and stdin_name not in self._sent:
            raise HoldJob(f"stdin file {stdin_name} was not transferred")
        # As the slot user with no supplementary groups (Popen sets them after the fork, no
        # preexec_fn); in the pilot's process group, so killing the pilot's group kills it.
        who = {} if self.user is None else {"user": self.user.uid, "group": self.user.gid,
                                            "extra_groups": []}
        try:
            with (open(self.scratch / stdin_name if stdin_name else os.devnull, "rb") as stdin,
                  open(self.scratch / STDOUT, "wb") as stdout,
                  open(self.scratch / STDERR, "wb") as stderr):
                return subprocess.Popen(argv, cwd=self.scratch, env=env, stdin=stdin,
                                        stdout=stdout, stderr=stderr, close_fds=True, **who)
        except OSError as exc:
            raise HoldJob(f"cannot start {argv[0]}: {exc.strerror or exc}") from None

    # --- watching ----------------------------------------------------------------------------

    def poll(self) -> JobResult | None:
        """None while the job fetches, runs or returns; its result once it has ended. The
        scratch directory stays until cleanup(): the result must be on record before the
        job's files go."""
        if self._worker is not None:
            return self._poll_worker()
        if self.proc is None:
            return None
        status = self._reap()
        if status is None:
            now = time.monotonic()
            if now - self._sampled >= self.config.sample_interval_s:
                self._sampled = now
                self._watch_memory()
            return None
        if self._silent:
            return JobResult(state="held", reason="killed")
        return self._result(status)

    def _poll_worker(self) -> JobResult | None:
        worker = self._worker
        assert worker is not None
        if self._silent:  # killed on order: no result wanted, the transfer stops
            worker.cancel()
            self._worker = None
            return JobResult(state="held", reason="killed")
        if not worker.done:
            return None
        self._worker = None
        error = worker.error
        if error is not None:
            if not isinstance(error, transfer.TransferFailed):
                log.error("event=transfer_crashed job=%s claim=%s", self.msg.job_id,
                          self.msg.claim_id, exc_info=error)
            return replace(self._exited or JobResult(state="held"), state="held",
                           reason=str(error) if isinstance(error, transfer.TransferFailed)
                           else f"file transfer failed: {error!r}")
        if self._exited is None:  # the inputs are here
            return self._launch()
        return self._returned(self._exited, worker.result)

    def _reap(self) -> int | None:
        """The job's exit status once its main process has ended, reaping it."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return self.proc.returncode
        pid = self.proc.pid
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
            # Kill what the job left running, as HTCondor does at job exit.
            self._kill_tree(signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)  # does not block: it has exited
        except ChildProcessError:  # reaped elsewhere; nothing more to learn
            self.proc.returncode = 0
            return 0
        # wait4 counts the cpu time of the job and every descendant it waited for. Not its
        # ru_maxrss: that counts the forked pilot before exec; the polled RSS is the job's.
        self.cpu_seconds = max(self.cpu_seconds, usage.ru_utime + usage.ru_stime)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode

    def _tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _watch_memory(self) -> None:
        rss, cpu = 0, 0.0
        for proc in self._tree():
            try:
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                continue  # it ended between listing and reading
        self.peak_rss = max(self.peak_rss, rss)
        self.cpu_seconds = max(self.cpu_seconds, cpu)
        limit = self.memory_limit_mb
        if limit > 0 and rss > limit * MiB and not self._hold_reason:
            self._hold_reason = (f"memory usage {rss // MiB} MiB exceeded request_memory "
                                 f"{limit} MiB")
            log.warning("event=job_over_memory job=%s claim=%s rss_mib=%d limit_mib=%d",
                        self.msg.job_id, self.msg.claim_id, rss // MiB, limit)
            self._kill_tree(signal.SIGKILL)  # reaped and reported on a later poll

    # --- stopping ----------------------------------------------------------------------------

    def terminate(self) -> None:
        """Ask the whole tree to stop (SIGTERM); its result will not be wanted."""
        self._silent = True
        self._kill_tree(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the whole tree now (SIGKILL); poll() until it returns to reap and clean up."""
        self._silent = True
        self._kill_tree(signal.SIGKILL)

    def cleanup(self) -> None:
        """Remove the scratch directory (once the result is recorded, or given up on)."""
        if self._made_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _kill_tree(self, sig: int) -> None:
        if self.proc is None:
            return
        # Listed before signalling: once the root dies its children move to init. Once the
        # root is reaped its pid may be another process's: only the strays are looked for.
        tree = self._tree() if self.proc.returncode is None else []
        for proc in {p.pid: p for p in (*tree, *self._strays())}.values():
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass

    def _strays(self) -> list[psutil.Process]:
        """Processes of the job that left its tree (daemonized, or orphaned by its exit)."""
        dedicated = self.user.uid if self.user is not None and self.user.dedicated else None
        group, me = os.getpgid(0), os.getpid()
        found = []
        for proc in psutil.process_iter(["uids"]):
            uids = proc.info["uids"]
            try:
                owned = dedicated is not None and uids and dedicated in (uids.real, uids.effective)
                if proc.pid != me and (owned or (os.getpgid(proc.pid) == group
                                                 and self._marked(proc))):
                    found.append(proc)
            except (psutil.Error, OSError):
                continue  # gone meanwhile
        return found

    def _marked(self, proc: psutil.Process) -> bool:
        env = proc.environ()
        return (env.get("BURST_CLAIM_ID") == self.msg.claim_id
                and env.get("BURST_PILOT_ID") == self.msg.pilot_id)

    # --- results -----------------------------------------------------------------------------

    def _result(self, returncode: int) -> JobResult:
        result = JobResult(
            state="exited", exit_code=returncode if returncode >= 0 else None,
            exit_signal=-returncode if returncode < 0 else None,
            wall_seconds=round(time.monotonic() - self.started, 3),
            cpu_seconds=round(self.cpu_seconds, 3), peak_memory_mb=-(-self.peak_rss // MiB))
        if self._hold_reason:
            return replace(result, state="held", reason=self._hold_reason)
        try:
            streams, outputs = self._open_outputs()
        except HoldJob as exc:
            return replace(result, state="held", reason=str(exc))
        gather = partial(transfer.gather, self.msg, streams, outputs,
                         max_inline_bytes=self.config.max_output_bytes)
        if transfer.plan_uploads(self.msg, streams, outputs):  # the network: not on this thread
            self._exited = result
            self._worker = Worker(gather, f"return-{self.msg.job_id}")
            return None
        try:
            return self._returned(result, gather())
        except transfer.TransferFailed as exc:
            return replace(result, state="held", reason=str(exc))

    def _returned(self, result: JobResult, returned: Returned) -> JobResult:
        log.info("event=job_exited job=%s claim=%s exit_code=%s exit_signal=%s outputs=%d "
                 "uploaded=%d", self.msg.job_id, self.msg.claim_id, result.exit_code,
                 result.exit_signal, len(returned.files) + len(returned.stored_files),
                 len(returned.stored_files) + len(returned.stored_streams))
        return replace(result, stdout=returned.stdout, stderr=returned.stderr,
                       output_files=returned.files, stored_streams=returned.stored_streams,
                       stored_files=returned.stored_files)

    def _open_outputs(self) -> tuple[dict[str, BinaryIO | None], dict[str, BinaryIO | None]]:
        """({"stdout", "stderr"}, output files by the name they return under), opened."""
        opened: list[BinaryIO] = []

        def keep(name: str) -> BinaryIO | None:
            file = self._open(name)
            if file is not None:
                opened.append(file)
            return file

        try:
            streams = {"stdout": keep(STDOUT), "stderr": keep(STDERR)}
            outputs = {}
            for returned, name in self._output_names().items():
                outputs[returned] = keep(name)
                if outputs[returned] is None and self.msg.output_files:
                    raise HoldJob(f"transfer_output_files: {name} not produced")
        except BaseException:
            for file in opened:
                file.close()
            raise
        return streams, outputs

    def _output_names(self) -> dict[str, str]:
        """Returned name -> name inside scratch: the listed outputs, else every new file."""
        if self.msg.output_files:
            found = {}
            for name in self.msg.output_files:
                if Path(name).is_absolute() or ".." in Path(name).parts or not Path(name).parts:
                    raise HoldJob(f"transfer_output_files: {name} not produced")
                found[Path(name).name] = name  # HTCondor returns outputs flat, by base name
            return found
        return {p.name: p.name for p in sorted(self.scratch.iterdir()) if self._is_new_output(p)}

    def _is_new_output(self, path: Path) -> bool:
        """Created or modified by the job (HTCondor's rule); no subdirectories, no symlinks,
        nothing its slot user does not own."""
        try:
            st = path.lstat()
        except FileNotFoundError:
            return False
        if path.name in (STDOUT, STDERR, self.msg.executable) or \
                not stat.S_ISREG(st.st_mode) or not self._owns(st):
            return False
        written = self._inputs.get(path.name)
        if written is None:
            return True
        return (st.st_mtime_ns, st.st_size) != written and path.name not in (JOB_AD, MACHINE_AD)

    def _owns(self, st: os.stat_result) -> bool:
        return self.user is None or not self.user.dedicated or st.st_uid == self.user.uid

    def _open(self, name: str) -> BinaryIO | None:
        """A file the job left, opened beneath its scratch directory one component at a time
        without following any symlink (the pilot may be root; the job may have planted one,
        and may still be racing to swap one in); None if it is not there."""
        *dirs, last = Path(name).parts
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        held: list[int] = []
        try:
            held.append(os.open(self.scratch, flags | os.O_DIRECTORY))
            for part in dirs:
                held.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=held[-1]))
            fd = os.open(last, flags | os.O_NONBLOCK, dir_fd=held[-1])
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file where a directory was
            raise HoldJob(f"cannot return {name}: {exc.strerror or exc}") from None
        finally:
            for dir_fd in held:
                os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not self._owns(st):
            os.close(fd)
            raise HoldJob(f"cannot return {name}: not a regular file of the job's")
        return os.fdopen(fd, "rb")  # closed by transfer.gather
