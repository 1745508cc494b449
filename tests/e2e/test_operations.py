"""An operator's view: status, events, bad messages, crashes, a missing broker."""

from __future__ import annotations

import json
import os
import signal

import msgpack

from services.runtime.bus import Names
from services.runtime.codec import VERSION_HEADER
from services.runtime.rabbit import blocking_connection

QUICK = ('executable = /bin/echo\narguments = "hello $(Process)"\n'
         'output = q.$(Process).out\nqueue 2\n')


def test_status_reports_entries_pilots_jobs_and_services(pool):
    done = pool.submit("quick.sub", QUICK)
    pool.ok("wait", str(done["cluster"]), "--timeout", "90")
    status = pool.json("status")
    assert {e["name"] for e in status["entries"]} == {"e2e-a", "e2e-b"}
    for entry in status["entries"]:
        assert set(entry) >= {"name", "site", "driver", "provider", "endpoint", "trust_domain",
                              "pilots"}
    launched = sum(sum(e["pilots"].values()) for e in status["entries"])
    assert launched >= 1
    assert status["jobs"]["completed"] >= 2
    assert set(status["slots"]) == {"claimed", "unclaimed"}
    assert sum(status["vms"]["local"].values()) == launched
    assert set(status["services"]) == {"schedd", "negotiator", "frontend", "metadata", "factory",
                                      "web"}
    assert status["services"]["web"]["url"].startswith("http://127.0.0.1:")
    assert all(s["alive"] and s["pid"] for s in status["services"].values())


def test_events_show_the_whole_flow_of_a_job(pool):
    done = pool.submit("flow.sub", 'executable = /bin/true\nqueue\n')
    job_id = done["jobs"][0]
    pool.ok("wait", job_id, "--timeout", "90")
    events = [json.loads(line) for line in pool.ok("events", "--json").splitlines()]
    assert all({"key", "time", "message_id"} <= set(e) for e in events)
    mine = [e["key"] for e in events if e.get("job_id") == job_id]
    assert mine[0] == "job.matched.v1" and mine[-1] == "job.completed.v1"
    assert "job.running.v1" in mine
    keys = {e["key"] for e in events}
    assert {"pilot.launched.v1", "pilot.registered.v1", "slot.advertised.v1",
            "job.submitted.v1", "demand.autoclusters.v1"} <= keys
    lines = pool.ok("events", "--since", "10m").splitlines()
    assert any("job.completed.v1" in line and f"job_id={job_id}" in line for line in lines)


def test_malformed_messages_are_dead_lettered_and_no_service_stops(pool):
    names = Names(pool.settings.namespace)
    conn = blocking_connection(pool.settings)
    try:
        ch = conn.channel()
        garbage = [
            (names.cmd, "job.submit.v1.schedd", b"\xc1\xc1 not msgpack", "job.submit", 1),
            (names.cmd, "job.report.v1.schedd", msgpack.packb({"job_id": 5}), "job.report", 1),
            (names.events, "demand.autoclusters.v7", msgpack.packb({}), "demand.autoclusters", 7),
            (names.events, "slot.advertised.v1", msgpack.packb([1, 2]), "slot.advertised", 1),
        ]
        import pika

        for exchange, key, body, type_, version in garbage:
            ch.basic_publish(exchange, key, body, pika.BasicProperties(
                type=type_, content_type="application/msgpack",
                headers={VERSION_HEADER: version}, delivery_mode=2))

        def dead(queue: str) -> int:
            return ch.queue_declare(names.dlq(names.queue(queue)), passive=True) \
                .method.message_count

        pool.wait_for(lambda: dead("schedd.schedd") >= 2, what="schedd dead letters")
        pool.wait_for(lambda: dead("negotiator") >= 2, what="negotiator dead letters")
    finally:
        conn.close()
    status = pool.json("status")
    assert all(s["alive"] for s in status["services"].values())
    done = pool.submit("after.sub", QUICK)
    pool.ok("wait", str(done["cluster"]), "--timeout", "90")


