"""`make demo`: the whole grow-run-shrink cycle on this machine, through the CLI.

    burst up -d ─▶ submit alice (12 × 1 cpu), bob (9 × 2 cpus, one pinned to OpenNebula),
                   carol (one job pinned to each cloud site), dave (20 MiB in and out of an
                   OpenStack VM through the embedded cloud's S3), one impossible job
               ─▶ progress until every runnable job completed
               ─▶ check every output file (dave's by sha256), and where each job ran
                  (burst q --json)
               ─▶ wait for idle pilots to retire and for every VM to be gone
                  (DescribeInstances at the embedded cloud's endpoint), and read back the
                  user data of every VM launched: a spent boot token, no secret
               ─▶ summary: jobs and VMs per provider, and a picture of VMs and claimed
                  slots over the demo (PNG)
               ─▶ burst down

Everything goes through the `burst` command a user would type (and boto3 at
the endpoint `burst status` shows, as a user would point the aws CLI at it);
the demo pool (demo/burst-demo.toml) has a local entry and one entry per
cloud profile on the embedded cloud, and short timers. Exit status 0 means
every check passed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from plot import save_plot  # demo/plot.py, beside this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
BURST = [sys.executable, "-m", "services.cli.main"]
JOBS_TIMEOUT_S = 300.0
RETIRE_TIMEOUT_S = 120.0
CLOUD_SITES = {"aws": "AWS-Embedded", "openstack": "OpenStack-Embedded",
               "opennebula": "OpenNebula-Embedded", "eucalyptus": "Eucalyptus-Embedded"}
SITES = ("Local", *CLOUD_SITES.values())
LIVE_VM_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
# The cloud account's keys, as the group's file reference reads them: fresh each run, so
# the demo can look for them where they must never be.
ACCESS_KEY = "DEMO" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_urlsafe(24)
BIG_BYTES = 20 * 1024 * 1024  # dave's input and output: through object storage, not messages


def burst(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    cwd = WORK if WORK.exists() else REPO
    proc = subprocess.run([*BURST, *args], cwd=cwd, env={**ENV, **(env or {})},
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        fail(f"`burst {' '.join(args)}` exited {proc.returncode}: "
             f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def burst_json(*args: str):
    return json.loads(burst(*args, "--json").stdout)


def say(text: str) -> None:
    print(text, flush=True)


def fail(text: str) -> None:
    say(f"\nDEMO FAILED: {text}")
    subprocess.run([*BURST, "down"], cwd=REPO, env=ENV, capture_output=True)
    sys.exit(1)


ENV = {
    **os.environ,
    "BURST_CONFIG": str(HERE / "burst-demo.toml"),
    "BURST_STATE_DIR": str(REPO / ".burst" / "demo"),
    "BURST_NAMESPACE": os.environ.get("BURST_DEMO_NAMESPACE", "burst-demo"),
    "PYTHONPATH": str(REPO),
}


def prepare() -> None:
    burst("down", check=False)  # a stack left by an interrupted demo would compete with ours
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(HERE / "jobs", WORK)
    (WORK / "out").mkdir()
    keys = WORK / "embedded.keys"  # burst-demo.toml: embedded = "file:work/embedded.keys"
    keys.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
    keys.chmod(0o600)
    (WORK / "big.in").write_bytes(os.urandom(BIG_BYTES))  # dave's input
    shutil.rmtree(REPO / ".burst" / "demo", ignore_errors=True)


def submit(name: str, owner: str) -> dict:
    """Submit as `owner`, with a token of theirs (the demo's administrator issues it)."""
    token = WORK / f"{owner}.token"
    if not token.exists():
        burst("token", "issue", owner, "--out", str(token))
    result = json.loads(burst("submit", f"{name}.sub", "--json",
                              env={"BURST_TOKEN_FILE": str(token)}).stdout)
    say(f"  {owner:<6} {name}.sub -> cluster {result['cluster']}: {len(result['jobs'])} job(s)")
    return result


def progress_until_done(runnable: list[str], started: float) -> float | None:
    first_running = None
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in burst_json("q")}
        mine = [jobs[i] for i in runnable]
        states = {s: sum(1 for j in mine if j["state"] == s)
                  for s in ("idle", "running", "completed", "held")}
        starts = [j["started_at"] for j in mine if j["started_at"]]
        if starts and first_running is None:
            first_running = min(starts) - started
        status = burst_json("status", "--since", str(STARTED_AT))
        pilots = {}
        for entry in status["entries"]:
            for state, n in entry["pilots"].items():
                pilots[state] = pilots.get(state, 0) + n
        line = (f"  jobs idle={states['idle']} running={states['running']} "
                f"completed={states['completed']}/{len(runnable)}  pilots "
                + " ".join(f"{k}={v}" for k, v in sorted(pilots.items())))
        if line != last:
            say(f"[{time.monotonic() - T0:5.1f}s]{line}")
            last = line
        if states["held"]:
            held = [f"{j['id']}: {j['hold_reason']}" for j in mine if j["state"] == "held"]
            fail("held jobs: " + "; ".join(held))
        if states["completed"] == len(runnable):
            return first_running
        time.sleep(1.0)
    fail(f"jobs did not complete within {JOBS_TIMEOUT_S:g}s")
    return None


