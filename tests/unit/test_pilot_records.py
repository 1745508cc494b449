"""A pilot's work-dir records (services/condor/pilotdir.py): the outbox on disk, and the sweep
that kills what a dead pilot left running, checked against real processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess

import psutil

from schemas.job import JobReport
from services.cli import stack
from services.condor.pilotdir import (
    JobRecord,
    OutboxEntry,
    Owner,
    PilotRecords,
    kill_leftovers,
    unfinished,
)
from tests.helpers import wait_until


def report(claim: str, state: str) -> JobReport:
    return JobReport(job_id=f"1.{claim}", claim_id=claim, pilot_id="p1", state=state,
                     exit_code=0 if state == "exited" else None, stdout=b"out")


def test_a_final_report_replaces_the_running_one_and_survives_a_reopen(tmp_path):
    work = tmp_path / "work"
    records = PilotRecords(work)
    records.add_report(OutboxEntry("m-run", "s1", report("c1", "running"), final=False),
                       running=JobRecord("c1", "1.c1", 123, 1.5, 60001))
    assert [j.pid for j in records.jobs()] == [123] and records.handled("c1")
    assert records.unconfirmed_results() == [] and unfinished(work)
    records.add_report(OutboxEntry("m-done", "s1", report("c1", "exited"), final=True))
    records.close()

    again = PilotRecords(work)
    [entry] = again.reports()
    assert (entry.message_id, entry.schedd, entry.final) == ("m-done", "s1", True)
    assert entry.report == report("c1", "exited")
    assert again.jobs() == [] and again.unconfirmed_results() == ["1.c1"]
    again.remove_report("m-done")
    assert not again.reports() and not unfinished(work) and again.handled("c1")


def test_the_layout_keeps_the_records_private_and_scratch_reachable(tmp_path):
    work = tmp_path / "work"
    PilotRecords(work).close()
    modes = {name: stat.S_IMODE((work / name).stat().st_mode) for name in
             (".", "records", "execute")}
    assert modes == {".": 0o711, "records": 0o700, "execute": 0o711}


def _group_leader_with_two_children() -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A stand-in for a pilot: leads its own process group, with two job-like children."""
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & sleep 300 & wait"],
                              start_new_session=True)
    children = wait_until(lambda: len(psutil.Process(leader.pid).children()) == 2
                          and psutil.Process(leader.pid).children(), what="two children")
    return leader, children


def test_kill_leftovers_kills_recorded_jobs_and_the_dead_pilots_group(tmp_path):
    work = tmp_path / "work"
    leader, (recorded, unrecorded) = _group_leader_with_two_children()
    records = PilotRecords(work)
    records.set_owner(Owner(leader.pid, psutil.Process(leader.pid).create_time(), leader.pid))
    records.add_report(OutboxEntry("m1", "s1", report("c1", "running"), final=False),
                       running=JobRecord("c1", "1.c1", recorded.pid, recorded.create_time(), None))
    assert kill_leftovers(work) == [], "the pilot is alive: its jobs are its own business"

    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    killed = kill_leftovers(work)
    assert {recorded.pid, unrecorded.pid} <= set(killed)
    for proc in (recorded, unrecorded):
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert not [p for p in psutil.process_iter() if _in_group(p, leader.pid)]


def test_a_reused_pid_is_never_killed(tmp_path):
    work = tmp_path / "work"
    bystander = subprocess.Popen(["/bin/sleep", "300"])
    try:
        records = PilotRecords(work)
        records.set_owner(Owner(2**22 + 1, 1.0, None))  # a pilot long gone
        records.add_report(OutboxEntry("m1", "s1", report("c1", "running"), final=False),
                           running=JobRecord("c1", "1.c1", bystander.pid,
                                             psutil.Process(bystander.pid).create_time() - 60,
                                             None))
        assert kill_leftovers(work) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False


def test_burst_down_sweeps_the_jobs_of_a_pilot_that_died_earlier(settings):
    """No service runs; one pilot directory holds the records of a pilot killed with SIGKILL
    whose job still runs: `burst down` leaves no job process behind."""
    leader, children = _group_leader_with_two_children()
    records = PilotRecords(settings.path("pilots", "p1", "work"))
    records.set_owner(Owner(leader.pid, psutil.Process(leader.pid).create_time(), leader.pid))
    records.close()
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    assert all(child.is_running() for child in children)
    assert stack.stop(settings, timeout=1.0) == []
    assert not [p for p in psutil.process_iter() if _in_group(p, leader.pid)]
