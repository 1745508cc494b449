"""`burst up` with a local entry and entries on the embedded cloud (AWS, OpenStack and
OpenNebula profiles), a frontend group holding the cloud's credential as a file reference,
and a user who pins clusters to sites: jobs run only at the sites they name, on VMs that
booted from a single-use token, and nothing secret is left in user data, events, logs or
`burst status`. At the end every VM is gone and `burst down` ends it all."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import boto3
import psutil
import pytest

from services.cloudspec.endpoint import CREDENTIALS, REGION
from services.runtime import security
from tests.e2e.conftest import CLOUD_SERVICES, Pool, running_pool
from tests.helpers import processes_where

ACCESS_KEY, SECRET_KEY = "AKIAPLANTEDE2E00001", "planted-secret-e2e-7f3a9c"
ENTRY = """
[[entry]]
name = "{name}"
site = "{site}"
driver = "ec2"
provider = "{provider}"
endpoint = "embedded"
trust_domain = "embedded"
credential = "ec2-keypair"
instance_type = "{provider}.small"
cpus = 1
memory_mb = 512
idle_timeout_s = 8.0
[entry.limits]
max_pilots = 1
"""
CLOUD_CONFIG = CLOUD_SERVICES + """
[[entry]]
name = "local"
site = "Local"
cpus = 1
memory_mb = 512
""" + "".join(ENTRY.format(name=f"emb-{p}", site=site, provider=p) for p, site in (
    ("aws", "AWS-Embedded"), ("openstack", "OpenStack-Embedded"),
    ("opennebula", "OpenNebula-Embedded"))) + """