def ran_at_a_site(text: str, prefix: str) -> bool:
    return any(text.startswith(f"{prefix}{site}") for site in SITES)


def check_big_files() -> str:
    """dave's 20 MiB arrived at the VM and came back as they were (sha256 on both sides)."""
    sent = hashlib.sha256((WORK / "big.in").read_bytes()).hexdigest()
    returned = (WORK / "big.out").read_bytes()
    seen_in = (WORK / "dave.in.sha").read_text().split()[0]
    seen_out = (WORK / "dave.out.sha").read_text().split()[0]
    if seen_in != sent:
        fail(f"dave's job read big.in with sha256 {seen_in}, {sent} was sent")
    if len(returned) != BIG_BYTES or hashlib.sha256(returned).hexdigest() != seen_out:
        fail("dave's big.out did not come back as the job wrote it")
    return sent


def check_outputs(alice: dict, bob: dict, carol: dict) -> int:
    checked = 0
    for job in alice["jobs"]:
        cluster, proc = job.split(".")
        text = (WORK / "out" / f"alice.{cluster}.{proc}.out").read_text()
        if not ran_at_a_site(text, f"alice job {proc} ran at ") or "3 input lines" not in text:
            fail(f"alice job {job} wrote {text!r}")
        if (WORK / f"result.{proc}.txt").read_text() != f"result of job {proc}\n":
            fail(f"alice job {job}: result.{proc}.txt missing or wrong")
        checked += 1
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for job, word in zip(bob["jobs"], words, strict=False):
        cluster, proc = job.split(".")
        text = (WORK / "out" / f"bob.{cluster}.{proc}.out").read_text()
        if not ran_at_a_site(text, f"bob says {word} from "):
            fail(f"bob job {job} wrote {text!r}")
        checked += 1
    pinned = (WORK / "out" / f"bob.{bob['cluster']}.pinned.out").read_text()
    if pinned != "bob pinned to OpenNebula-Embedded\n":
        fail(f"the job pinned to OpenNebula-Embedded wrote {pinned!r}")
    for job, site in zip(carol["jobs"], CLOUD_SITES.values(), strict=True):
        cluster, proc = job.split(".")
        text = (WORK / "out" / f"carol.{cluster}.{proc}.out").read_text()
        if text != f"carol asked for {site} and ran at {site}\n":
            fail(f"carol job {job} wrote {text!r}")
        checked += 1
    return checked + 1


def jobs_per_provider(runnable: list[str], pinned: dict[str, str]) -> Counter:
    """Where each job ran, as `burst q --json` says; pinned jobs must be where they asked."""
    jobs = {j["id"]: j for j in burst_json("q")}
    for job_id, provider in pinned.items():
        if jobs[job_id]["provider"] != provider:
            fail(f"job {job_id} was pinned to {provider} but ran at {jobs[job_id]['provider']}")
    where = Counter(jobs[i]["provider"] for i in runnable)
    missing = set(CLOUD_SITES) - set(where)
    if missing:
        fail(f"no job ran at {', '.join(sorted(missing))}")
    return where


def ec2_client():
    """boto3 at the embedded cloud, where `burst status` says it listens (any keys do)."""
    import boto3

    endpoint = burst_json("status")["services"]["cloud"]["endpoint"]
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="demo", aws_secret_access_key="demo")


def pool_vms(ec2) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:burst:pool", "Values": [ENV["BURST_NAMESPACE"]]}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def wait_until_every_vm_is_gone(ec2) -> list[dict]:
    """OpenStack and OpenNebula leave a shut-down VM stopped: the factory terminates it."""
    deadline = time.monotonic() + RETIRE_TIMEOUT_S
    while time.monotonic() < deadline:
        vms = pool_vms(ec2)
        if not [vm for vm in vms if vm["State"]["Name"] in LIVE_VM_STATES]:
            return vms
        time.sleep(1.0)
    left = {vm["InstanceId"]: vm["State"]["Name"] for vm in pool_vms(ec2)
            if vm["State"]["Name"] in LIVE_VM_STATES}
    fail(f"VMs still there after {RETIRE_TIMEOUT_S:g}s: {left}")
    return []


def check_user_data(ec2, vms: list[dict]) -> None:
    """What anyone who can read a VM's user data gets: a spent token and an address."""
    for vm in vms:
        answer = ec2.describe_instance_attribute(InstanceId=vm["InstanceId"],
                                                 Attribute="userData")
        user_data = base64.b64decode(answer["UserData"]["Value"])
        if set(json.loads(user_data)) != {"BURST_BOOT_TOKEN", "BURST_METADATA_URL"}:
            fail(f"{vm['InstanceId']}: user data holds more than a boot token: "
                 f"{sorted(json.loads(user_data))}")
        for secret in (ACCESS_KEY, SECRET_KEY, "amqp://"):
            if secret.encode() in user_data:
                fail(f"{vm['InstanceId']}: a secret in its user data")


