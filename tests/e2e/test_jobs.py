"""A user's jobs through the CLI: submit, q, wait, rm/hold/release, outputs."""

from __future__ import annotations

import json

import pytest

ECHO = """
executable = /bin/echo
arguments  = "job $(Process) of $(Cluster) at $$(GLIDEIN_Site)"
output     = echo.$(Process).out
queue 3
"""


def test_submitted_jobs_run_on_pilots_and_return_their_output(pool):
    submitted = pool.submit("echo.sub", ECHO)
    cluster = submitted["cluster"]
    assert submitted["jobs"] == [f"{cluster}.0", f"{cluster}.1", f"{cluster}.2"]
    pool.ok("wait", str(cluster), "--timeout", "90")
    jobs = pool.json("q", str(cluster))
    for i, job in enumerate(jobs):
        assert set(job) >= {"id", "state", "exit_code", "owner", "entry", "site", "provider"}
        assert (job["state"], job["exit_code"], job["owner"]) == ("completed", 0, "tester")
        assert job["site"] in ("SiteA", "SiteB") and job["provider"] == "local"
        out = (pool.work / f"echo.{i}.out").read_text()
        assert out == f"job {i} of {cluster} at {job['site']}\n"


def test_input_files_go_in_and_output_files_come_back(pool):
    pool.write("double.sh", "#!/bin/sh\nsed 's/^/x /' data.txt > doubled.txt\necho done\n",
               mode=0o755)
    pool.write("data.txt", "a\nb\n")
    done = pool.submit("files.sub", """
executable = double.sh
transfer_input_files = data.txt
transfer_output_files = doubled.txt
output = files.out
error = files.err
queue
""")
    pool.ok("wait", str(done["cluster"]), "--timeout", "90")
    assert (pool.work / "doubled.txt").read_text() == "x a\nx b\n"
    assert (pool.work / "files.out").read_text() == "done\n"


def test_exit_code_is_reported(pool):
    done = pool.submit("fail.sub", 'executable = /bin/sh\narguments = "-c \'exit 7\'"\nqueue\n')
    pool.ok("wait", done["jobs"][0], "--timeout", "90")
    assert pool.job(done["jobs"][0])["exit_code"] == 7


def test_a_malformed_submit_file_is_rejected_with_its_line_and_nothing_is_queued(pool):
    before = len(pool.json("q"))
    pool.write("bad.sub", "executable = /bin/echo\nrequest_memory = lots\nqueue\n")
    proc = pool.burst("submit", "bad.sub")
    assert proc.returncode == 1
    assert "bad.sub line 2" in proc.stderr and "request_memory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert len(pool.json("q")) == before


def test_a_job_no_entry_can_run_stays_idle_and_says_why(pool):
    done = pool.submit("huge.sub", "executable = /bin/true\nrequest_memory = 64GB\nqueue\n")
    job_id = done["jobs"][0]
    job = pool.wait_for(lambda: "no entry" in ((j := pool.job(job_id))["idle_reason"] or "")
                        and j, what="the frontend's idle reason")
    assert job["state"] == "idle" and "65536 MiB" in job["idle_reason"]
    pool.ok("rm", job_id)


def test_a_job_over_its_memory_request_is_held_with_the_reason(pool):
    pool.write("hog.py", "import time\nx = bytearray(300 * 2**20)\ntime.sleep(30)\n")
    done = pool.submit("hog.sub", """
executable = /usr/bin/env
arguments = python3 hog.py
transfer_input_files = hog.py
request_memory = 100MB
queue
""")
    job_id = done["jobs"][0]
    proc = pool.burst("wait", job_id, "--timeout", "90")
    assert proc.returncode == 1
    job = pool.job(job_id)
    assert job["state"] == "held" and "request_memory" in job["hold_reason"]


def test_hold_release_and_remove(pool):
    done = pool.submit("sleep.sub", 'executable = /bin/sleep\narguments = 60\nqueue\n')
    job_id = done["jobs"][0]
    pool.wait_for(lambda: pool.job(job_id)["state"] == "running", what="the job to run")
    assert "held 1 job(s)" in pool.ok("hold", job_id, "--reason", "wait a bit")
    job = pool.job(job_id)
    assert job["state"] == "held" and job["hold_reason"] == "wait a bit"
    assert pool.burst("wait", job_id, "--timeout", "5").returncode == 1
    pool.ok("release", job_id)
    pool.wait_for(lambda: pool.job(job_id)["state"] in ("idle", "running"), what="release")
    assert pool.burst("wait", job_id, "--timeout", "1").returncode == 2
    pool.ok("rm", str(done["cluster"]))
    assert pool.job(job_id)["state"] == "removed"
    again = pool.burst("rm", job_id)
    assert again.returncode == 1 and "already removed" in again.stderr


def test_an_htcondor_submit_file_runs_as_htcondor_means_it(pool):
    """hold = true waits held until released; each job gets its line of args.txt and the
    submitter's E2E_GREETING (getenv); what the pool does not serve is named on stderr and
    the submit still succeeds."""
    pool.write("args.txt", "first --n 1\nsecond --n 2\n")
    pool.write("greet.sh", '#!/bin/sh\necho "$E2E_GREETING $*"\n', mode=0o755)
    pool.write("held.sub", """
executable = greet.sh
output = held.$(Process).out
hold = true
kill_sig = SIGUSR1
getenv = E2E_GREETING
queue arguments from args.txt
""")
    proc = pool.burst("submit", "held.sub", "--json", env={"E2E_GREETING": "hi"})
    assert proc.returncode == 0, proc.stderr
    assert "held.sub line 5: kill_sig: ignored" in proc.stderr
    jobs = json.loads(proc.stdout)["jobs"]
    for job_id in jobs:
        job = pool.job(job_id)
        assert (job["state"], job["hold_reason"]) == ("held",
                                                      "submitted on hold at user's request")
    assert pool.burst("wait", jobs[0], "--timeout", "5").returncode == 1  # held, not running
    pool.ok("release", *jobs)
    pool.ok("wait", *jobs, "--timeout", "90")
    assert [(pool.work / f"held.{i}.out").read_text() for i in (0, 1)] == [
        "hi first --n 1\n", "hi second --n 2\n"]


@pytest.mark.parametrize("command", [["q"], ["wait", "999"], ["rm", "999"]])
def test_unknown_jobs_are_an_error(pool, command):
    if command == ["q"]:
        assert pool.json("q", "999") == []
        return
    proc = pool.burst(*command)
    assert proc.returncode == 1 and "999" in proc.stderr
