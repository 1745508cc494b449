"""A real pilot process against the real broker: register, run /bin/echo, retire when idle."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotRegistered, PilotRetiring
from schemas.slot import ClaimActivate, SlotAdvertised
from services.runtime import security
from services.runtime.bus import Subscription, connect
from services.runtime.rabbit import delete_namespace
from services.runtime.service import pid_file, service_trust
from tests.helpers import Inbox

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


WATCHED = ("pilot.registered", "pilot.retiring", "pilot.exited", "slot.advertised")


@dataclass
class PilotProcess:
    """A `python -m services.glidein` process, and what it sent to a pretend schedd."""

    pilot_id: str
    proc: subprocess.Popen
    log_path: Path
    reports: Inbox = field(default_factory=Inbox)
    events: Inbox = field(default_factory=Inbox)


@pytest.fixture
def start_pilot(rabbit_settings, tmp_path):
    settings = rabbit_settings
    # The pretend schedd is a service: it holds the pool key, seals what it sends a pilot
    # and checks the pilot's signatures, as the real one does.
    trust = service_trust(settings, "test")
    bus = connect(settings, "test", **trust)
    started: list[PilotProcess] = []
    inboxes = PilotProcess("", None, tmp_path / "glidein.log")  # filled by the handlers
    bus.subscribe(Subscription("schedd.test", target="test",
                               commands={"job.report": lambda msg, ctx: inboxes.reports.add(msg)}))
    bus.subscribe(Subscription("watch", events={name: lambda msg, ctx: inboxes.events.add(msg)
                                                for name in WATCHED}))
    bus.start()

    def start(pilot_id: str, **context: str) -> PilotProcess:
        key_file = tmp_path / f"{pilot_id}.key"
        key = trust["verifier"].key_for(security.pilot(pilot_id))
        security.write_private(key_file, key.hex())
        env = {**os.environ, "AMQP_URL": settings.amqp_url,
               "BURST_NAMESPACE": settings.namespace, "BURST_STATE_DIR": str(settings.state_dir),
               "BURST_PILOT_ID": pilot_id, "BURST_PILOT_KEY_FILE": str(key_file), **context}
        with open(inboxes.log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "services.glidein"], env=env,
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        pilot = PilotProcess(pilot_id, proc, inboxes.log_path, inboxes.reports, inboxes.events)
        started.append(pilot)
        return pilot

    start.bus = bus
    start.settings = settings
    try:
        yield start
    finally:
        for pilot in started:
            if pilot.proc.poll() is None:
                pilot.proc.kill()
                pilot.proc.wait()
        bus.stop()
        delete_namespace(settings, ["schedd.test", "watch",
                                    *(f"glidein.{p.pilot_id}" for p in started)])


@pytest.fixture(autouse=True)
def _show_pilot_log_on_failure(request, tmp_path):
    yield
    report = getattr(request.node, "rep_call", None)
    log_path = tmp_path / "glidein.log"
    if report is not None and report.failed and log_path.exists():
        print(log_path.read_text(errors="replace"))


def activation(pilot_id: str, executable: str, *args: str) -> ClaimActivate:
    return ClaimActivate(
        claim_id="claim-1", pilot_id=pilot_id, schedd="test", job_id="1.0", job_ad="[]",
        executable=executable, arguments=list(args), environment={}, files={}, cpus=1,
        memory_mb=64, disk_mb=10)


def test_pilot_process_runs_a_job_and_retires_when_idle(start_pilot):
    pilot_id = f"itest-{os.getpid()}"
    p = start_pilot(pilot_id, BURST_ENTRY="local_test", BURST_SITE="TestSite",
                    BURST_FACTORY="itest", BURST_PROVIDER="local", BURST_CPUS="2",
                    BURST_MEMORY_MB="512", BURST_DISK_MB="100", BURST_IDLE_TIMEOUT_S="1")
    registered = p.events.wait_for_item(lambda e: isinstance(e, PilotRegistered),
                                        what="register")
    assert registered[0].pid == p.proc.pid and registered[0].context_source == "env"
    p.events.wait_for_item(lambda e: isinstance(e, SlotAdvertised) and e.state == "idle",
                           what="an idle slot ad")
    assert pid_file(start_pilot.settings, f"pilot-{pilot_id}").read_text().strip() == \
        str(p.proc.pid)

    start_pilot.bus.send(activation(pilot_id, "/bin/echo", "hello"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    running = p.reports.wait_for_item(
        lambda r: isinstance(r, JobReport) and r.state == "running", what="the running report")[0]
    assert (running.site, running.entry, running.provider) == ("TestSite", "local_test", "local")
    done = p.reports.wait_for_item(lambda r: isinstance(r, JobReport) and r.state == "exited",
                                   what="the exited report")[0]
    assert (done.exit_code, done.stdout, done.claim_id) == (0, b"hello\n", "claim-1")

    exited = p.events.wait_for_item(lambda e: isinstance(e, PilotExited), what="pilot.exited")[0]
    assert exited.reason == "idle for 1 s" and exited.jobs_run == 1
    assert any(isinstance(e, PilotRetiring) for e in p.events.items)
    assert p.proc.wait(timeout=20) == 0
    assert not pid_file(start_pilot.settings, f"pilot-{pilot_id}").exists()


def test_sigterm_kills_the_running_job_and_says_terminated(start_pilot):
    pilot_id = f"itest-term-{os.getpid()}"
    p = start_pilot(pilot_id)
    p.events.wait_for_item(lambda e: isinstance(e, PilotRegistered), what="register")
    start_pilot.bus.send(activation(pilot_id, "/bin/sleep", "60"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    p.reports.wait_for_item(lambda r: r.state == "running", what="the running report")
    p.proc.terminate()
    exited = p.events.wait_for_item(lambda e: isinstance(e, PilotExited), what="pilot.exited")[0]
    assert exited.reason == "terminated" and exited.jobs_run == 1
    assert p.proc.wait(timeout=20) == 0
    assert [r.state for r in p.reports.items] == ["running"]
    assert "event=pilot_exited" in p.log_path.read_text()
    assert not _processes_of(pilot_id), "the job outlived its pilot"


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
