"""`burst submit --dry-run FILE [--json]`: the ads a file would queue, with nothing running."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from services.cli.main import cli
from tests.unit.test_condor_submit_htcondor import script

SUB = """\
executable = run.sh
arguments = "-n $(Process) --label 'run $(Cluster)'"
request_memory = 2 GB
hold = $(Process) == 1
kill_sig = SIGUSR1
queue 2
"""


def write(tmp_path: Path, text: str = SUB) -> Path:
    script(tmp_path / "run.sh")
    path = tmp_path / "jobs.sub"
    path.write_text(text)
    return path


def nowhere(tmp_path: Path) -> dict[str, str]:
    """An environment with no broker that answers, no state and no token."""
    return {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
            "BURST_STATE_DIR": str(tmp_path / "empty-state"), "BURST_TOKEN_FILE": ""}


def test_json_is_a_list_of_the_ads_in_classad2s_json_form(tmp_path):
    path = write(tmp_path)
    result = CliRunner().invoke(cli, ["submit", "--dry-run", str(path), "--json"],
                                env=nowhere(tmp_path))
    assert result.exit_code == 0, result.output
    ads = json.loads(result.stdout)
    assert [(ad["ClusterId"], ad["ProcId"]) for ad in ads] == [(1, 0), (1, 1)]
    assert [ad["Arguments"] for ad in ads] == ["-n 0 --label 'run 1'", "-n 1 --label 'run 1'"]
    assert ads[0]["Cmd"] == str(tmp_path / "run.sh") and ads[0]["RequestMemory"] == 2048
    assert [ad["JobStatus"] for ad in ads] == [1, 5]  # hold = $(Process) == 1
    assert ads[0]["Requirements"].startswith("/Expr(")
    assert "jobs.sub line 5: kill_sig: ignored" in result.stderr
    assert not (tmp_path / "empty-state").exists()  # nothing queued, nothing written


def test_text_prints_each_ad_in_htcondors_long_form_then_the_count(tmp_path):
    path = write(tmp_path, SUB.replace("hold = $(Process) == 1\n", ""))
    result = CliRunner().invoke(cli, ["submit", "--dry-run", str(path)], env=nowhere(tmp_path))
    assert result.exit_code == 0, result.output
    blocks = result.stdout.strip().split("\n\n")
    assert blocks[-1] == "2 job(s) dry-run to cluster 1."
    assert "ProcId = 1" in blocks[1] and 'Arguments = "-n 1 --label \'run 1\'"' in blocks[1]


def test_a_bad_file_is_one_line_naming_it_and_exit_1(tmp_path):
    path = write(tmp_path, "executable = run.sh\nrequest_cpus = two\nqueue\n")
    result = CliRunner().invoke(cli, ["submit", "--dry-run", str(path)], env=nowhere(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"burst: {path} line 2: request_cpus: 'two' is not a "
                                     "positive integer")


def test_the_installed_command_needs_no_broker_service_or_token(tmp_path):
    path = write(tmp_path, "executable = run.sh\nhold = true\nqueue\n")
    env = {**os.environ, **nowhere(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "submit", "--dry-run",
                           "--json", str(path)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    [ad] = json.loads(proc.stdout)
    assert (ad["JobStatus"], ad["HoldReasonCode"], ad["Owner"]) == (5, 15, getpass.getuser())
    assert ad["HoldReason"] == "submitted on hold at user's request"


def test_owner_option_sets_the_owner_and_the_default_accounting_group_user(tmp_path):
    path = write(tmp_path, "executable = run.sh\naccounting_group = group_a\nqueue\n")
    result = CliRunner().invoke(cli, ["submit", "--dry-run", "--json", "--owner", "bob",
                                      str(path)], env=nowhere(tmp_path))
    [ad] = json.loads(result.stdout)
    assert (ad["Owner"], ad["AccountingGroup"]) == ("bob", "group_a.bob")
