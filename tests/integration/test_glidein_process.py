"""A real pilot process against the real broker: register, run jobs, retire when idle; and
what survives its SIGKILL: results in its outbox, no job process, jobs isolated from each other
and from the pilot (the suite runs as root, so jobs run as slot users)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotRegistered, PilotRetiring
from schemas.slot import ClaimActivate, SlotAdvertised
from services.condor import pilotdir
from services.factory.drivers import LaunchSpec
from services.factory.drivers.local import LocalDriver
from services.runtime import security
from services.runtime.bus import Subscription, connect
from services.runtime.rabbit import delete_namespace
from services.runtime.service import pid_file, service_trust
from tests.helpers import Inbox, wait_until
from tests.tcp_proxy import BrokerProxy

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


WATCHED = ("pilot.registered", "pilot.retiring", "pilot.exited", "slot.advertised")


@dataclass
class PilotProcess:
    """A `python -m services.glidein` process, and what it sent to a pretend schedd."""

    pilot_id: str
    proc: subprocess.Popen | None
    log_path: Path
    work_dir: Path
    reports: Inbox = field(default_factory=Inbox)
    events: Inbox = field(default_factory=Inbox)
    report_ids: list[tuple[str, JobReport]] = field(default_factory=list)  # (message id, report)

    def records(self) -> pilotdir.PilotRecords:
        records = pilotdir.PilotRecords.existing(self.work_dir)
        assert records is not None, f"no records in {self.work_dir}"
        return records


@pytest.fixture
def start_pilot(rabbit_settings, tmp_path, job_root):
    """Starts pilots as the local driver does (a process group of their own), with their work
    directory where slot users can reach it; everything they leave is killed afterwards."""
    settings = rabbit_settings
    # The pretend schedd is a service: it holds the pool key, seals what it sends a pilot
    # and checks the pilot's signatures, as the real one does.
    trust = service_trust(settings, "test")
    bus = connect(settings, "test", **trust)
    started: list[PilotProcess] = []
    pilot_ids: set[str] = set()
    inboxes = PilotProcess("", None, tmp_path / "glidein.log", job_root)

    def got_report(msg: JobReport, ctx) -> None:
        inboxes.report_ids.append((ctx.message_id, msg))
        inboxes.reports.add(msg)

    bus.subscribe(Subscription("schedd.test", target="test", commands={"job.report": got_report}))
    bus.subscribe(Subscription("watch", events={name: lambda msg, ctx: inboxes.events.add(msg)
                                                for name in WATCHED}))
    bus.start()

    def start(pilot_id: str, **context: str) -> PilotProcess:
        work = job_root / pilot_id / "work"
        key_file = job_root / f"{pilot_id}.key"
        key = trust["verifier"].key_for(security.pilot(pilot_id))
        security.write_private(key_file, key.hex())
        env = {**os.environ, "AMQP_URL": settings.amqp_url,
               "BURST_NAMESPACE": settings.namespace, "BURST_STATE_DIR": str(settings.state_dir),
               "BURST_PILOT_ID": pilot_id, "BURST_PILOT_WORK_DIR": str(work),
               "BURST_PILOT_KEY_FILE": str(key_file), **context}
        with open(inboxes.log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "services.glidein"], env=env,
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        pilot = PilotProcess(pilot_id, proc, inboxes.log_path, work, inboxes.reports,
                             inboxes.events, inboxes.report_ids)
        started.append(pilot)
        pilot_ids.add(pilot_id)
        return pilot

    start.bus = bus
    start.trust = trust
    start.settings = settings
    start.inboxes = inboxes
    start.pilot_ids = pilot_ids  # pilots started elsewhere (the local driver) join for cleanup
    try:
        yield start
    finally:
        for pilot in started:
            if pilot.proc.poll() is None:
                os.killpg(pilot.proc.pid, signal.SIGKILL)
                pilot.proc.wait()
        for work in job_root.glob("**/work"):
            pilotdir.kill_leftovers(work)
        bus.stop()
        delete_namespace(settings, ["schedd.test", "watch",
                                    *(f"glidein.{pilot_id}" for pilot_id in pilot_ids)])


@pytest.fixture(autouse=True)
def _show_pilot_log_on_failure(request, tmp_path):
    yield
    report = getattr(request.node, "rep_call", None)
    log_path = tmp_path / "glidein.log"
    if report is not None and report.failed and log_path.exists():
        print(log_path.read_text(errors="replace"))


def activation(pilot_id: str, executable: str, *args: str, claim_id: str = "claim-1",
               job_id: str = "1.0", files: dict[str, bytes] | None = None) -> ClaimActivate:
    return ClaimActivate(
        claim_id=claim_id, pilot_id=pilot_id, schedd="test", job_id=job_id, job_ad="[]",
        executable=executable, arguments=list(args), environment={}, files=files or {},
        cpus=1, memory_mb=64, disk_mb=10)


def script_job(pilot_id: str, body: str, claim_id: str, job_id: str) -> ClaimActivate:
    return activation(pilot_id, "job.sh", claim_id=claim_id, job_id=job_id,
                      files={"job.sh": f"#!/bin/sh\n{body}\n".encode()})


WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.05; done; echo finished"


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
    # Written by the main thread once the bus consumes, racing the first ad on the I/O thread.
    path = pid_file(start_pilot.settings, f"pilot-{pilot_id}")
    assert wait_until(lambda: path.exists() and path.read_text().strip()) == str(p.proc.pid)

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


def _registered(p: PilotProcess, pid: int) -> None:
    p.events.wait_for_item(lambda e: isinstance(e, PilotRegistered) and e.pid == pid,
                           what=f"pilot.registered of pid {pid}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group(pgid: int) -> list[int]:
    """Live processes of a process group."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _sigkill(p: PilotProcess) -> None:
    os.kill(p.proc.pid, signal.SIGKILL)  # the pilot alone, not its group: jobs stay behind
    p.proc.wait()


