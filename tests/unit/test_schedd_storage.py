"""The schedd with object storage (the embedded cloud's S3, moto): big inputs staged by burst
submit through presigned PUTs and handed to the pilot as presigned GETs, upload URLs per job
for big outputs, which it fetches, checks against the pilot's sha256 and writes into Iwd;
URL inputs handed to the pilot, s3:// ones presigned, or refused when there is no storage."""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from schemas import job as J
from schemas.files import StoredFile, StoredOutput
from schemas.slot import ClaimActivate, SlotAdvertised
from services.cli import inputs
from services.condor.submit import parse_submit_file
from services.runtime import httpfiles
from services.runtime.bus import RemoteError
from services.runtime.config import StorageConfig
from services.schedd.storage import ObjectStore
from tests.unit.test_schedd import Harness, job_ad

MiB = 1024 * 1024
BIG = b"big input " * 300_000  # 3 MB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def storage(s3_endpoint, settings, tmp_path) -> ObjectStore:
    keys = tmp_path / "s3.keys"
    keys.write_text("AKIATESTSTORAGE:not-a-real-secret\n")
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    config = StorageConfig(endpoint=s3_endpoint, bucket=bucket, region="us-east-1",
                           credentials=f"file:{keys}", inline_max_bytes=MiB, output_slots=2)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="a", aws_secret_access_key="b").create_bucket(Bucket=bucket)
    return ObjectStore(config, settings, "s1")


@pytest.fixture
def h(settings, tmp_path, storage):
    harness = Harness(settings, tmp_path, storage=storage, files=storage.config)
    yield harness
    harness.bus.stop()


