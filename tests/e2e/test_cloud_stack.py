"""`burst up` with an entry on the embedded cloud: the cloud starts as one more service, a job
runs on a VM it boots, `burst status` shows where the endpoint is, `burst down` ends it all."""

from __future__ import annotations

import psutil
import pytest

from tests.e2e.conftest import running_pool
from tests.helpers import processes_where

CLOUD_CONFIG = """
[services]
negotiator_interval_s = 2.0
frontend_interval_s = 1.0
factory_interval_s = 0.5
cloud_port = 0
cloud_boot_delay_s = 0.3
cloud_interval_s = 0.2

[[entry]]
name = "emb-aws"
site = "EmbeddedAWS"
driver = "ec2"
provider = "aws"
endpoint = "embedded"
trust_domain = "embedded"
instance_type = "t3.small"
cpus = 1
memory_mb = 512
idle_timeout_s = 30.0
[entry.limits]
max_pilots = 1

[[group]]
name = "main"
credentials = { embedded = "none" }
"""


@pytest.fixture(scope="module")
def cloud_pool():
    with running_pool(CLOUD_CONFIG, queues=("factory.entry.emb-aws",)) as p:
        yield p


def test_a_job_runs_on_an_embedded_vm_and_down_leaves_nothing(cloud_pool):
    p = cloud_pool
    cloud_pid = p.pid("cloud")
    status = p.json("status")
    endpoint = status["services"]["cloud"]["endpoint"]
    assert status["services"]["cloud"]["alive"] and endpoint.startswith("http://127.0.0.1:")
    p.write("echo.sub", "executable = /bin/echo\narguments = on $$(GLIDEIN_Site)\n"
                        "output = echo.out\nqueue\n")
    cluster = p.json("submit", "echo.sub")["cluster"]
    p.ok("wait", str(cluster), "--timeout", "90", timeout=120)
    (job,) = p.json("q", str(cluster))
    assert (job["state"], job["exit_code"], job["provider"], job["site"]) == (
        "completed", 0, "aws", "EmbeddedAWS")
    assert (p.work / "echo.out").read_text() == "on EmbeddedAWS\n"
    entries = p.wait_for(lambda: [e for e in p.json("status")["entries"]
                                  if e["endpoint"] == endpoint], what="the resolved endpoint")
    assert entries[0]["driver"] == "ec2"
    p.ok("down")
    assert not psutil.pid_exists(cloud_pid) or \
        psutil.Process(cloud_pid).status() == psutil.STATUS_ZOMBIE
    assert not (p.root / "state" / "run" / "cloud.json").exists()
    vms = str(p.root / "state" / "cloud" / "vms")
    assert not processes_where("BURST_PILOT_WORK_DIR", lambda v: v.startswith(vms)), \
        "a VM's glidein outlived burst down"

