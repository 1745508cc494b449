"""The glidein agent on the in-memory bus: claims, reports, ads, retiring, draining.

Jobs are real /bin/sh processes. A job that must stay running until the test
says so waits for a file named `go` in its scratch directory; everything else
is awaited on the messages the pilot publishes, each with a deadline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import classad2
import psutil
import pytest

from schemas.job import JobReport
from schemas.pilot import PilotExited, PilotRetire
from schemas.slot import ClaimActivate, JobKill, SlotAdvertised
from services.condor import pilotdir
from services.condor.claims import claim_digest
from services.condor.pilot import PilotContext
from services.glidein.handlers import AgentConfig, Glidein
from services.glidein.isolation import SlotUsers
from services.runtime.bus import Subscription, connect
from tests.conftest import fresh_settings
from tests.helpers import Inbox, wait_until

FAST = AgentConfig(poll_interval_s=0.05, lease_s=3.0, kill_grace_s=0.5)
WAIT_FOR_GO = b"#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.02; done\necho done\n"


class Pilot:
    """A Glidein on an in-memory bus with a fake schedd ("test") and an event watcher."""

    def __init__(self, tmp_path: Path, job_root: Path, config: AgentConfig = FAST,
                 slot_users: SlotUsers | None = None, **ctx_fields):
        settings = fresh_settings(tmp_path)
        defaults = {"pilot_id": "p1", "entry": "entry1", "site": "SiteA", "factory": "fac",
                    "provider": "local", "cpus": 4, "memory_mb": 1000, "disk_mb": 1000,
                    "instance_id": "local-1", "namespace": settings.namespace,
                    "state_dir": tmp_path / "state", "work_dir": job_root / "work"}
        self.ctx = PilotContext(**{**defaults, **ctx_fields})
        self.bus = connect(settings, "test", memory=True)
        self.glidein = Glidein(self.ctx, self.bus, config=config, slot_users=slot_users)
        self.stopped = threading.Event()
        self.glidein.request_stop = self.stopped.set
        self.reports, self.events = Inbox(), Inbox()
        self.message_ids: dict[str, list[str]] = {}  # claim -> ids of its reports, in order
        for sub in self.glidein.subscriptions():
            self.bus.subscribe(sub)
        self.bus.subscribe(Subscription("schedd.test", target="test",
                                        commands={"job.report": self._got}))
        watched = ("pilot.registered", "pilot.retiring", "pilot.exited", "slot.advertised")
        self.bus.subscribe(Subscription("watch", events={
            name: lambda msg, ctx: self.events.add(msg) for name in watched}))
        self.bus.start()
        self.bus.call_soon_threadsafe(self.glidein.started)
        self.events.wait_for(lambda box: box.of(SlotAdvertised), what="the first slot ad")

    def _got(self, msg, ctx) -> None:
        self.message_ids.setdefault(msg.claim_id, []).append(ctx.message_id)
        self.reports.add(msg)

    def activate(self, claim_id: str = "c1", executable: str = "job.sh",
                 files: dict | None = None, **fields) -> ClaimActivate:
        defaults = {
            "claim_id": claim_id, "pilot_id": self.ctx.pilot_id, "schedd": "test",
            "job_id": f"1.{claim_id}", "job_ad": "[]", "executable": executable,
            "arguments": [], "environment": {}, "cpus": 1, "memory_mb": 100, "disk_mb": 10,
            "files": {"job.sh": WAIT_FOR_GO} if files is None else files}
        msg = ClaimActivate(**{**defaults, **fields})
        self.bus.send(msg, to=self.ctx.pilot_id)
        return msg

    def release(self, claim_id: str) -> None:
        """Let a WAIT_FOR_GO job finish."""
        (self.ctx.work_dir / "execute" / claim_id / "go").touch()

    def report(self, claim_id: str, state: str, timeout: float = 15.0) -> JobReport:
        def found(box):
            return [r for r in box.of(JobReport) if r.claim_id == claim_id and r.state == state]

        self.reports.wait_for(found, timeout, what=f"{state} report of {claim_id}")
        return found(self.reports)[0]

    def states(self, claim_id: str) -> list[str]:
        return [r.state for r in self.reports.of(JobReport) if r.claim_id == claim_id]

    def exited(self, timeout: float = 15.0) -> PilotExited:
        self.events.wait_for(lambda box: box.of(PilotExited), timeout, what="pilot.exited")
        return self.events.of(PilotExited)[0]

    def last_ad(self) -> SlotAdvertised:
        return self.events.of(SlotAdvertised)[-1]

    def stop(self) -> None:
        self.bus.stop()


@pytest.fixture
def pilot(tmp_path, job_root):
    made: list[Pilot] = []

    def make(**kwargs) -> Pilot:
        made.append(Pilot(tmp_path, job_root, **kwargs))
        return made[-1]

    yield make
    for p in made:
        if not p.glidein.exited.is_set():
            p.glidein.stopping()  # kills what a failed test left running
        p.stop()


def test_registers_and_advertises_an_idle_slot(pilot):
    p = pilot()
    registered = p.events.items[0]
    assert registered.NAME == "pilot.registered" and registered.pilot_id == "p1"
    assert (registered.cpus, registered.context_source) == (4, "env") and registered.pid > 0
    ad = p.last_ad()
    assert (ad.state, ad.free_cpus, ad.free_memory_mb, ad.claims) == ("idle", 4, 1000, [])
    assert (ad.entry, ad.site, ad.provider, ad.lease_s) == ("entry1", "SiteA", "local", 3.0)
    assert 'GLIDEIN_Site = "SiteA"' in ad.ad


def test_a_job_runs_and_reports_running_then_exited_with_outputs(pilot):
    p = pilot()
    script = b'#!/bin/sh\necho "hi from $GLIDEIN_Site $1 $2"\necho x > out.txt\nexit 4\n'
    # $$(Cpus) is the job's own share (its dynamic slot), as in HTCondor.
    p.activate(files={"job.sh": script}, arguments=["$$(GLIDEIN_Entry_Name)", "$$(Cpus)"],
               cpus=2)
    running = p.report("c1", "running")
    assert (running.entry, running.site, running.provider) == ("entry1", "SiteA", "local")
    done = p.report("c1", "exited")
    assert done.exit_code == 4 and done.stdout == b"hi from SiteA entry1 2\n"
    assert done.output_files == {"out.txt": b"x\n"} and done.pilot_id == "p1"
    p.events.wait_for(lambda box: box.of(SlotAdvertised)[-1].state == "idle", what="idle ad")
    ads = p.events.of(SlotAdvertised)
    # The public ad names the claim by its digest, never the claim id itself.
    assert any(a.state == "busy" and a.claims == [claim_digest("c1")] and a.free_cpus == 2
               for a in ads)
    assert [a.seq for a in ads] == sorted({a.seq for a in ads})  # strictly increasing
    assert p.last_ad().free_cpus == 4 and p.states("c1") == ["running", "exited"]


def test_a_duplicate_activation_is_ignored(pilot):
    p = pilot()
    first = p.activate()
    p.report("c1", "running")
    p.bus.send(first, to="p1")  # redelivered while running
    p.bus.wait_idle()
    p.release("c1")
    p.report("c1", "exited")
    p.bus.send(first, to="p1")  # and again once it is done
    p.bus.wait_idle()
    assert p.states("c1") == ["running", "exited"]
    assert p.glidein.jobs_run == 1


def test_claims_that_do_not_fit_or_are_not_ours_are_rejected(pilot):
    p = pilot()
    p.activate("big", cpus=5)
    assert "does not fit in the free 4 cpus" in p.report("big", "rejected").reason
    p.activate("huge", memory_mb=5000)
    assert "5000 MiB" in p.report("huge", "rejected").reason
    p.activate("other", pilot_id="p2")
    assert p.report("other", "rejected").reason == "claim is for pilot p2, this is p1"
    assert p.last_ad().free_cpus == 4


def test_four_jobs_fill_the_slot_and_a_fifth_is_rejected(pilot):
    p = pilot()
    for n in range(4):
        p.activate(f"c{n}")
        p.report(f"c{n}", "running")
    p.activate("c4")
    assert "free 0 cpus" in p.report("c4", "rejected").reason
    assert p.last_ad().state == "busy" and p.last_ad().free_cpus == 0
    for n in range(4):
        p.release(f"c{n}")
        p.report(f"c{n}", "exited")


def test_a_claim_carves_custom_resources_and_the_job_sees_its_share(pilot):
    p = pilot(resources={"GPUs": 2})
    assert p.last_ad().free_resources == {"GPUs": 2}
    script = b'#!/bin/sh\ngrep -ow "GPUs = [0-9]*" "$_CONDOR_MACHINE_AD"\necho "$1"\n'
    p.activate(files={"job.sh": script}, arguments=["$$(GPUs)"], resources={"GPUs": 1})
    p.report("c1", "running")
    ad = [a for a in p.events.of(SlotAdvertised) if a.state == "busy"][-1]
    assert ad.free_resources == {"GPUs": 1}
    assert classad2.ClassAd(ad.ad).eval("GPUs") == 1
    assert p.report("c1", "exited").stdout == b"GPUs = 1\n1\n"  # its dynamic slot's share
    p.activate("c2", resources={"GPUs": 3})
    assert "3 GPUs does not fit in the free 4 cpus" in p.report("c2", "rejected").reason


def test_a_job_that_cannot_start_is_held_and_frees_its_claim(pilot):
    p = pilot()
    p.activate(executable="/no/such/program", files={})
    held = p.report("c1", "held")
    assert held.reason == "cannot start /no/such/program: No such file or directory"
    assert p.states("c1") == ["held"]
    p.bus.wait_idle()
    assert p.last_ad().free_cpus == 4 and p.last_ad().state == "idle"


def test_job_kill_stops_the_job_without_a_report(pilot):
    p = pilot()
    p.activate()
    p.report("c1", "running")
    pid = p.glidein.jobs["c1"].proc.pid
    p.bus.send(JobKill(pilot_id="p1", job_id="1.c1", claim_id="c1", reason="removed"), to="p1")
    p.events.wait_for(lambda box: box.of(SlotAdvertised)[-1].free_cpus == 4, what="freed slot")
    wait_until(lambda: _gone(pid), what="the job's process to go")
    p.bus.wait_idle()
    assert p.states("c1") == ["running"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_idle_pilot_retires_and_stops_itself(pilot):
    p = pilot(idle_timeout_s=0.3)
    exited = p.exited()
    assert exited.reason.startswith("idle for ") and exited.jobs_run == 0
    retiring = [e for e in p.events.items if e.NAME == "pilot.retiring"]
    assert len(retiring) == 1 and retiring[0].reason == exited.reason
    assert p.stopped.wait(5)
    assert any(a.state == "retiring" for a in p.events.of(SlotAdvertised))


def test_retire_only_if_idle_is_ignored_while_busy(pilot):
    p = pilot()
    p.activate()
    p.report("c1", "running")
    p.bus.send(PilotRetire(pilot_id="p1", reason="no longer requested"), to="p1")
    p.bus.wait_idle()
    assert not p.glidein.retiring
    p.release("c1")
    p.report("c1", "exited")
    p.bus.send(PilotRetire(pilot_id="p1", reason="no longer requested"), to="p1")
    assert p.exited().reason == "no longer requested"
    assert p.exited().jobs_run == 1


def test_a_forced_retire_drains_without_killing_the_job(pilot):
    p = pilot()
    p.activate()
    p.report("c1", "running")
    p.bus.send(PilotRetire(pilot_id="p1", reason="excess", only_if_idle=False), to="p1")
    p.events.wait_for(lambda box: any(e.NAME == "pilot.retiring" for e in box.items),
                      what="pilot.retiring")
    p.activate("c2")
    assert "retiring" in p.report("c2", "rejected").reason
    assert not p.events.of(PilotExited)
    p.release("c1")
    assert p.report("c1", "exited").exit_code == 0
    assert p.exited().reason == "excess"


def test_lifetime_drains_and_lets_the_running_job_finish(pilot):
    p = pilot(max_lifetime_s=0.5)
    p.activate()
    p.report("c1", "running")
    p.events.wait_for(lambda box: any(e.NAME == "pilot.retiring" for e in box.items),
                      what="pilot.retiring")
    retiring = next(e for e in p.events.items if e.NAME == "pilot.retiring")
    assert (retiring.reason, retiring.running_jobs) == ("lifetime reached", 1)
    assert p.last_ad().state == "retiring"
    p.activate("late")
    assert "retiring (lifetime reached)" in p.report("late", "rejected").reason
    assert not p.events.of(PilotExited)
    p.release("c1")
    done = p.report("c1", "exited")
    assert done.exit_code == 0 and done.stdout == b"done\n"
    exited = p.exited()
    assert (exited.reason, exited.jobs_run) == ("lifetime reached", 1)
    assert p.stopped.wait(5)


def test_sigterm_kills_running_jobs_and_says_terminated(pilot):
    p = pilot()
    p.activate(files={"job.sh": b"#!/bin/sh\ntrap '' TERM\n: > trapped\n"
                                b"while true; do sleep 0.05; done\n"})
    p.report("c1", "running")
    pid = p.glidein.jobs["c1"].proc.pid
    # SIGTERM before the shell has set its trap would end it at once: wait until it has.
    wait_until(lambda: (p.ctx.work_dir / "execute" / "c1" / "trapped").exists(),
               what="the job to ignore SIGTERM")
    started = time.monotonic()
    p.glidein.stopping()  # what service.run calls on SIGTERM, from the main thread
    exited = p.exited()
    assert exited.reason == "terminated" and exited.jobs_run == 1
    assert time.monotonic() - started >= FAST.kill_grace_s  # it ignored SIGTERM: SIGKILLed
    wait_until(lambda: _gone(pid), what="the job's process to go")
    assert p.states("c1") == ["running"]  # no report: the schedd requeues on pilot.exited
    assert not (p.ctx.work_dir / "execute" / "c1").exists()


def test_no_ads_after_exit(pilot):
    p = pilot(idle_timeout_s=0.2)
    p.exited()
    count = len(p.events.of(SlotAdvertised))
    p.glidein.advertise()
    assert len(p.events.of(SlotAdvertised)) == count


def test_the_slot_ad_lists_the_jobs_the_pilot_holds(pilot):
    p = pilot()
    p.activate()
    p.report("c1", "running")
    # The ad follows the running report: wait for it rather than read whatever came last.
    p.events.wait_for(lambda box: box.of(SlotAdvertised)[-1].jobs == ["1.c1"],
                      what="an ad listing the job")
    assert classad2.ClassAd(p.last_ad().ad).eval("BurstJobs") == ["1.c1"]
    p.release("c1")
    p.report("c1", "exited")
    # Listed until its result is confirmed, so no ad can say it is gone before the report.
    p.events.wait_for(lambda box: box.of(SlotAdvertised)[-1].jobs == [], what="an empty list")
    assert classad2.ClassAd(p.last_ad().ad).eval("BurstJobs") == []


def test_a_pilot_that_is_not_root_advertises_no_isolation(pilot, tmp_path):
    p = pilot(slot_users=SlotUsers("60001-60064", euid=1000, lock_dir=tmp_path / "locks"))
    assert classad2.ClassAd(p.last_ad().ad).eval("BurstJobIsolation") == "none"


def test_the_jobs_environment_holds_nothing_of_the_pilots(pilot, monkeypatch):
    monkeypatch.setenv("AMQP_URL", "amqp://burst:s3cret@broker/%2F")
    monkeypatch.setenv("BURST_PILOT_KEY_FILE", "/somewhere/pilot.key")
    p = pilot()
    p.activate(files={"job.sh": b"#!/bin/sh\nenv\n"})
    names = {line.split("=", 1)[0] for line in p.report("c1", "exited").stdout.decode().split()}
    assert "AMQP_URL" not in names and "BURST_PILOT_KEY_FILE" not in names
    assert {"HOME", "PATH", "BURST_JOB_ID", "_CONDOR_SCRATCH_DIR"} <= names


def test_a_restarted_pilot_resends_its_outbox_under_the_same_message_id(pilot, job_root):
    """What a previous life of the pilot recorded but never got confirmed goes out first, once
    per message id; a claim it had handled is not run again when redelivered."""
    records = pilotdir.PilotRecords(job_root / "work")
    done = JobReport(job_id="1.c9", claim_id="c9", pilot_id="p1", state="exited", exit_code=0,
                     stdout=b"from the previous life\n")
    records.add_report(pilotdir.OutboxEntry("f" * 32, "test", done, final=True))
    records.close()
    p = pilot()
    assert p.report("c9", "exited").stdout == b"from the previous life\n"
    assert p.message_ids["c9"] == ["f" * 32]
    wait_until(lambda: p.glidein.outbox.empty, what="the confirmed report to leave the outbox")
    p.activate("c9")  # the schedd's activation, redelivered
    p.bus.wait_idle()
    assert p.states("c9") == ["exited"] and not p.glidein.jobs
