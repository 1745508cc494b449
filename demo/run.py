"""`make demo`: the whole grow-run-shrink cycle on this machine, through the CLI.

    burst up -d ─▶ submit alice (12 × 1 cpu), bob (9 × 2 cpus), one impossible job
               ─▶ progress until every runnable job completed
               ─▶ check every output file ─▶ wait for idle pilots to retire
               ─▶ summary, and a picture of VMs and claimed slots over the demo (PNG)
               ─▶ burst down

Everything goes through the `burst` command a user would type; the demo
pool (demo/burst-demo.toml) has two local entries at two sites and short
timers. Exit status 0 means every check passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from plot import save_plot  # demo/plot.py, beside this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
BURST = [sys.executable, "-m", "services.cli.main"]
JOBS_TIMEOUT_S = 300.0
RETIRE_TIMEOUT_S = 120.0


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


def check_outputs(alice: dict, bob: dict) -> int:
    checked = 0
    for job in alice["jobs"]:
        cluster, proc = job.split(".")
        text = (WORK / "out" / f"alice.{cluster}.{proc}.out").read_text()
        if not text.startswith(f"alice job {proc} ran at Site") or "3 input lines" not in text:
            fail(f"alice job {job} wrote {text!r}")
        if (WORK / f"result.{proc}.txt").read_text() != f"result of job {proc}\n":
            fail(f"alice job {job}: result.{proc}.txt missing or wrong")
        checked += 1
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for job, word in zip(bob["jobs"], words, strict=False):
        cluster, proc = job.split(".")
        text = (WORK / "out" / f"bob.{cluster}.{proc}.out").read_text()
        if not text.startswith(f"bob says {word} from Site"):
            fail(f"bob job {job} wrote {text!r}")
        checked += 1
    pinned = (WORK / "out" / f"bob.{bob['cluster']}.pinned.out").read_text()
    if pinned != "bob pinned to SiteB\n":
        fail(f"the job pinned to SiteB wrote {pinned!r}")
    return checked + 1


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
    say("== burstwms demo: a local pool that grows on demand and shrinks again")
    say("-- starting the stack (burst up -d)")
    say(burst("up", "-d").stdout.rstrip())
    dashboard = burst_json("status")["services"]["web"]["url"]
    say(f"-- dashboard: {dashboard}  (or watch with: burst status --watch)")
    say("-- submitting")
    submitted_at = time.time()
    alice = submit("alice", "alice")
    bob = submit("bob", "bob")
    impossible = submit("impossible", "alice")
    runnable = alice["jobs"] + bob["jobs"]
    say(f"-- waiting for {len(runnable)} runnable jobs (the pool starts with no pilots)")
    first_running = progress_until_done(runnable, submitted_at)
    checked = check_outputs(alice, bob)
    say(f"-- outputs: {checked} jobs wrote what they should")
    (stuck,) = burst_json("q", impossible["jobs"][0])
    if stuck["state"] != "idle" or not stuck["idle_reason"]:
        fail(f"the impossible job should be idle with a reason, got {stuck}")
    say(f"-- job {stuck['id']} stays idle: {stuck['idle_reason']}")
    say("-- waiting for idle pilots to retire")
    status = wait_for_retirement()
    launched, retired = pilot_counts()
    say(burst("q").stdout.rstrip())
    say("== summary")
    say(f"  jobs completed:          {status['jobs'].get('completed', 0)} of {len(runnable)} "
        "runnable (+1 impossible, idle)")
    say(f"  pilots launched:         {launched}")
    say(f"  pilots retired:          {retired}")
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
