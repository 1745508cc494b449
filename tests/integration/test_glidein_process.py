"""A real pilot process against the real broker: register, run /bin/echo, retire when idle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotRegistered, PilotRetiring
from schemas.slot import ClaimActivate, SlotAdvertised
from services.runtime.bus import Subscription, connect
from services.runtime.rabbit import delete_namespace
from services.runtime.service import pid_file
from tests.helpers import Inbox

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def test_pilot_process_runs_a_job_and_retires_when_idle(rabbit_settings, tmp_path):
    settings = rabbit_settings
    pilot_id = f"itest-{os.getpid()}"
    reports, events = Inbox(), Inbox()
    bus = connect(settings, "test")
    bus.subscribe(Subscription("schedd.test", target="test",
                               commands={"job.report": lambda msg, ctx: reports.add(msg)}))
    watched = ("pilot.registered", "pilot.retiring", "pilot.exited", "slot.advertised")
    bus.subscribe(Subscription("watch", events={name: lambda msg, ctx: events.add(msg)
                                                for name in watched}))
    bus.start()
    env = {**os.environ, "AMQP_URL": settings.amqp_url, "BURST_NAMESPACE": settings.namespace,
           "BURST_STATE_DIR": str(settings.state_dir), "BURST_PILOT_ID": pilot_id,
           "BURST_ENTRY": "local_test", "BURST_SITE": "TestSite", "BURST_FACTORY": "itest",
           "BURST_PROVIDER": "local", "BURST_CPUS": "2", "BURST_MEMORY_MB": "512",
           "BURST_DISK_MB": "100", "BURST_IDLE_TIMEOUT_S": "1"}
    log_path = tmp_path / "glidein.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.glidein"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        registered = events.wait_for_item(lambda e: isinstance(e, PilotRegistered), what="register")
        assert registered[0].pid == proc.pid and registered[0].context_source == "env"
        events.wait_for_item(lambda e: isinstance(e, SlotAdvertised) and e.state == "idle",
                        what="an idle slot ad")
        assert pid_file(settings, f"pilot-{pilot_id}").read_text().strip() == str(proc.pid)

        bus.send(ClaimActivate(
            claim_id="claim-1", pilot_id=pilot_id, schedd="test", job_id="1.0", job_ad="[]",
            executable="/bin/echo", arguments=["hello"], environment={}, files={}, cpus=1,
            memory_mb=64, disk_mb=10), to=pilot_id)
        running = reports.wait_for_item(lambda r: isinstance(r, JobReport) and r.state == "running",
                                   what="the running report")[0]
        assert (running.site, running.entry, running.provider) == ("TestSite", "local_test",
                                                                   "local")
        done = reports.wait_for_item(lambda r: isinstance(r, JobReport) and r.state == "exited",
                                what="the exited report")[0]
        assert (done.exit_code, done.stdout, done.claim_id) == (0, b"hello\n", "claim-1")

        exited = events.wait_for_item(lambda e: isinstance(e, PilotExited), what="pilot.exited")[0]
        assert exited.reason == "idle for 1 s" and exited.jobs_run == 1
        assert any(isinstance(e, PilotRetiring) for e in events.items)
        assert proc.wait(timeout=20) == 0
        assert not pid_file(settings, f"pilot-{pilot_id}").exists()
    except BaseException:
        print(log_path.read_text(errors="replace"))
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        bus.stop()
        delete_namespace(settings, ["schedd.test", "watch", f"glidein.{pilot_id}"])


def test_sigterm_kills_the_running_job_and_says_terminated(rabbit_settings, tmp_path):
    settings = rabbit_settings
    pilot_id = f"itest-term-{os.getpid()}"
    reports, events = Inbox(), Inbox()
    bus = connect(settings, "test")
    bus.subscribe(Subscription("schedd.test", target="test",
                               commands={"job.report": lambda msg, ctx: reports.add(msg)}))
    bus.subscribe(Subscription("watch", events={
        name: lambda msg, ctx: events.add(msg) for name in ("pilot.registered", "pilot.exited")}))
    bus.start()
    env = {**os.environ, "AMQP_URL": settings.amqp_url, "BURST_NAMESPACE": settings.namespace,
           "BURST_STATE_DIR": str(settings.state_dir), "BURST_PILOT_ID": pilot_id}
    log_path = tmp_path / "glidein.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.glidein"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        events.wait_for_item(lambda e: isinstance(e, PilotRegistered), what="register")
        bus.send(ClaimActivate(
            claim_id="claim-1", pilot_id=pilot_id, schedd="test", job_id="1.0", job_ad="[]",
            executable="/bin/sleep", arguments=["60"], environment={}, files={}, cpus=1,
            memory_mb=64, disk_mb=10), to=pilot_id)
        reports.wait_for_item(lambda r: r.state == "running", what="the running report")
        proc.terminate()
        exited = events.wait_for_item(lambda e: isinstance(e, PilotExited), what="pilot.exited")[0]
        assert exited.reason == "terminated" and exited.jobs_run == 1
        assert proc.wait(timeout=20) == 0
        assert [r.state for r in reports.items] == ["running"]
        assert "event=pilot_exited" in log_path.read_text()
        assert not _processes_of(pilot_id), "the job outlived its pilot"
    except BaseException:
        print(log_path.read_text(errors="replace"))
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        bus.stop()
        delete_namespace(settings, ["schedd.test", "watch", f"glidein.{pilot_id}"])


def _processes_of(pilot_id: str) -> list[psutil.Process]:
    """Live processes started for this pilot (jobs carry BURST_PILOT_ID)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("BURST_PILOT_ID") == pilot_id):
                found.append(proc)
        except psutil.Error:
            continue
    return found
