"""The pilot's side of files that do not ride in messages: it fetches a job's inputs (URLs,
presigned GETs of object storage) before starting it, and puts outputs over the threshold
through the claim's presigned PUT URLs, with their sha256. Real jobs, a real HTTP server and
the embedded cloud's S3 (moto)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config

from schemas.files import FileFetch
from services.condor.slot import Resources, slot_ad
from services.glidein.executor import JobRun
from tests.unit.test_glidein_executor import CTX, activation, run_job, script, wait_result

MiB = 1024 * 1024


@pytest.fixture
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s",
                          config=Config(signature_version="s3v4"))
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def put_url(s3, key: str) -> str:
    client, bucket = s3
    return client.generate_presigned_url("put_object", ExpiresIn=600, Params={
        "Bucket": bucket, "Key": key, "ContentType": "application/octet-stream"})


def get_url(s3, key: str) -> str:
    client, bucket = s3
    return client.generate_presigned_url("get_object", ExpiresIn=600,
                                         Params={"Bucket": bucket, "Key": key})


def stored(s3, key: str) -> bytes:
    client, bucket = s3
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_inputs_are_fetched_before_the_job_starts_and_do_not_come_back(tmp_path, s3, web_root):
    root, base = web_root
    (root / "table.csv").write_bytes(b"a,b\n")
    program = b"#!/bin/sh\ncat table.csv big.bin | wc -c\n"
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="in/prog", Body=program)
    client.put_object(Bucket=bucket, Key="in/big", Body=b"x" * (3 * MiB))
    fetch = [FileFetch("run.sh", get_url(s3, "in/prog"), "run.sh", sha256(program),
                       len(program)),
             FileFetch("big.bin", get_url(s3, "in/big"), "big.bin", size=3 * MiB),
             FileFetch("table.csv", f"{base}/table.csv", f"{base}/table.csv",
                       sha256(b"a,b\n"))]
    result = run_job(activation("run.sh", fetch=fetch, fetch_max_bytes=MiB), tmp_path)
    assert (result.state, result.exit_code) == ("exited", 0), result.reason
    assert result.stdout.strip() == str(4 + 3 * MiB).encode()
    assert result.output_files == {}  # fetched inputs the job left alone are not outputs


@pytest.mark.parametrize("path, fetch_fields, reason", [
    ("/missing.csv", {}, "HTTP 404"),
    ("/table.csv", {"sha256": "0" * 64}, "sha256 mismatch: expected 000"),
    ("/table.csv", {"size": 99}, "4 bytes arrived, 99 expected"),
    ("/redirect-to/ftp://127.0.0.1/table.csv", {}, "redirected to a ftp:// URL"),
])
def test_an_input_that_cannot_be_fetched_holds_the_job_naming_it(tmp_path, web_root, path,
                                                                   fetch_fields, reason):
    root, base = web_root
    (root / "table.csv").write_bytes(b"a,b\n")
    shown = "https://data.example.org/table.csv"
    fetch = [FileFetch("table.csv", base + path, shown, **fetch_fields)]
    result = run_job(activation("/bin/true", fetch=fetch), tmp_path)
    assert result.state == "held"
    assert result.reason.startswith(f"cannot fetch input {shown}: ") and reason in result.reason
    assert base not in result.reason  # what was fetched is never shown: it may be presigned
    assert not (tmp_path / "execute" / "c1").exists()


def test_a_url_input_bigger_than_the_cap_is_refused(tmp_path, web_root):
    root, base = web_root
    (root / "big.bin").write_bytes(b"y" * 3000)
    fetch = [FileFetch("big.bin", f"{base}/big.bin", f"{base}/big.bin")]
    result = run_job(activation("/bin/true", fetch=fetch, fetch_max_bytes=1000), tmp_path)
    assert (result.state, result.reason) == (
        "held", f"cannot fetch input {base}/big.bin: 3000 bytes, over the 1000 allowed")


def test_big_outputs_and_stdout_go_through_the_upload_urls_with_their_sha256(tmp_path, s3):
    uploads = {slot: put_url(s3, f"run/{slot}") for slot in ("stdout", "stderr", "0", "1")}
    files = script("head -c 3145728 /dev/urandom > big.bin; echo small > small.txt; "
                   "yes | head -c 2000000; echo oops >&2")
    result = run_job(activation("job.sh", files=files, uploads=uploads, inline_max_bytes=MiB),
                     tmp_path)
    assert (result.state, result.exit_code) == ("exited", 0), result.reason
    assert result.output_files == {"small.txt": b"small\n"} and result.stderr == b"oops\n"
    assert result.stdout == b"" and set(result.stored_streams) == {"stdout"}
    (big,) = result.stored_files.items()
    assert big[0] == "big.bin" and big[1].slot == "0" and big[1].size == 3 * MiB
    assert sha256(stored(s3, "run/0")) == big[1].sha256
    out = result.stored_streams["stdout"]
    assert stored(s3, "run/stdout") == b"y\n" * 1000000 and out.sha256 == sha256(b"y\n" * 1000000)


def test_without_upload_urls_left_big_outputs_stay_inline_under_the_cap(tmp_path, s3):
    uploads = {"0": put_url(s3, "run2/0")}
    files = script("head -c 2000000 /dev/zero > a.bin; head -c 2000000 /dev/zero > b.bin")
    result = run_job(activation("job.sh", files=files, uploads=uploads, inline_max_bytes=MiB),
                     tmp_path)
    assert result.state == "exited"
    assert set(result.stored_files) | set(result.output_files) == {"a.bin", "b.bin"}
    assert len(result.stored_files) == 1 and len(result.output_files) == 1


def test_a_failed_upload_holds_the_job(tmp_path):
    files = script("head -c 2000000 /dev/zero > a.bin")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/b/run/0"
    result = run_job(activation("job.sh", files=files, uploads={"0": nowhere},
                                inline_max_bytes=MiB), tmp_path)
    assert result.state == "held" and result.exit_code == 0
    assert result.reason.startswith("cannot return a.bin through object storage: cannot connect")


def test_a_job_killed_while_its_inputs_arrive_never_starts(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow.bin"
        msg = activation("/bin/sh", ["-c", "touch started"],
                         fetch=[FileFetch("slow.bin", url, url)], fetch_timeout_s=30.0)
        run = JobRun(msg, slot_ad(CTX, Resources(1, 100, 10)), tmp_path)
        assert run.start() is None and run.poll() is None and run.proc is None
        began = time.monotonic()
        run.kill()
        result = wait_result(run)
        assert (result.state, result.reason) == ("held", "killed")
        assert time.monotonic() - began < 5 and run.proc is None


class _FlakyOnce(http.server.BaseHTTPRequestHandler):
    """503 to the first GET of each path, then the path's bytes; 404 to a path under /gone."""

    seen: set[str] = set()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def do_GET(self):  # noqa: N802 (the base class's name)
        first = self.path not in self.seen
        self.seen.add(self.path)
        code = 404 if self.path.startswith("/gone") else 503 if first else 200
        body = self.path.encode() if code == 200 else b""
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyOnce)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_error_is_tried_again_a_client_error_is_not(tmp_path, flaky):
    fetch = [FileFetch("data.txt", f"{flaky}/data.txt", "https://example.org/data.txt")]
    result = run_job(activation("/bin/cat", ["data.txt"], fetch=fetch), tmp_path)
    assert (result.state, result.stdout) == ("exited", b"/data.txt")
    began = time.monotonic()
    fetch = [FileFetch("x.txt", f"{flaky}/gone/x.txt", "https://example.org/x.txt")]
    result = run_job(activation("/bin/cat", fetch=fetch, claim_id="c2"), tmp_path)
    assert result.reason == "cannot fetch input https://example.org/x.txt: HTTP 404 Not Found"
    assert time.monotonic() - began < 1.0  # at once: asking again would not help
