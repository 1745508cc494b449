"""`burst up` with object storage on the embedded cloud ([storage] endpoint = "embedded") and
one cloud entry: a 20 MB input reaches a job on a VM intact, its 20 MB output and a 3 MB
stdout come back intact, and no message on the command exchange carries a file over the
threshold; URL inputs (a local HTTP server, s3:// in the embedded bucket) reach the job,
and a URL that cannot be fetched holds the job with a reason naming it. Presigned URLs are
capabilities: none shows in events, logs or status."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest

from services.cloudspec.endpoint import CREDENTIALS, REGION
from services.runtime.rabbit import blocking_connection
from tests.e2e.conftest import CLOUD_SERVICES, Pool, running_pool
from tests.helpers import wait_until

MiB = 1024 * 1024
THRESHOLD = 1 * MiB
BUCKET = "burst-e2e-files"
CONFIG = CLOUD_SERVICES + f"""
[storage]
endpoint = "embedded"
bucket = "{BUCKET}"
inline_max_bytes = {THRESHOLD}

[[entry]]
name = "emb-aws"
site = "AWS-Embedded"
driver = "ec2"
provider = "aws"
endpoint = "embedded"
trust_domain = "embedded"
credential = "ec2-keypair"
cpus = 2
memory_mb = 1024
idle_timeout_s = 120.0
[entry.limits]
max_pilots = 1

[[group]]
name = "main"
credentials = {{ embedded = "file:embedded.creds" }}
"""
BIG_JOB = """executable = /bin/sh
transfer_executable = false
arguments = "-c 'sha256sum big.in > in.sha; head -c 20971520 /dev/urandom > big.out; \
sha256sum big.out > out.sha; yes 0123456789 | head -c 3000000'"
transfer_input_files = big.in
transfer_output_files = in.sha, big.out, out.sha
output = big.stdout
request_memory = 256
queue
"""


@pytest.fixture(scope="module")
def pool():
    files = {"embedded.creds": "AKIASTORAGEE2E00001:storage-e2e-secret\n"}
    with running_pool(CONFIG, queues=("factory.entry.emb-aws",), files=files) as p:
        p.as_user("tester")
        yield p


@pytest.fixture(scope="module")
def pilot(pool) -> str:
    """The entry's one VM, kept: a job that sleeps on one of its two cpus while the tests'
    jobs run on the other (an idle pilot would be retired between them)."""
    anchor = pool.submit("anchor.sub", "executable = /bin/sleep\ntransfer_executable = false\n"
                                       "arguments = 600\nrequest_memory = 64\nqueue\n")
    job = f"{anchor['cluster']}.0"
    found = pool.wait_for(lambda: (lambda j: j if j["state"] == "running" else None)(
        pool.job(job)), timeout=90, what="the anchor job running on a VM")
    yield found["pilot"]
    pool.ok("rm", job)


@pytest.fixture
def spy(pool: Pool, pilot: str):
    """A queue of the test's own bound to the command exchange under the keys the schedd
    sends the pilot's activations, the pilot its reports and burst submit its jobs with:
    a copy of every such message, sealed as it travels."""
    conn = blocking_connection(pool.settings)
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for key in (f"claim.activate.v1.{pilot}", "job.report.v1.schedd", "job.submit.v1.schedd"):
        ch.queue_bind(queue, f"{pool.settings.namespace}.cmd", routing_key=key)

    def copies() -> dict[str, list[int]]:
        sizes: dict[str, list[int]] = {}
        while (got := ch.basic_get(queue, auto_ack=True))[0] is not None:
            sizes.setdefault(got[0].routing_key.split(".v1")[0], []).append(len(got[2]))
        return sizes

    yield copies
    conn.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_20_mb_in_and_out_of_a_vm_intact_and_never_inside_a_message(pool, pilot, spy):
    big_in = os.urandom(20 * MiB)
    (pool.work / "big.in").write_bytes(big_in)
    cluster = pool.submit("big.sub", BIG_JOB)["cluster"]
    pool.ok("wait", str(cluster), "--timeout", "120", timeout=150)
    job = pool.job(f"{cluster}.0")
    assert (job["state"], job["exit_code"], job["provider"], job["pilot"]) == (
        "completed", 0, "aws", pilot)
    assert (pool.work / "in.sha").read_text().split()[0] == sha256(big_in)
    big_out = (pool.work / "big.out").read_bytes()
    assert len(big_out) == 20 * MiB
    assert (pool.work / "out.sha").read_text().split()[0] == sha256(big_out)
    assert (pool.work / "big.stdout").read_bytes() == (b"0123456789\n" * 300000)[:3000000]
    sizes = spy()
    assert set(sizes) == {"job.submit", "claim.activate", "job.report"}, sizes
    assert len(sizes["job.report"]) >= 2  # running, exited
    assert max(max(found) for found in sizes.values()) < THRESHOLD, sizes


def test_url_inputs_are_fetched_by_the_pilot(pool, pilot, web_root):
    root, url = web_root
    (root / "table.csv").write_text("a,b\n1,2\n")
    endpoint = pool.json("status")["services"]["cloud"]["endpoint"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    s3.put_object(Bucket=BUCKET, Key="reference/genome.fa", Body=b">chr1\nACGT\n")
    checksum = sha256(b"a,b\n1,2\n")
    cluster = pool.submit("urls.sub", f"""executable = /bin/sh
transfer_executable = false
arguments = "-c 'cat table.csv genome.fa'"
request_memory = 64
transfer_input_files = {url}/table.csv#sha256={checksum}, s3://{BUCKET}/reference/genome.fa
output = urls.out
queue
""")["cluster"]
    pool.ok("wait", str(cluster), "--timeout", "90", timeout=120)
    assert (pool.work / "urls.out").read_text() == "a,b\n1,2\n>chr1\nACGT\n"


@pytest.mark.parametrize("name, suffix, reason", [
    ("missing.csv", "", "HTTP 404"),
    ("table.csv", "#sha256=" + "0" * 64, "sha256 mismatch"),
])
def test_a_url_that_cannot_be_fetched_holds_the_job_naming_it(pool, pilot, web_root, name,
                                                               suffix, reason):
    root, url = web_root
    (root / "table.csv").write_text("a,b\n1,2\n")
    cluster = pool.submit("bad.sub", "executable = /bin/cat\ntransfer_executable = false\n"
                                     "request_memory = 64\n"
                                     f"transfer_input_files = {url}/{name}?token=t0p{suffix}\n"
                                     "queue\n")["cluster"]
    assert pool.burst("wait", str(cluster), "--timeout", "90", timeout=120).returncode == 1
    job = wait_until(lambda: (lambda j: j if j["state"] == "held" else None)(
        pool.job(f"{cluster}.0")), 10, "the job held")
    assert f"{url}/{name}" in job["hold_reason"] and reason in job["hold_reason"], job
    assert "t0p" not in job["hold_reason"]  # a URL's query may hold a secret: never shown


def test_no_presigned_url_in_events_logs_or_status(pool, pilot):
    state = pool.root / "state"
    places = {"burst events": pool.ok("events", "--json"),
              "burst status": pool.ok("status", "--json"), "burst q": pool.ok("q", "--json")}
    for path in [*state.glob("logs/*.log"), *state.glob("cloud/vms/*/console.log")]:
        places[str(path)] = path.read_text(errors="replace")
    assert any("cloud/vms" in where for where in places), places.keys()
    for where, text in places.items():
        for capability in ("X-Amz-Signature", "X-Amz-Credential"):
            assert capability not in text, (where, capability)
