"""What an operator sees of a burst: one trace per job across every service, and /metrics
of every service that agree with `burst q` and `burst status` (issue 10's acceptance)."""

from __future__ import annotations

import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

SUBMIT = """\
executable = /bin/sh
arguments = "-c 'echo traced $(Process)'"
output = traced.$(Process).out
queue 3
"""
LIVE_PILOT_STATES = ("pending", "idle", "busy", "retiring")


@pytest.fixture(scope="module")
def burst(pool):
    """A small burst, completed."""
    submitted = pool.submit("traced.sub", SUBMIT)
    pool.ok("wait", str(submitted["cluster"]), "--timeout", "120")
    return submitted


def chain(span: dict, by_id: dict[str, dict]) -> list[dict]:
    """The span and its ancestors, up to the root."""
    found = [span]
    while found[-1]["parent_id"]:
        found.append(by_id[found[-1]["parent_id"]])
    return found


def test_a_jobs_trace_is_one_tree_from_submission_through_every_service(pool, burst):
    job = burst["jobs"][0]
    trace = pool.wait_for(lambda: _trace_with_output(pool, job), 30, "the job's whole trace")
    spans = trace["spans"]
    by_id = {span["span_id"]: span for span in spans}
    assert {span["trace_id"] for span in spans} == {trace["trace_id"]}
    roots = [span for span in spans if not span["parent_id"]]
    assert [root["name"] for root in roots] == ["handle job.submit"]
    assert roots[0]["service"] == "schedd" and roots[0]["attributes"]["burst.cluster"] == \
        burst["cluster"]
    assert all(span["parent_id"] in by_id for span in spans if span["parent_id"])
    assert all(span["duration_ms"] >= 0 for span in spans)
    assert {"schedd", "frontend", "factory", "glidein", "negotiator"} <= \
        {span["service"] for span in spans}
    # The output's way back leads up through execution, the activation, the match and the
    # submission; the pilot's registration through its launch and the frontend's decision.
    (returned,) = [s for s in spans if s["name"] == "return output"]
    assert [(s["service"], s["name"]) for s in chain(returned, by_id)
            if s["name"] in ("execute job", "activate claim", "match", "handle job.submit")] == \
        [("glidein", "execute job"), ("schedd", "activate claim"), ("negotiator", "match"),
         ("schedd", "handle job.submit")]
    assert returned["attributes"]["burst.job"] == job
    registered = [s for s in spans if s["name"] == "register"]
    assert registered
    for span in registered:
        steps = [(s["service"], s["name"]) for s in chain(span, by_id)]
        assert ("factory", "launch pilot") in steps and \
            ("frontend", "decide: request pilots") in steps
    # Only this job's own phases: another job of the cluster is left out.
    assert {s["attributes"].get("burst.job", job) for s in spans} == {job}


def _trace_with_output(pool, job: str) -> dict | None:
    proc = pool.burst("trace", job, "--json")
    if proc.returncode != 0:
        return None
    import json

    trace = json.loads(proc.stdout)
    names = {span["name"] for span in trace["spans"]}
    return trace if {"return output", "write outputs", "register"} <= names else None


def test_burst_trace_prints_the_tree_with_services_and_durations(pool, burst):
    job = burst["jobs"][1]
    pool.wait_for(lambda: _trace_with_output(pool, job), 30, "the job's trace")
    text = pool.ok("trace", job)
    assert text.startswith("trace ") and f"job {job}" in text
    for service in ("schedd", "frontend", "factory", "glidein", "negotiator"):
        assert f" {service} " in text
    assert " ms  " in text and "execute job" in text


def test_a_job_without_a_trace_is_one_line_and_exit_1(pool):
    proc = pool.burst("trace", "9999.0")
    assert proc.returncode == 1 and proc.stderr.startswith("burst: no trace of 9999.0")


def test_the_dashboards_job_page_shows_the_trace(pool, burst):
    job = burst["jobs"][2]
    pool.wait_for(lambda: _trace_with_output(pool, job), 30, "the job's trace")
    page = pool.wait_for(lambda: _page(f"{pool.web_url()}job/{job}"), 30, "the job page")
    assert 'data-trace="none"' not in page and "execute job" in page and "negotiator" in page


def _page(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None


def scrape(url: str) -> dict[str, list]:
    """Samples by metric name, as Prometheus's own text parser reads them."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_every_service_serves_metrics_that_agree_with_q_and_status(pool, burst):
    status = pool.json("status")
    services = status["services"]
    assert {"schedd", "negotiator", "frontend", "metadata", "factory", "web"} <= set(services)
    scraped = {name: scrape(state["metrics"]) for name, state in services.items()}
    for name, samples in scraped.items():  # the runtime's metrics are everywhere
        assert "burst_queue_messages" in samples or name == "web", name
    assert any(s.labels["queue"].endswith(".dlq") for s in scraped["schedd"]
               ["burst_queue_messages"])
    handled = scraped["schedd"]["burst_messages_handled_total"]
    assert {s.labels["schema"] for s in handled} >= {"job.submit", "job.report", "match.offer"}

    jobs = Counter(job["state"] for job in pool.json("q"))
    schedd_jobs = {s.labels["state"]: s.value for s in scraped["schedd"]["burst_schedd_jobs"]}
    assert {state: n for state, n in schedd_jobs.items() if n} == dict(jobs)
    web_jobs = {s.labels["state"]: s.value for s in scrape(services["web"]["metrics"])
                ["burst_pool_jobs"]}
    assert {state: n for state, n in web_jobs.items() if n} == \
        {state: n for state, n in status["jobs"].items() if n}

    def pilots_agree() -> bool:
        live = {(e["name"], state): n for e in pool.json("status")["entries"]
                for state, n in e["pilots"].items() if state in LIVE_PILOT_STATES and n}
        factory = {(s.labels["entry"], s.labels["state"]): s.value for s in
                   scrape(services["factory"]["metrics"])["burst_factory_pilots"] if s.value}
        return live == factory

    pool.wait_for(pilots_agree, 30, "the factory's pilots to agree with burst status")

    flow = {s.labels["step"]: s.value for s in scrape(services["web"]["metrics"])
            ["burst_flow_seconds_count"]}
    assert flow["submitted_to_completed"] >= 3 and flow["launched_to_registered"] >= 1