def keys(storage: ObjectStore) -> list[str]:
    listing = storage._client().list_objects_v2(Bucket=storage.config.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def submit_staged(h: Harness, tmp_path: Path, ad: str, big: bytes = BIG,
                  upload: bool = True) -> int:
    """What burst submit does with a file over the threshold: stage, PUT, submit."""
    allocated = h.bus.call(J.ClusterNew(owner="alice"), to="s1")
    assert allocated.inline_max_bytes == MiB
    file = StoredFile(sha256(big), len(big))
    urls = h.bus.call(J.InputStage(cluster=allocated.cluster, owner="alice", files=[file]),
                      to="s1").urls
    if upload:
        (tmp_path / "big.dat").write_bytes(big)
        with open(tmp_path / "big.dat", "rb") as data:
            httpfiles.upload(urls[file.sha256], data, len(big), timeout_s=10)
    h.bus.call(J.JobSubmit(cluster=allocated.cluster, owner="alice", submit_file="x.sub",
                           procs=[J.ProcAd(0, ad, inputs=0)],
                           input_sets=[{"small.txt": b"small"}],
                           stored_inputs=[{"big.dat": file}]), to="s1")
    return allocated.cluster


def activated(h: Harness) -> ClaimActivate:
    h.offer(h.demand().autoclusters[0].id)
    (msg,) = h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    return msg


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def test_a_big_input_reaches_the_pilot_through_object_storage_not_the_activation(h, tmp_path,
                                                                                  storage):
    submit_staged(h, tmp_path, job_ad(tmp_path, cmd=str(tmp_path / "big.dat"),
                                      TransferOutput="r.txt"))
    msg = activated(h)
    assert msg.files == {"small.txt": b"small"}
    assert msg.executable == "big.dat"  # it travels (through object storage), by its name
    (item,) = msg.fetch
    assert (item.name, item.source, item.sha256, item.size) == ("big.dat", "big.dat",
                                                                 sha256(BIG), len(BIG))
    assert fetch(item.url) == BIG
    assert sorted(msg.uploads) == ["0", "stderr", "stdout"]  # one per listed output
    for url in (item.url, *msg.uploads.values()):  # they expire ([storage] url_expiry_s)
        assert "X-Amz-Expires=3600&" in url and "X-Amz-Signature=" in url
    assert msg.inline_max_bytes == MiB


def test_stored_inputs_that_never_arrived_are_refused_at_submit(h, tmp_path):
    with pytest.raises(RemoteError, match="input file big.dat was not uploaded"):
        submit_staged(h, tmp_path, job_ad(tmp_path), upload=False)
    assert h.q() == {}


def test_only_the_owner_may_stage_and_only_before_the_submission(h, tmp_path):
    cluster = submit_staged(h, tmp_path, job_ad(tmp_path))
    with pytest.raises(RemoteError, match=f"cluster {cluster} is not one of alice's waiting"):
        h.bus.call(J.InputStage(cluster=cluster, owner="alice",
                                files=[StoredFile(sha256(b""), 0)]), to="s1")


def pilot_returns(h: Harness, msg: ClaimActivate, outputs: dict[str, bytes], stdout: bytes,
                  **report) -> None:
    """The pilot's side: PUT each file through an upload URL, report its sha256 and size."""
    def put(slot: str, data: bytes) -> StoredOutput:
        path = h.tmp_path / f"upload.{slot}"
        path.write_bytes(data)
        with open(path, "rb") as file:
            return StoredOutput(slot, httpfiles.upload(msg.uploads[slot], file, len(data),
                                                       timeout_s=10), len(data))

    files = {name: put(str(i), data) for i, (name, data) in enumerate(outputs.items())}
    fields = {"stored_files": files, "stored_streams": {"stdout": put("stdout", stdout)},
              **report}
    h.report(msg.job_id, msg.claim_id, "exited", exit_code=0, **fields)


def test_big_outputs_are_fetched_checked_and_written_then_deleted(h, tmp_path, storage):
    submit_staged(h, tmp_path, job_ad(tmp_path, TransferOutput="r.txt"))
    msg = activated(h)
    result = b"r" * (2 * MiB)
    pilot_returns(h, msg, {"r.txt": result}, b"o" * (3 * MiB), stderr=b"small err\n")
    job = h.q()["1.0"]
    assert (job.state, job.exit_code) == ("completed", 0), job.hold_reason
    assert (tmp_path / "r.txt").read_bytes() == result
    assert (tmp_path / "job.out").read_bytes() == b"o" * (3 * MiB)
    assert (tmp_path / "job.err").read_bytes() == b"small err\n"
    assert keys(storage) == [f"{h.settings.namespace}/s1/1/in/{sha256(BIG)}"]  # run's gone
    assert not list((tmp_path / "spool" / ".incoming").iterdir())


def test_an_output_whose_sha256_differs_holds_the_job_and_writes_nothing(h, tmp_path):
    submit_staged(h, tmp_path, job_ad(tmp_path, TransferOutput="r.txt"))
    msg = activated(h)
    pilot_returns(h, msg, {"r.txt": b"r" * (2 * MiB)}, b"out",
                  stored_files={"r.txt": StoredOutput("0", "0" * 64, 2 * MiB)})
    job = h.q()["1.0"]
    assert job.state == "held" and job.hold_reason.startswith(
        "output r.txt from object storage: sha256 mismatch: reported 0000")
    assert not (tmp_path / "r.txt").exists() and not (tmp_path / "job.out").exists()


@pytest.mark.parametrize("stored, reason", [
    ({"r.txt": StoredOutput("5", "0" * 64, 1)}, "upload URLs the job was not given"),
    ({"other.txt": StoredOutput("0", "0" * 64, 1)}, "'other.txt', which transfer_output_files"),
    ({"r.txt": StoredOutput("0", "0" * 64, 99)}, "output r.txt from object storage: NoSuchKey"),
])
def test_a_report_naming_what_was_not_put_or_not_asked_for_holds_the_job(h, tmp_path, stored,
                                                                          reason):
    h.submit([job_ad(tmp_path, TransferOutput="r.txt")])
    msg = activated(h)
    h.report(msg.job_id, msg.claim_id, "exited", exit_code=0, stored_files=stored)
    job = h.q()["1.0"]
    assert job.state == "held" and reason in job.hold_reason, job.hold_reason


def test_url_inputs_go_to_the_pilot_s3_ones_presigned(h, tmp_path, storage):
    storage._client().put_object(Bucket=storage.config.bucket, Key="ref/genome.fa",
                                 Body=b">chr1\n")
    checksum = "ab" * 32
    h.submit([job_ad(tmp_path, TransferInput=f"https://x.org/d/t.csv?sig=1#sha256={checksum}, "
                                             f"s3://{storage.config.bucket}/ref/genome.fa")])
    msg = activated(h)
    by_name = {item.name: item for item in msg.fetch}
    assert (by_name["t.csv"].url, by_name["t.csv"].source, by_name["t.csv"].sha256) == (
        "https://x.org/d/t.csv?sig=1", "https://x.org/d/t.csv", checksum)
    genome = by_name["genome.fa"]
    assert genome.source == f"s3://{storage.config.bucket}/ref/genome.fa"
    assert fetch(genome.url) == b">chr1\n"
    assert msg.fetch_max_bytes == storage.config.url_max_bytes


def test_without_object_storage_s3_inputs_are_refused_naming_the_url(settings, tmp_path):
    h = Harness(settings, tmp_path)
    try:
        assert h.bus.call(J.ClusterNew(owner="alice"), to="s1").inline_max_bytes == 0
        with pytest.raises(RemoteError, match="input s3://b1/k/x.dat: s3:// inputs come from "
                                              "the pool's object storage"):
            h.submit([job_ad(tmp_path, TransferInput="s3://b1/k/x.dat")])
        h.submit([job_ad(tmp_path, TransferInput="http://x.org/a.txt")])
        msg = activated(h)
        assert msg.uploads == {} and msg.inline_max_bytes == 0
        assert [item.url for item in msg.fetch] == ["http://x.org/a.txt"]
    finally:
        h.bus.stop()


def test_a_claim_whose_pilot_still_lists_the_job_does_not_expire(settings, tmp_path):
    h = Harness(settings, tmp_path, claim_timeout_s=0.0)  # every claim would be late at once
    try:
        h.submit([job_ad(tmp_path)] * 2)
        h.offer(h.demand().autoclusters[0].id, n=2)
        h.pilot_inbox.wait_for(lambda items: len(items) == 2)
        h.bus.emit(SlotAdvertised(pilot_id="p1", ad="[]", state="busy", free_cpus=0,
                                  free_memory_mb=0, free_disk_mb=0, jobs=["1.0"]))
        h.bus.wait_idle()
        h.schedd.expire_claims()
        h.bus.wait_idle()
        claims = {row["proc"]: row["claim_id"] for row in h.store.read(
            "SELECT proc, claim_id FROM jobs WHERE cluster = 1")}
        assert claims == {0: "c0", 1: None}  # 1.1 went back to idle
        requeued = [e for e in h.events.items if isinstance(e, J.JobRequeued)]
        assert [(e.job_id, e.reason) for e in requeued] == [
            ("1.1", "pilot p1 did not start it within 0s")]
    finally:
        h.bus.stop()


def test_burst_submit_hashes_big_files_and_reads_only_small_ones(tmp_path, storage):
    (tmp_path / "big.dat").write_bytes(BIG)
    (tmp_path / "small.txt").write_bytes(b"small")
    path = tmp_path / "job.sub"
    path.write_text("executable = /bin/cat\ntransfer_executable = false\n"
                    "transfer_input_files = big.dat, small.txt\nqueue 2\n")
    specs = parse_submit_file(path, cluster=4, owner="alice")
    found = inputs.read(specs, str(path), 4, inline_max_bytes=MiB)
    assert found.sets == [{"small.txt": b"small"}] and found.index == {0: 0, 1: 0}
    assert found.stored() == [{"big.dat": StoredFile(sha256(BIG), len(BIG))}]
    (big,) = found.uploads().values()
    url = storage.presign_put(storage.input_key(4, big.sha256))
    (tmp_path / "big.dat").write_bytes(BIG[::-1])  # changed after it was read
    with pytest.raises(inputs.InputError, match="changed while it was sent; submit again"):
        inputs.upload(found.uploads(), {big.sha256: url}, str(path))
    (tmp_path / "big.dat").write_bytes(BIG)
    inputs.upload(found.uploads(), {big.sha256: url}, str(path))
    assert fetch(storage.presign_get(storage.input_key(4, big.sha256))) == BIG


def test_with_the_embedded_cloud_down_jobs_run_and_their_outputs_return_inline(settings,
                                                                                tmp_path):
    down = ObjectStore(StorageConfig(endpoint="embedded"), settings, "s1")  # no cloud.json
    h = Harness(settings, tmp_path, storage=down, files=down.config)
    try:
        h.submit([job_ad(tmp_path)])
        msg = activated(h)
        assert msg.uploads == {} and msg.fetch == []
        h.report(msg.job_id, msg.claim_id, "exited", exit_code=0, stdout=b"inline\n")
        assert h.q()["1.0"].state == "completed"
        assert (tmp_path / "job.out").read_text() == "inline\n"
    finally:
        h.bus.stop()