[[group]]
name = "main"
credentials = { local = "none", embedded = "file:embedded.creds" }
"""
PINNED = """executable = /bin/sh
arguments = "-c 'echo ran at $$(GLIDEIN_Site) > where.$(Cluster).$(Process)'"
transfer_output_files = where.$(Cluster).$(Process)
output = out.$(Cluster).$(Process)
+DESIRED_Sites = "{site}"
queue {count}
"""


@pytest.fixture(scope="module")
def cloud_pool():
    queues = ("factory.entry.local",
              *(f"factory.entry.emb-{p}" for p in ("aws", "openstack", "opennebula")))
    files = {"embedded.creds": f"{ACCESS_KEY}:{SECRET_KEY}\n"}
    with running_pool(CLOUD_CONFIG, queues=queues, files=files) as p:
        p.as_user("tester")
        yield p


def ec2(p: Pool):
    endpoint = p.json("status")["services"]["cloud"]["endpoint"]
    return boto3.client("ec2", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def pool_instances(p: Pool) -> list[dict]:
    pages = ec2(p).get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:burst:pool", "Values": [p.settings.namespace]}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def test_pinned_clusters_run_only_at_the_sites_they_name(cloud_pool):
    p = cloud_pool
    opennebula = p.submit("one.sub", PINNED.format(site="OpenNebula-Embedded", count=2))
    openstack = p.submit("os.sub", PINNED.format(site="OpenStack-Embedded", count=1))
    aws = p.submit("aws.sub", PINNED.format(site="AWS-Embedded", count=1))
    clusters = [str(c["cluster"]) for c in (opennebula, openstack, aws)]
    p.ok("wait", *clusters, "--timeout", "120", timeout=150)
    for cluster, provider, site in zip(clusters, ("opennebula", "openstack", "aws"),
                                       ("OpenNebula-Embedded", "OpenStack-Embedded",
                                        "AWS-Embedded"), strict=True):
        for job in p.json("q", cluster):
            assert (job["state"], job["exit_code"], job["provider"], job["site"]) == (
                "completed", 0, provider, site), job
            process = job["id"].split(".")[1]
            assert (p.work / f"where.{cluster}.{process}").read_text() == f"ran at {site}\n"
            assert (p.work / f"out.{cluster}.{process}").exists()
    status = p.json("status")
    assert {"aws", "openstack", "opennebula"} <= set(status["vms"])
    assert status["services"]["metadata"]["alive"]
    endpoint = status["services"]["cloud"]["endpoint"]
    assert {e["endpoint"] for e in status["entries"] if e["driver"] == "ec2"} == {endpoint}


def test_a_cloud_jobs_trace_shows_the_launch_calls_and_the_vms_boot(cloud_pool):
    p = cloud_pool

    def no_pilot_up() -> bool:  # so the job waits for a VM of its own: its launch and boot
        (entry,) = [e for e in p.json("status")["entries"] if e["name"] == "emb-openstack"]
        return not any(n for state, n in entry["pilots"].items() if state not in
                       ("exited", "lost"))

    p.wait_for(no_pilot_up, 60, "the OpenStack entry's pilots to retire")
    job = p.submit("traced.sub", PINNED.format(site="OpenStack-Embedded", count=1))["jobs"][0]
    p.ok("wait", job, "--timeout", "120", timeout=150)
    wanted = {("schedd", "write outputs"), ("metadata", "exchange boot token"),
              ("glidein", "boot: exchange token"), ("factory", "launch pilot")}

    def whole_trace():
        proc = p.burst("trace", job, "--json")
        spans = json.loads(proc.stdout)["spans"] if proc.returncode == 0 else []
        return spans if wanted <= {(span["service"], span["name"]) for span in spans} else None

    spans = p.wait_for(whole_trace, 30, "the trace of a job on a cloud pilot")
    by_id = {span["span_id"]: span for span in spans}

    def ancestors(span):
        while span["parent_id"]:
            span = by_id[span["parent_id"]]
            yield span["name"]

    exchange = [s for s in spans if s["name"] == "exchange boot token"][-1]
    assert exchange["attributes"]["http.response.status_code"] == 200
    steps = ("boot: exchange token", "launch pilot")
    assert [name for name in ancestors(exchange) if name in steps] == list(steps)
    register = [s for s in spans if s["name"] == "register"][-1]
    assert "boot: exchange token" in list(ancestors(register))
    launch = by_id[[s for s in spans if s["name"] == "launch pilot"][-1]["span_id"]]
    calls = {s["name"] for s in spans if s["parent_id"] == launch["span_id"]}
    assert "cloud RunInstances" in calls


def test_user_data_holds_a_spent_token_and_no_secret(cloud_pool):
    p = cloud_pool
    client = ec2(p)
    pool_key = security.load_pool_key(p.root / "state" / "keys" / "pool.key")
    metadata_url = p.json("status")["services"]["metadata"]["url"]
    instances = pool_instances(p)
    assert len(instances) >= 3
    for instance in instances:
        answer = client.describe_instance_attribute(InstanceId=instance["InstanceId"],
                                                    Attribute="userData")
        user_data = base64.b64decode(answer["UserData"]["Value"])
        fields = json.loads(user_data)
        assert set(fields) == {"BURST_BOOT_TOKEN", "BURST_METADATA_URL"}
        pilot_id = {t["Key"]: t["Value"] for t in instance["Tags"]}["burst:pilot-id"]
        pilot_key = security.derive_key(pool_key, security.pilot(pilot_id)).hex()
        for secret in (ACCESS_KEY, SECRET_KEY, pilot_key, pool_key.hex(), "amqp", "guest"):
            assert secret.encode() not in user_data, (secret, instance["InstanceId"])
    replay = urllib.request.Request(f"{metadata_url}/v1/boot", method="POST", data=json.dumps({
        "token": fields["BURST_BOOT_TOKEN"], "instance_id": instances[-1]["InstanceId"],
        "public_key": "ab" * 32}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(replay)
    assert (refused.value.code, refused.value.read()) == (403, b"refused: token already used\n")
    events = [json.loads(line) for line in p.ok("events", "--json", "--entity", "token"
                                                 ).splitlines()]
    assert [(e["key"], e["reason"]) for e in events] == [
        ("token.refused.v1", "token already used")]


def test_the_credential_is_nowhere_in_the_clear(cloud_pool):
    p = cloud_pool
    state = p.root / "state"
    places = {"burst events": p.ok("events", "--json"), "burst status": p.ok("status", "--json")}
    for path in [*state.glob("logs/*.log"), *state.glob("cloud/vms/*/console.log"),
                 *state.glob("pilots/*/glidein.log")]:
        places[str(path)] = path.read_text(errors="replace")
    assert len(places) > 8
    for where, text in places.items():
        assert ACCESS_KEY not in text and SECRET_KEY not in text, where


def test_every_vm_is_gone_at_the_end_and_down_leaves_nothing(cloud_pool):
    p = cloud_pool
    cloud_pid = p.pid("cloud")
    live = ("pending", "running", "stopping", "stopped", "shutting-down")
    p.wait_for(lambda: not [i for i in pool_instances(p) if i["State"]["Name"] in live],
               timeout=90, what="every VM of the pool terminated")
    p.ok("down")
    assert not psutil.pid_exists(cloud_pid) or \
        psutil.Process(cloud_pid).status() == psutil.STATUS_ZOMBIE
    assert not (p.root / "state" / "run" / "cloud.json").exists()
    assert not (p.root / "state" / "run" / "metadata.json").exists()
    logs = [*(p.root / "state").glob("cloud/vms/*/console.log"),
            *(p.root / "state").glob("pilots/*/glidein.log")]
    refused = [line for log in logs for line in log.read_text().splitlines()
               if "event=refused" in line]
    assert logs and refused == []  # a retire order from the factory is sealed to its pilot
    vms = str(p.root / "state" / "cloud" / "vms")
    assert not processes_where("BURST_PILOT_WORK_DIR", lambda v: v.startswith(vms)), \
        "a VM's glidein outlived burst down"