def _finish_while_the_broker_is_away(start_pilot, pilot_id: str):
    """A pilot behind a proxy runs a job; the proxy is cut before the job ends, so the result
    waits in the outbox. Returns the proxy, the pilot and that outbox entry."""
    proxy = BrokerProxy.start(start_pilot.settings.amqp_url)
    p = start_pilot(pilot_id, AMQP_URL=proxy.url)
    _registered(p, p.proc.pid)
    start_pilot.bus.send(script_job(pilot_id, WAIT_FOR_GO, "claim-1", "1.0"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    p.reports.wait_for_item(lambda r: r.state == "running", what="the running report")
    proxy.cut()  # the broker is unreachable for this pilot from now on
    (p.work_dir / "execute" / "claim-1" / "go").touch()
    [kept] = wait_until(lambda: _kept_results(p), timeout=20, what="the result in the outbox")
    assert (kept.report.state, kept.report.stdout) == ("exited", b"finished\n")
    assert not [r for r in p.reports.items if r.state == "exited"]
    return proxy, p, kept


def _kept_results(p: PilotProcess) -> list[pilotdir.OutboxEntry]:
    records = p.records()
    try:
        return [entry for entry in records.reports() if entry.final]
    finally:
        records.close()


def _delivered_once(p: PilotProcess, kept: pilotdir.OutboxEntry) -> None:
    p.reports.wait_for_item(lambda r: r.state == "exited", timeout=40, what="the result")
    wait_until(lambda: not pilotdir.unfinished(p.work_dir), timeout=20,
               what="the outbox to empty once the broker confirmed")
    exited = {mid for mid, r in p.report_ids if r.state == "exited"}
    assert exited == {kept.message_id}, "the result was delivered under another message id"
    assert not (p.work_dir / "execute" / "claim-1").exists()


def test_a_result_kept_while_the_broker_is_away_is_delivered_once_after_a_restart(start_pilot):
    pilot_id = f"itest-outbox-{os.getpid()}"
    _proxy, p, kept = _finish_while_the_broker_is_away(start_pilot, pilot_id)
    _sigkill(p)
    again = start_pilot(pilot_id)  # same id and work dir, a broker it can reach
    _registered(again, again.proc.pid)
    _delivered_once(p, kept)


def test_a_result_kept_while_the_broker_is_away_is_resent_once_it_is_back(start_pilot):
    """The same pilot, no restart: its resend timer delivers the kept result after the
    reconnect."""
    proxy, p, kept = _finish_while_the_broker_is_away(start_pilot, f"itest-resend-{os.getpid()}")
    proxy.restore()
    _delivered_once(p, kept)
    assert p.proc.poll() is None, "the pilot carried on through the broker's absence"


def test_sigkill_with_a_running_job_leaves_no_job_process(start_pilot):
    pilot_id = f"itest-leftover-{os.getpid()}"
    p = start_pilot(pilot_id)
    _registered(p, p.proc.pid)
    start_pilot.bus.send(script_job(pilot_id, "sleep 300 & sleep 300; wait", "claim-1", "1.0"),
                         to=pilot_id, seal_for=security.pilot(pilot_id))
    p.reports.wait_for_item(lambda r: r.state == "running", what="the running report")
    records = p.records()
    [job] = records.jobs()
    records.close()
    wait_until(lambda: len(_group(p.proc.pid)) >= 4, what="the job and its two sleeps")
    _sigkill(p)
    assert _alive(job.pid), "the job died with the pilot by itself: nothing left to sweep"
    killed = pilotdir.kill_leftovers(p.work_dir)
    assert job.pid in killed
    assert not _alive(job.pid) and not _group(p.proc.pid), "a job process outlived its pilot"


def test_the_local_driver_restarts_a_killed_pilot_once_and_leaves_no_job_behind(start_pilot,
                                                                                job_root):
    settings = start_pilot.settings
    driver = LocalDriver(job_root / "pilots")
    pilot_id = f"itest-driver-{os.getpid()}"
    start_pilot.pilot_ids.add(pilot_id)
    work = job_root / "pilots" / pilot_id / "work"
    context = {"AMQP_URL": settings.amqp_url, "BURST_NAMESPACE": settings.namespace,
               "BURST_STATE_DIR": str(settings.state_dir), "BURST_PILOT_ID": pilot_id,
               "BURST_ENTRY": "e1", "BURST_CPUS": "2"}
    key = start_pilot.trust["verifier"].key_for(security.pilot(pilot_id))
    first = driver.launch(LaunchSpec(pilot_id, "e1", "g", context, pilot_key=key))
    inbox = start_pilot.inboxes
    pid = int(first.instance_id.removeprefix("local-"))
    _registered(inbox, pid)
    start_pilot.bus.send(script_job(pilot_id, "sleep 300", "claim-1", "1.0"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    inbox.reports.wait_for_item(lambda r: r.claim_id == "claim-1", what="claim-1 running")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), what="the pilot to die")
    assert [p for p in _group(pid) if p != pid], "its job should still run until swept"

    [restarted] = driver.instances("e1")
    assert restarted.state == "running" and restarted.instance_id != first.instance_id
    assert not _group(pid), "the dead pilot's job outlived it"
    new_pid = int(restarted.instance_id.removeprefix("local-"))
    _registered(inbox, new_pid)
    ad = inbox.events.wait_for_item(lambda e: isinstance(e, SlotAdvertised)
                                    and f'"local-{new_pid}"' in e.ad, what="the new life's ad")
    assert ad[0].jobs == [], "the killed job is not the restarted pilot's any more"

    start_pilot.bus.send(script_job(pilot_id, "sleep 300", "claim-2", "2.0"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    inbox.reports.wait_for_item(lambda r: r.claim_id == "claim-2", what="claim-2 running")
    os.kill(new_pid, signal.SIGKILL)
    wait_until(lambda: not _alive(new_pid), what="the restarted pilot to die")
    [gone] = driver.instances("e1")
    assert gone.state == "gone", "a pilot that dies again is lost, not restarted twice"
    assert not _group(new_pid) and not pilotdir.kill_leftovers(work)


JOB_A = "echo secret-a > mine; id -u; " + WAIT_FOR_GO
JOB_B = """id -u
cat ../claim-a/mine 2>/dev/null && echo READ-A || echo DENIED-A
ls ../claim-a >/dev/null 2>&1 && echo LISTED-A || echo DENIED-LIST-A
ls .. >/dev/null 2>&1 && echo LISTED-EXECUTE || echo DENIED-LIST-EXECUTE
tr '\\0' '\\n' < /proc/$PPID/environ 2>/dev/null | grep AMQP_URL || echo DENIED-PILOT-ENV
cat ../../records/pilot.db >/dev/null 2>&1 && echo READ-RECORDS || echo DENIED-RECORDS
cat "$KEY" >/dev/null 2>&1 && echo READ-KEY || echo DENIED-KEY
env | grep -c -e AMQP_URL -e BURST_PILOT_KEY_FILE"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a pilot switches users only as root")
def test_a_job_cannot_read_its_neighbour_nor_the_pilot(start_pilot, job_root):
    pilot_id = f"itest-iso-{os.getpid()}"
    key = job_root / pilot_id / "pilot.key"
    key.parent.mkdir()
    key.write_text(start_pilot.trust["verifier"].key_for(security.pilot(pilot_id)).hex())
    key.chmod(0o600)
    p = start_pilot(pilot_id, BURST_SLOT_USERS="62101-62104", BURST_CPUS="2",
                    BURST_PILOT_KEY_FILE=str(key))
    _registered(p, p.proc.pid)
    ad = p.events.wait_for_item(lambda e: isinstance(e, SlotAdvertised), what="a slot ad")[0]
    assert 'BurstJobIsolation = "uid"' in ad.ad
    start_pilot.bus.send(script_job(pilot_id, JOB_A, "claim-a", "1.0"), to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    wait_until(lambda: (p.work_dir / "execute" / "claim-a" / "mine").exists(),
               what="job A's secret")
    job_b = script_job(pilot_id, JOB_B, "claim-b", "1.1")
    job_b = ClaimActivate(**{**job_b.__dict__, "environment": {"KEY": str(key)}})
    start_pilot.bus.send(job_b, to=pilot_id,
                         seal_for=security.pilot(pilot_id))
    b = p.reports.wait_for_item(lambda r: r.claim_id == "claim-b" and r.state == "exited",
                                what="job B's result")[0]
    (p.work_dir / "execute" / "claim-a" / "go").touch()
    a = p.reports.wait_for_item(lambda r: r.claim_id == "claim-a" and r.state == "exited",
                                what="job A's result")[0]

    uid_b, *tries = b.stdout.decode().split()
    uid_a = a.stdout.decode().split()[0]
    assert uid_a != uid_b and {int(uid_a), int(uid_b)} <= set(range(62101, 62105))
    assert tries == ["DENIED-A", "DENIED-LIST-A", "DENIED-LIST-EXECUTE", "DENIED-PILOT-ENV",
                     "DENIED-RECORDS", "DENIED-KEY", "0"], b.stdout.decode()