def test_kill_9_of_the_schedd_loses_no_job(pool):
    done = pool.submit("many.sub", 'executable = /bin/sleep\narguments = 3\nqueue 6\n')
    cluster = str(done["cluster"])
    # Started, not "running": on a loaded machine one `burst q` can take longer than a job.
    pool.wait_for(lambda: any(j["started_at"] for j in pool.json("q", cluster)),
                  what="a job to start")
    os.kill(pool.pid("schedd"), signal.SIGKILL)
    restarted = pool.ok("up", "-d")
    assert "schedd" in restarted and "started" in restarted
    assert "negotiator  pid" in restarted and "already running" in restarted
    pool.ok("wait", str(done["cluster"]), "--timeout", "120")
    jobs = pool.json("q", str(done["cluster"]))
    assert [j["id"] for j in jobs] == done["jobs"]
    assert {j["state"] for j in jobs} == {"completed"}


def test_every_command_says_in_one_line_when_the_broker_is_unreachable(pool):
    url = "amqp://guest:guest@127.0.0.1:1/%2F"
    pool.write("one.sub", "executable = /bin/true\nqueue\n")
    for args in (["submit", "one.sub"], ["q"], ["status"], ["events"], ["wait", "1"],
                 ["rm", "1"], ["up", "-d"]):
        proc = pool.burst(*args, env={"AMQP_URL": url})
        assert proc.returncode == 3, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "127.0.0.1:1" in lines[0], (args, proc.stderr)


def _keys_since(pool, since: float, prefix: str) -> list[dict]:
    events = [json.loads(line) for line in
              pool.ok("events", "--json", "--since", str(since)).splitlines()]
    return [e for e in events if e["key"].startswith(prefix)]


def test_a_restarted_factory_adopts_its_pilots_and_launches_nothing_twice(pool):
    import time

    since = int(time.time())
    done = pool.submit("long.sub", 'executable = /bin/sleep\narguments = 6\nqueue 3\n')
    cluster = str(done["cluster"])
    pool.wait_for(lambda: all(j["state"] == "running" for j in pool.json("q", cluster)),
                  what="three running jobs")
    launched_before = len(_keys_since(pool, since, "pilot.launched."))
    os.kill(pool.pid("factory"), signal.SIGKILL)
    assert "factory" in pool.ok("up", "-d")
    pool.ok("wait", cluster, "--timeout", "120")
    assert len(_keys_since(pool, since, "pilot.launched.")) == launched_before
    assert _keys_since(pool, since, "pilot.lost.") == []
    # (It may learn of them from the pilot events that queued while it was down before its
    # adoption pass runs: either way none is lost and none launched again.)


def test_events_follow_streams_new_events_as_they_happen(pool):
    import subprocess
    import sys
    import threading
    import time

    from tests.helpers import Inbox, wait_until

    before = pool.submit("before.sub", "executable = /bin/true\nqueue\n")["jobs"][0]
    pool.ok("wait", before, "--timeout", "90")
    # AMQP timestamps are whole seconds: start the window at the next whole second, once
    # it has passed, so every event of `before` lies outside it and every later one inside.
    boundary = int(time.time()) + 1
    wait_until(lambda: time.time() >= boundary, timeout=2, what="the next whole second")
    follower = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "events", "--follow", "--json", "--since",
         str(boundary)], cwd=pool.work, env=pool.env, stdout=subprocess.PIPE, text=True)
    seen = Inbox()

    def read() -> None:
        for line in follower.stdout:
            seen.add(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    try:
        after = pool.submit("after.sub", "executable = /bin/true\nqueue\n")["jobs"][0]
        seen.wait_for_item(lambda e: e["key"] == "job.completed.v1" and e.get("job_id") == after,
                           timeout=90, what=f"job.completed of {after}")
        assert any(e["key"] == "job.submitted.v1" and after in e["jobs"] for e in seen)
        assert not [e for e in seen if e.get("job_id") == before or before in e.get("jobs", [])]
    finally:
        follower.terminate()
        follower.wait(10)