def wait_for_retirement() -> dict:
    deadline = time.monotonic() + RETIRE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = burst_json("status", "--since", str(STARTED_AT))
        live = sum(n for e in status["entries"] for s, n in e["pilots"].items()
                   if s in ("pending", "idle", "busy", "retiring"))
        if live == 0:
            return status
        time.sleep(1.0)
    fail(f"idle pilots did not retire within {RETIRE_TIMEOUT_S:g}s")
    return {}


def series_since(dashboard: str, start: float) -> dict:
    """The dashboard's counts over time since the demo started."""
    with urllib.request.urlopen(f"{dashboard}api/series?since={start:.0f}", timeout=10) as r:
        return json.load(r)


def pilot_counts() -> tuple[int, int]:
    launched = retired = 0
    for line in burst("events", "--json", "--since", str(STARTED_AT)).stdout.splitlines():
        key = json.loads(line)["key"]
        launched += key.startswith("pilot.launched.")
        retired += key.startswith("pilot.exited.")
    return launched, retired


def main() -> None:
    global T0, STARTED_AT
    T0 = time.monotonic()
    STARTED_AT = int(time.time())  # the event log keeps earlier demos: count only this one
    prepare()
    say("== burstwms demo: a pool that grows on demand onto local processes and four clouds "
        "(AWS, OpenStack, OpenNebula, Eucalyptus: embedded), and shrinks again")
    say("-- starting the stack (burst up -d)")
    say(burst("up", "-d").stdout.rstrip())
    dashboard = burst_json("status")["services"]["web"]["url"]
    say(f"-- dashboard: {dashboard}  (or watch with: burst status --watch)")
    say("-- submitting")
    submitted_at = time.time()
    alice = submit("alice", "alice")
    bob = submit("bob", "bob")
    carol = submit("carol", "carol")
    dave = submit("dave", "dave")
    impossible = submit("impossible", "alice")
    runnable = alice["jobs"] + bob["jobs"] + carol["jobs"] + dave["jobs"]
    say(f"-- waiting for {len(runnable)} runnable jobs (the pool starts with no pilots)")
    first_running = progress_until_done(runnable, submitted_at)
    checked = check_outputs(alice, bob, carol)
    big = check_big_files()
    say(f"-- outputs: {checked + 1} jobs wrote what they should; dave's 20 MiB went to an "
        f"OpenStack VM and 20 MiB came back through object storage, sha256 checked "
        f"(in: {big[:12]}...)")
    pinned = {bob["jobs"][-1]: "opennebula", dave["jobs"][0]: "openstack",
              **dict(zip(carol["jobs"], CLOUD_SITES, strict=True))}
    where = jobs_per_provider(runnable, pinned)
    say("-- jobs per provider: " + " ".join(f"{p}={n}" for p, n in sorted(where.items())))
    vms_seen = burst_json("status", "--since", str(STARTED_AT))["vms"]
    say("-- VMs per provider:  " + "  ".join(
        f"{provider}: " + " ".join(f"{state}={n}" for state, n in sorted(states.items()))
        for provider, states in sorted(vms_seen.items())))
    (stuck,) = burst_json("q", impossible["jobs"][0])
    if stuck["state"] != "idle" or not stuck["idle_reason"]:
        fail(f"the impossible job should be idle with a reason, got {stuck}")
    say(f"-- job {stuck['id']} stays idle: {stuck['idle_reason']}")
    say("-- waiting for idle pilots to retire")
    status = wait_for_retirement()
    launched, retired = pilot_counts()
    ec2 = ec2_client()
    vms = wait_until_every_vm_is_gone(ec2)
    check_user_data(ec2, vms)
    say(f"-- the embedded cloud lists {len(vms)} VMs of the pool, none running or stopped; "
        "the user data of each holds a spent boot token and nothing secret")
    say(burst("q").stdout.rstrip())
    say(burst("status", "--since", str(STARTED_AT)).stdout.rstrip())
    say("== summary")
    say(f"  jobs completed:          {status['jobs'].get('completed', 0)} of {len(runnable)} "
        "runnable (+1 impossible, idle)")
    say("  jobs per provider:       " + ", ".join(f"{p} {n}" for p, n in sorted(where.items())))
    say("  pilots/VMs per provider: " + ", ".join(
        f"{p} {sum(states.values())}" for p, states in sorted(status["vms"].items())))
    say(f"  pilots launched:         {launched}")
    say(f"  pilots retired:          {retired}")
    say(f"  VMs left in the cloud:   0 of {len(vms)}")
    say(f"  submit to first running: {first_running:.1f} s")
    say(f"  whole demo:              {time.monotonic() - T0:.1f} s")
    picture = save_plot(series_since(dashboard, STARTED_AT), STARTED_AT, WORK / "pool.png")
    say(f"  picture:                 {picture}")
    burst("rm", impossible["jobs"][0], "--reason", "demo over")
    say(burst("down").stdout.rstrip())
    say("DEMO OK")


T0 = 0.0
STARTED_AT = 0

if __name__ == "__main__":
    main()
