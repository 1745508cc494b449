"""One burst on a real pool, seen as a user sees it: `burst status --watch`, the folded
views against the schedd's queue and the driver's pilot processes, `burst events` filters,
and the dashboard in headless Chromium (a screenshot is kept as a test artifact)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from services.factory.drivers.local import LocalDriver
from tests.helpers import Inbox

BURST = "executable = /bin/sleep\narguments = 2\nqueue 4\n"
LIVE = ("pending", "idle", "busy", "retiring")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("BURST_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")


def watch_status(pool) -> tuple[subprocess.Popen, Inbox]:
    """`burst status --watch --json` in the background; its lines land in the inbox."""
    proc = subprocess.Popen([sys.executable, "-m", "services.cli.main", "status", "--watch",
                             "--json"], cwd=pool.work, env=pool.env, stdout=subprocess.PIPE,
                            text=True)
    lines = Inbox()

    def read() -> None:
        for line in proc.stdout:
            lines.add(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


@pytest.fixture(scope="module")
def burst(pool):
    """Four 2-second jobs on an empty pool, watched from before they were submitted."""
    watcher, statuses = watch_status(pool)
    try:
        statuses.wait_for(len, timeout=30, what="the first status line")
        done = pool.submit("burst.sub", BURST)
        pool.ok("wait", str(done["cluster"]), "--timeout", "90")
        statuses.wait_for_item(lambda s: s["jobs"]["completed"] == 4, timeout=30,
                               what="the watch to show 4 completed jobs")
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(10)
    return {**done, "statuses": list(statuses), "watch_exit": code}


def test_status_watch_shows_the_burst_as_it_happens_and_ctrl_c_exits_0(burst):
    statuses = burst["statuses"]
    assert burst["watch_exit"] == 0
    assert statuses[0]["jobs"]["completed"] == 0
    assert any(s["jobs"]["running"] > 0 and s["slots"]["claimed"] > 0 for s in statuses)
    assert statuses[-1]["jobs"]["completed"] == 4
    assert all(statuses[i] != statuses[i + 1] for i in range(len(statuses) - 1))


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def disagreements(pool, url: str) -> list[str]:
    """Where the folds (dashboard, `burst status`) differ from the schedd's queue and from
    the pilot processes the local driver finds; [] when they all agree."""
    fold = get_json(url + "api/pool")
    status = pool.json("status")
    queue = {job["id"]: job for job in pool.json("q")}
    driver = LocalDriver(pool.settings.path("pilots"))
    running = {i.pilot_id for e in ("e2e-a", "e2e-b") for i in driver.instances(e)
               if i.state == "running"}
    live = {pid for pid, p in fold["pilots_by_id"].items() if p["state"] in LIVE}
    problems = []
    states = {job_id: job["state"] for job_id, job in fold["jobs_by_id"].items()}
    if states != {job_id: job["state"] for job_id, job in queue.items()}:
        problems.append(f"job states: fold {states}, queue {queue}")
    for job_id, job in queue.items():
        if job["state"] == "completed" and fold["jobs_by_id"][job_id]["entry"] != job["entry"]:
            problems.append(f"job {job_id} ran at {job['entry']}, the fold says "
                            f"{fold['jobs_by_id'][job_id]['entry']}")
    if live != running:
        problems.append(f"live pilots: fold {sorted(live)}, processes {sorted(running)}")
    if status["jobs"] != {**dict.fromkeys(status["jobs"], 0),
                          **Counter(j["state"] for j in queue.values())}:
        problems.append(f"burst status jobs {status['jobs']}")
    for entry in status["entries"]:
        mine = Counter(p["state"] for p in fold["pilots_by_id"].values()
                       if p["entry"] == entry["name"])
        if entry["pilots"] != dict(mine):
            problems.append(f"{entry['name']}: status {entry['pilots']}, dashboard {mine}")
    return problems


def test_the_folded_views_agree_with_the_queue_and_the_pilot_processes(pool, burst):
    url = pool.web_url()
    pool.wait_for(lambda: not disagreements(pool, url), timeout=30,
                  what=f"the views to agree: {disagreements(pool, url)}")
    fold = get_json(url + "api/pool")
    assert {j["state"] for j in fold["jobs_by_id"].values()} == {"completed"}
    assert len(fold["jobs_by_id"]) == 4 and fold["pilots_by_id"]
    for pilot_id in fold["pilots_by_id"]:  # every pilot the fold knows was really started
        assert (pool.settings.path("pilots") / pilot_id).is_dir(), pilot_id


def events(pool, *filters: str) -> list[dict]:
    return [json.loads(line) for line in pool.ok("events", "--json", *filters).splitlines()]


def test_events_filters_combine(pool, burst):
    job = burst["jobs"][2]
    mine = events(pool, "--job", job)
    assert {e["key"] for e in mine} >= {"job.submitted.v1", "job.running.v1",
                                        "job.completed.v1"}
    assert all(e.get("job_id") == job or job in e.get("jobs", []) for e in mine)
    pilots_a = events(pool, "--entity", "pilot", "--entry", "e2e-a")
    assert pilots_a and {e["entry"] for e in pilots_a} == {"e2e-a"}
    assert {e["key"].split(".")[0] for e in pilots_a} == {"pilot"}
    assert [e["key"] for e in events(pool, "--key", "job.c*", "--owner", "tester")] == \
        ["job.completed.v1"] * 4
    assert events(pool, "--key", "slot.*", "--owner", "tester") == []  # slots have no owner


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium "
                    "(apt-get install chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_the_dashboard_draws_the_bursts_curve_and_a_job_page(pool, burst, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    url = pool.web_url()
    page.goto(url)
    # The page says when its plot holds a burst: slots claimed, then fewer.
    page.wait_for_function("document.body.dataset.burst === 'shown'", timeout=20_000)
    page.wait_for_function("document.body.dataset.live === 'open'", timeout=10_000)
    assert int(page.get_attribute("body", "data-claimed-max")) >= 2
    assert int(page.get_attribute("body", "data-points")) > 2
    assert page.locator('#plot-vms path[data-series="slots claimed"]').count() == 1
    assert page.locator('#plot-vms path[data-series="VMs running"]').count() == 1
    page.locator("#feed li", has_text="job.completed.v1").first.wait_for(timeout=10_000)
    assert page.locator("#entries tbody tr").count() == 2
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    job = burst["jobs"][0]
    page.goto(f"{url}job/{job}")
    assert page.get_attribute("body", "data-state") == "completed"
    text = page.inner_text("main")
    assert "job.running.v1" in text and "job.completed.v1" in text
    # Its trace, from the span store every service writes: the submission comes first.
    assert int(page.get_attribute("#trace [data-trace]", "data-trace")) > 1
    assert page.inner_text("#trace li:first-child").startswith("handle job.submit schedd")
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)
    assert errors == []

