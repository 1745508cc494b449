"""`burst submit` refuses what it cannot send before it sends anything, in one line; input files
are read here, with the user's own rights, and travel inside the submission."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import identity, inputs
from services.cli.main import cli
from services.condor.submit import parse_submit_file
from services.runtime.config import Settings

REPO = Path(__file__).resolve().parents[2]
NO_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"  # nothing listens: a connection would fail


@pytest.fixture
def user_env(tmp_path) -> dict[str, str]:
    """A state dir with a pool key and this user's token, and no broker."""
    env = {"AMQP_URL": NO_BROKER, "BURST_STATE_DIR": str(tmp_path / "state"),
           "BURST_NAMESPACE": "clitest", "BURST_TOKEN_FILE": ""}
    identity.ensure_own_token(Settings.from_env(env))
    return env


@pytest.fixture
def work(tmp_path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "in.txt").write_text("input")
    return work


def burst(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, list(args), env=env)


def one_line_refusal(result, *expected: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("burst: "), result.output
    assert "Traceback" not in result.output and "cannot reach" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def submit_file(work: Path, text: str) -> Path:
    path = work / "jobs.sub"
    path.write_text(text)
    return path


# --- reading the inputs ----------------------------------------------------------------------


def test_files_shared_by_every_job_travel_once_and_per_job_files_each_once(work):
    for proc in (3, 4):
        (work / f"in{proc}.txt").write_text(f"for {proc}")
    path = submit_file(work, "executable = run.sh\ntransfer_input_files = in.txt\nqueue 3\n"
                             "transfer_input_files = in.txt, in$(Process).txt\nqueue 2\n")
    found = inputs.read(parse_submit_file(path, cluster=5, owner="a"), str(path), 5)
    common = {"run.sh": (work / "run.sh").read_bytes(), "in.txt": b"input"}
    assert found.sets == [common, {**common, "in3.txt": b"for 3"},
                          {**common, "in4.txt": b"for 4"}]
    assert found.index == {0: 0, 1: 0, 2: 0, 3: 1, 4: 2}


def test_stdin_and_the_executable_travel_but_not_an_execute_side_program(work):
    path = submit_file(work, "executable = /opt/site/tool\ntransfer_executable = false\n"
                             "input = in.txt\nqueue\n")
    found = inputs.read(parse_submit_file(path, cluster=5, owner="a"), str(path), 5)
    assert found.sets == [{"in.txt": b"input"}] and found.index == {0: 0}


def test_a_job_over_the_inline_cap_is_refused_naming_it(work, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_JOB_BYTES", 10)
    path = submit_file(work, "executable = run.sh\nqueue\n")
    with pytest.raises(inputs.InputError, match="job 5.0: input files total over"):
        inputs.read(parse_submit_file(path, cluster=5, owner="a"), str(path), 5)


@pytest.mark.parametrize("line, problem", [
    ("transfer_input_files = data", "is a directory"),
    ("transfer_input_files = https://example.org/x.tar#md5=1", "is not #sha256=<64 hex"),
    ("transfer_input_files = in.txt, https://example.org/in.txt", "would both be 'in.txt'"),
    ("transfer_input_files = in.txt, sub/in.txt", "would both be 'in.txt'"),
])
def test_inputs_that_cannot_travel_are_refused(work, line, problem):
    (work / "data").mkdir()
    (work / "sub").mkdir()
    (work / "sub" / "in.txt").write_text("other")
    path = submit_file(work, f"executable = run.sh\n{line}\nqueue\n")
    with pytest.raises(inputs.InputError, match=problem):
        inputs.read(parse_submit_file(path, cluster=5, owner="a"), str(path), 5)


# --- what a user sees, before any message is sent ------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("executable = run.sh\nrequest_memory = 99999999999999999999999TB\nqueue\n",
     ("jobs.sub line 2", "request_memory", "'99999999999999999999999TB' is too large")),
    ("executable = run.sh\nrequest_cpus = 99999999999999999999\nqueue\n",
     ("jobs.sub line 2", "request_cpus", "too large")),
    ("executable = bin\nqueue\n", ("jobs.sub line 1", "'bin' is a directory")),
    ("executable = /nonexistent/tool\nqueue\n",
     ("jobs.sub line 1", "'/nonexistent/tool' not found", "transfer_executable = false")),
    ("executable = run.sh\nlog = logs/jobs.log\nqueue\n",
     ("jobs.sub line 2", "log: directory", "logs' does not exist")),
    ("executable = run.sh\noutput = ../out.txt\nqueue\n", ("jobs.sub line 2", "output:")),
    ("executable = run.sh\ntransfer_input_files = data\nqueue\n", ("'", "data' is a directory")),
])
def test_bad_submissions_are_refused_in_one_line_without_contacting_the_pool(
        user_env, work, text, expected):
    (work / "bin").mkdir()
    (work / "data").mkdir()
    one_line_refusal(burst(user_env, "submit", str(submit_file(work, text))), *expected)


def test_an_input_file_the_user_cannot_read_is_refused_naming_it(user_env, work):
    secret = work / "secret.txt"
    secret.write_text("not yours")
    secret.chmod(0)
    path = submit_file(work, "executable = run.sh\ntransfer_input_files = secret.txt\nqueue\n")
    command = [sys.executable, "-m", "services.cli.main", "submit", str(path)]
    if os.geteuid() == 0:  # root reads everything: run it as root without that power
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, **user_env})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"burst: {path}: cannot read input file {str(secret)!r}: Permission denied"]


@pytest.mark.parametrize("args", [["q", "abc"], ["rm", "1.x"], ["wait", "-3"],
                                  ["hold", "1", "two"]])
def test_a_bad_job_id_is_a_usage_error_that_sends_nothing(user_env, args):
    result = burst(user_env, *args)
    assert result.exit_code == 2, result.output
    assert "is not a job id" in result.output or "No such option" in result.output
    assert "cannot reach" not in result.output  # refused before any connection
