"""Who may do what, through the CLI and the bus, as users and a forger would try it."""

from __future__ import annotations

import json

import msgpack
import pika

from services.runtime.bus import Names
from services.runtime.codec import VERSION_HEADER
from services.runtime.rabbit import blocking_connection

LONG = "executable = /bin/sleep\narguments = 30\nqueue\n"


def test_another_owner_may_not_remove_hold_or_read_a_job_but_an_administrator_may(pool):
    job_id = pool.submit("long.sub", LONG)["jobs"][0]
    mallory = {"BURST_TOKEN_FILE": str(pool.token("mallory"))}
    for action in ("rm", "hold"):
        proc = pool.burst(action, job_id, env=mallory)
        assert proc.returncode == 1, proc.stderr
        assert "is owned by tester; only its owner or an administrator may" in proc.stderr
    (seen,) = json.loads(pool.ok("q", job_id, "--json", env=mallory))
    assert seen["owner"] == "tester" and seen["state"] in ("idle", "running")
    assert seen["cmd"] == "" and seen["args"] == ""  # details are the owner's
    assert pool.job(job_id)["cmd"] == "/bin/sleep"
    admin = {"BURST_TOKEN_FILE": ""}  # the token `burst up` made for the user who ran it
    pool.ok("rm", job_id, env=admin)
    assert pool.job(job_id)["state"] == "removed"


def test_nobody_submits_in_another_owners_name_and_nobody_without_a_token(pool):
    pool.write("one.sub", "executable = /bin/true\nqueue\n")
    proc = pool.burst("submit", "one.sub", "--owner", "alice")
    assert proc.returncode == 1 and "may not submit jobs as alice" in proc.stderr
    proc = pool.burst("submit", "one.sub", env={"BURST_TOKEN_FILE": str(pool.root / "none")})
    assert proc.returncode == 1
    assert "burst token issue" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_forged_reports_and_lost_pilots_change_nothing(pool):
    job_id = pool.submit("long2.sub", LONG)["jobs"][0]
    pool.wait_for(lambda: pool.job(job_id)["state"] == "running", what="the job running")
    running = pool.job(job_id)
    names = Names(pool.settings.namespace)
    forged = [
        (names.events, "pilot.lost.v1", "pilot.lost",
         {"pilot_id": running["pilot"], "entry": running["entry"], "reason": "forged",
          "time": 0.0}),
        (names.cmd, "job.report.v1.schedd", "job.report",
         {"job_id": job_id, "claim_id": "guessed", "pilot_id": running["pilot"],
          "state": "exited", "exit_code": 0, "output_files": {"long.sub": b"overwritten"}}),
    ]
    conn = blocking_connection(pool.settings)
    try:
        ch = conn.channel()
        for exchange, key, type_, fields in forged:
            ch.basic_publish(exchange, key, msgpack.packb(fields), pika.BasicProperties(
                type=type_, content_type="application/msgpack", headers={VERSION_HEADER: 1},
                message_id=f"forged-{type_}", delivery_mode=2))

        def dead() -> int:
            return ch.queue_declare(names.dlq(names.queue("schedd.schedd")), passive=True) \
                .method.message_count

        pool.wait_for(lambda: dead() >= 2, what="both forgeries dead-lettered")
    finally:
        conn.close()
    after = pool.job(job_id)
    assert (after["state"], after["pilot"], after["runs"]) == ("running", running["pilot"], 1)
    assert (pool.work / "long2.sub").read_text() == LONG
    pool.ok("rm", job_id)
