"""Job policy and custom resources on a real pool, as a user with HTCondor submit files."""

from __future__ import annotations

import json

from tests.e2e.conftest import running_pool

RETRY = r"""#!/bin/sh
# Fails until its third start: it reads how often it started before from its own job ad,
# as HTCondor jobs do ($_CONDOR_JOB_AD); the schedd keeps NumJobStarts there.
starts=$(grep -ow 'NumJobStarts = [0-9]*' "$_CONDOR_JOB_AD" | grep -o '[0-9]*$')
echo "started $starts times before"
[ "$starts" -ge 2 ]
"""


def job_events(pool, job_id: str) -> list[dict]:
    return [json.loads(line) for line in pool.ok("events", "--json", "--job", job_id)
            .splitlines()]


def log_codes(path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line[:3].isdigit()]


def test_a_failing_job_is_retried_until_it_succeeds(pool):
    pool.write("retry.sh", RETRY, mode=0o755)
    done = pool.submit("retry.sub", """
executable = retry.sh
output = retry.out
log = retry.log
on_exit_remove = ExitCode == 0
max_retries = 3
queue
""")
    job_id = done["jobs"][0]
    pool.ok("wait", job_id, "--timeout", "180")
    job = pool.job(job_id)
    assert (job["state"], job["exit_code"], job["runs"]) == ("completed", 0, 3)
    assert (pool.work / "retry.out").read_text() == "started 2 times before\n"
    keys = [e["key"] for e in job_events(pool, job_id)]
    assert keys.count("job.running.v1") == 3 and keys.count("job.requeued.v1") == 2
    assert keys[-1] == "job.completed.v1"
    assert log_codes(pool.work / "retry.log") == [
        "000", "001", "004", "001", "004", "001", "005"]


def test_periodic_remove_removes_an_idle_job_in_time(pool):
    done = pool.submit("expire.sub", """
executable = /bin/true
requirements = false
periodic_remove = (time() - QDate) > 30
queue
""")
    job_id = done["jobs"][0]
    job = pool.wait_for(lambda: (j := pool.job(job_id))["state"] == "removed" and j,
                        timeout=60, what="the periodic remove")
    waited = job["finished_at"] - job["submitted_at"]
    assert 30 <= waited < 31 + 2 * 2.0 + 3  # its expression, then at most one interval late
    (removed,) = [e for e in job_events(pool, job_id) if e["key"] == "job.removed.v1"]
    assert removed["reason"] == ("The job attribute PeriodicRemove expression "
                                 "'(time() - QDate) > 30' evaluated to TRUE")


def test_a_claim_takes_the_custom_resources_the_job_asks_for(pool):
    """e2e-a's pilots carry Boats = 2 (conftest); the job's dynamic slot holds its one."""
    done = pool.submit("boats.sub", """
executable = /bin/echo
arguments = "boats $$(Boats) of $$(TotalBoats) at $$(GLIDEIN_Site)"
request_boats = 1
output = boats.out
queue
""")
    pool.ok("wait", done["jobs"][0], "--timeout", "90")
    assert (pool.work / "boats.out").read_text() == "boats 1 of 2 at SiteA\n"


def test_a_job_asking_for_a_resource_no_entry_offers_says_so(pool):
    done = pool.submit("wings.sub", "executable = /bin/true\nrequest_Wings = 1\nqueue\n")
    job_id = done["jobs"][0]
    job = pool.wait_for(lambda: "Wings" in ((j := pool.job(job_id))["idle_reason"] or "")
                        and j, what="the frontend's idle reason")
    assert job["state"] == "idle"
    assert "no entry offers Wings (it asks for 1)" in job["idle_reason"]
    pool.ok("rm", job_id)


# One pilot, the only one with Boats: its 4 cpus would run 3 one-Boat jobs together.
ONE_BOATS_PILOT = """
[services]
negotiator_interval_s = 2.0
frontend_interval_s = 1.0
factory_interval_s = 0.5
web_port = 0
metadata_port = 0

[[entry]]
name = "e2e-a"
site = "SiteA"
driver = "local"
provider = "local"
cpus = 4
memory_mb = 1024
disk_mb = 4096
idle_timeout_s = 60.0
resources = { Boats = 2 }
[entry.limits]
max_pilots = 1

[[group]]
name = "main"
credentials = { local = "none" }
"""

SPAN = """#!/bin/sh
# When it ran, to the nanosecond: the test counts how many ran at once.
date +%s.%N
sleep 6
date +%s.%N
"""


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_three_one_boat_jobs_share_a_two_boat_pilot_two_at_a_time_with_no_claim_rejected():
    with running_pool(ONE_BOATS_PILOT) as pool:
        pool.as_user("tester")
        pool.write("span.sh", SPAN, mode=0o755)
        done = pool.submit("boats3.sub", """
executable = span.sh
request_boats = 1
output = span.$(Process).out
queue 3
""")
        cluster = str(done["cluster"])
        pool.ok("wait", cluster, "--timeout", "180")
        assert {j["state"] for j in pool.json("q", cluster)} == {"completed"}
        spans = [tuple(map(float, (pool.work / f"span.{i}.out").read_text().split()))
                 for i in range(3)]
        assert most_at_once(spans) == 2
        requeued = [e for e in job_events(pool, cluster) if e["key"] == "job.requeued.v1"]
        assert not [e for e in requeued if "rejected" in e["reason"]], requeued
