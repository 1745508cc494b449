"""Accounting groups on a real pool: a 3:1 quota split is the split of the busy cpus."""

from __future__ import annotations

from tests.e2e.conftest import running_pool

GROUPS_CONFIG = """
[services]
negotiator_interval_s = 1.0
frontend_interval_s = 1.0
factory_interval_s = 0.5
web_port = 0

[[entry]]
name = "e2e-a"
site = "SiteA"
driver = "local"
provider = "local"
cpus = 1
memory_mb = 512
disk_mb = 1024
idle_timeout_s = 300.0
[entry.limits]
max_pilots = 8
max_launch_per_cycle = 8

[[group]]
name = "main"
credentials = { local = "none" }

[[accounting_group]]
name = "physics"
quota_fraction = 0.75

[[accounting_group]]
name = "bio"
quota_fraction = 0.25
"""

LONG_JOBS = """
executable = /bin/sleep
arguments = 300
accounting_group = {group}
request_memory = 64
request_disk = 1000
queue 12
"""


def test_two_groups_with_a_3_to_1_quota_run_jobs_in_that_ratio_on_8_slots():
    with running_pool(GROUPS_CONFIG) as pool:
        pool.as_user("tester")
        physics = pool.submit("physics.sub", LONG_JOBS.format(group="physics"))["cluster"]
        bio = pool.submit("bio.sub", LONG_JOBS.format(group="bio"))["cluster"]

        def running_by_group():
            jobs = pool.json("q")
            running = [j for j in jobs if j["state"] == "running"]
            idle = {j["id"].split(".")[0] for j in jobs if j["state"] == "idle"}
            # Contention: every slot busy and both groups still waiting for more.
            if len(running) == 8 and idle == {str(physics), str(bio)}:
                return {group: sum(j["id"].startswith(f"{cluster}.") for j in running)
                        for group, cluster in (("physics", physics), ("bio", bio))}
            return None

        counts = pool.wait_for(running_by_group, timeout=120, what="8 busy slots")
        assert counts == {"physics": 6, "bio": 2}
        status = pool.json("status")
        assert status["slots"] == {"claimed": 8, "unclaimed": 0}
