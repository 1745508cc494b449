"""The executor runs real /bin/sh jobs in scratch directories (no broker needed)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import psutil
import pytest

from schemas.slot import ClaimActivate
from services.condor.pilot import PilotContext
from services.condor.slot import Resources, slot_ad
from services.glidein.executor import ExecutorConfig, JobResult, JobRun

CTX = PilotContext(pilot_id="p1", entry="entry1", site="SiteA", factory="fac", cpus=4,
                   memory_mb=1000, disk_mb=1000, instance_id="local-1")


def activation(executable: str, arguments=(), *, files=None, claim_id="c1", memory_mb=100,
               **extra) -> ClaimActivate:
    return ClaimActivate(claim_id=claim_id, pilot_id="p1", schedd="test", job_id="7.0",
                         job_ad='[ Owner = "alice" ]', executable=executable,
                         arguments=list(arguments), environment=extra.pop("environment", {}),
                         files=files or {}, cpus=1, memory_mb=memory_mb, disk_mb=10, **extra)


def start(msg: ClaimActivate, work: Path, **kwargs) -> JobRun:
    run = JobRun(msg, slot_ad(CTX, Resources(1, msg.memory_mb, 10)), work, **kwargs)
    held = run.start()
    assert held is None, held
    return run


def wait_result(run: JobRun, timeout: float = 20.0) -> JobResult:
    """The result, then the scratch directory removed (as the agent does once it is recorded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = run.poll()
        if result is not None:
            assert run.scratch.is_dir(), "the scratch directory went before the result was kept"
            run.cleanup()
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the job did not end in time")
        time.sleep(0.02)


def run_job(msg: ClaimActivate, work: Path, **kwargs) -> JobResult:
    run = JobRun(msg, slot_ad(CTX, Resources(1, msg.memory_mb, 10)), work, **kwargs)
    return run.start() or wait_result(run)


def script(body: str) -> dict[str, bytes]:
    return {"job.sh": f"#!/bin/sh\n{body}\n".encode()}


def test_script_runs_with_exit_code_streams_and_new_files(tmp_path):
    files = {**script('echo "out $1"; echo err >&2; echo data > result.txt; '
                      'echo more >> changed.txt; exit 3'),
             "changed.txt": b"input\n", "untouched.txt": b"same\n"}
    result = run_job(activation("job.sh", ["first"], files=files), tmp_path)
    assert result.state == "exited" and result.exit_code == 3 and result.exit_signal is None
    assert result.stdout == b"out first\n" and result.stderr == b"err\n"
    # Created or modified, as HTCondor returns them; not inputs left as they were.
    assert result.output_files == {"result.txt": b"data\n", "changed.txt": b"input\nmore\n"}
    assert result.wall_seconds > 0
    assert not (tmp_path / "execute" / "c1").exists()


def test_environment_and_slot_macro_substitution(tmp_path):
    files = script('echo "$1|$HOME|$TMPDIR|$_CONDOR_SCRATCH_DIR|$BURST_JOB_ID|$BURST_PILOT_ID|'
                   '$GLIDEIN_Site|$GLIDEIN_Entry_Name|$MINE|$WHERE"; pwd')
    msg = activation("job.sh", ["site=$$(GLIDEIN_Site) cpus=$$([Cpus * 2])"], files=files,
                     environment={"MINE": "mine", "WHERE": "$$(CloudProvider)-$$(Nope:dflt)"})
    result = run_job(msg, tmp_path)
    scratch = str(tmp_path / "execute" / "c1")
    line, cwd = result.stdout.decode().splitlines()
    assert line.split("|") == ["site=SiteA cpus=2", scratch, scratch, scratch, "7.0", "p1", "SiteA",
                               "entry1", "mine", "local-dflt"]
    assert cwd == scratch


def test_missing_slot_attribute_in_a_macro_holds_the_job(tmp_path):
    result = run_job(activation("/bin/echo", ["$$(NoSuchAttr)"]), tmp_path)
    assert result.state == "held"
    assert result.reason == ("cannot substitute $$() in arguments '$$(NoSuchAttr)': "
                             "$$(NoSuchAttr): the slot ad has no attribute NoSuchAttr")


def test_stdin_comes_from_the_transferred_file(tmp_path):
    msg = activation("job.sh", files={**script("tr a-z A-Z"), "in.txt": b"hello\n"},
                     stream_names={"stdin": "in.txt", "stdout": "job.out"})
    assert run_job(msg, tmp_path).stdout == b"HELLO\n"


def test_listed_output_files_only_and_a_missing_one_holds(tmp_path):
    files = script("echo a > a.txt; echo b > b.txt")
    result = run_job(activation("job.sh", files=files, output_files=["b.txt"]), tmp_path)
    assert result.state == "exited" and result.output_files == {"b.txt": b"b\n"}
    result = run_job(activation("job.sh", files=files, output_files=["c.txt"]), tmp_path)
    assert result.state == "held"
    assert result.reason == "transfer_output_files: c.txt not produced"


def test_output_over_the_cap_holds_the_job(tmp_path):
    files = script("head -c 3000000 /dev/zero > big.bin")
    result = run_job(activation("job.sh", files=files), tmp_path,
                     config=ExecutorConfig(max_output_bytes=1024 * 1024))
    assert result.state == "held" and "exceeds the 1 MiB" in result.reason


def test_memory_over_the_request_kills_and_holds(tmp_path):
    hog = "import time; data = b'x' * (300 * 1024 * 1024); time.sleep(60)"
    run = start(activation(sys.executable, ["-c", hog], memory_mb=100), tmp_path)
    result = wait_result(run, timeout=30)
    assert result.state == "held"
    assert re.fullmatch(r"memory usage \d+ MiB exceeded request_memory 100 MiB", result.reason)
    assert result.exit_signal == 9 and result.peak_memory_mb > 100
    assert not psutil.pid_exists(run.proc.pid)


def test_missing_executable_holds_with_the_os_error(tmp_path):
    result = run_job(activation("/no/such/program"), tmp_path)
    assert result.state == "held"
    assert result.reason == "cannot start /no/such/program: No such file or directory"
    assert not (tmp_path / "execute" / "c1").exists()


def test_absolute_executable_on_the_host_runs_as_is(tmp_path):
    result = run_job(activation("/bin/echo", ["hello"]), tmp_path)
    assert (result.state, result.exit_code, result.stdout) == ("exited", 0, b"hello\n")


def test_killed_by_a_signal_reports_the_signal(tmp_path):
    result = run_job(activation("job.sh", files=script("kill -TERM $$")), tmp_path)
    assert result.state == "exited" and result.exit_code is None and result.exit_signal == 15


def _wait_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text().strip()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_the_whole_process_tree_goes(tmp_path, how):
    """kill() ends the job and its children; a job that exits leaves nothing running."""
    body = "sleep 60 & echo $! > child.pid; " + ("wait" if how == "kill" else "sleep 0.2")
    run = start(activation("job.sh", files=script(body)), tmp_path)
    child = int(_wait_file(tmp_path / "execute" / "c1" / "child.pid"))
    if how == "kill":
        run.kill()
    wait_result(run)
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, "the job's child survived"
        time.sleep(0.02)
    assert not (tmp_path / "execute" / "c1").exists()


@pytest.mark.parametrize(("fields", "reason"), [
    ({"files": {"../escape": b"x"}}, "input file name '../escape' is not a plain file name"),
    ({"claim_id": "../x"}, "claim id '../x' cannot name a scratch directory"),
    ({"stream_names": {"stdin": "absent.txt"}}, "stdin file absent.txt was not transferred"),
])
def test_unsafe_or_missing_inputs_hold_the_job(tmp_path, fields, reason):
    keep = tmp_path / "x" / "keep.txt"  # where a claim id of ../x would point
    keep.parent.mkdir()
    keep.write_text("mine")
    result = run_job(activation("/bin/true", **fields), tmp_path)
    assert (result.state, result.reason) == ("held", reason)
    assert not any((tmp_path / "execute").glob("*")) and keep.read_text() == "mine"


def test_input_names_with_spaces_are_fine(tmp_path):
    files = {**script('cat "my data.txt"'), "my data.txt": b"spaced\n"}
    assert run_job(activation("job.sh", files=files), tmp_path).stdout == b"spaced\n"
