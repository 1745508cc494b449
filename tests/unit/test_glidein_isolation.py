"""Slot users: who a job runs as, one uid per running job across pilots, nobody as fallback,
and what a non-root pilot says about it. Jobs are real /bin/sh processes."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest

from schemas.slot import ClaimActivate
from services.condor.pilot import PilotContext
from services.condor.slot import Resources, slot_ad
from services.glidein.executor import JobResult, JobRun
from services.glidein.isolation import (
    SlotUser,
    SlotUsers,
    guard_key_file,
    nobody,
    parse_slot_users,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def test_pool_specs():
    users = parse_slot_users("60001-60003, 60002, nobody")
    assert [u.uid for u in users] == [60001, 60002, 60003, nobody().uid]
    assert users[0] == SlotUser("60001", 60001, 60001)
    assert parse_slot_users(" ") == []
    with pytest.raises(ValueError, match="expected a range"):
        parse_slot_users("0-5")


def test_a_pilot_that_is_not_root_runs_jobs_as_itself_and_says_so(tmp_path):
    users = SlotUsers("60001-60002", euid=1000, lock_dir=tmp_path)
    assert users.mode == "none" and users.acquire() is None
    assert "mode=none" in users.describe() and "not root" in users.describe()


def test_each_running_job_gets_a_uid_of_its_own_across_pilots(tmp_path):
    # Two pilots on one host share the lock directory, as the local driver's pilots do.
    first = SlotUsers("62001-62002", euid=0, lock_dir=tmp_path)
    second = SlotUsers("62001-62002", euid=0, lock_dir=tmp_path)
    a, b = first.acquire(), second.acquire()
    assert {a.uid, b.uid} == {62001, 62002}
    assert first.acquire() == nobody() and not nobody().dedicated  # the pool is used up
    first.release(a)
    assert second.acquire() == a


@as_root
def test_a_uid_that_still_has_processes_is_skipped(tmp_path):
    squatter = subprocess.Popen(["/bin/sleep", "60"], user=62011, group=62011, extra_groups=[])
    try:
        users = SlotUsers("62011-62012", lock_dir=tmp_path)
        assert users.acquire().uid == 62012
    finally:
        squatter.kill()
        squatter.wait()


def test_a_key_file_left_readable_is_made_the_pilots_alone(tmp_path):
    key = tmp_path / "pilot.key"
    key.write_text("0" * 64)
    key.chmod(0o644)
    guard_key_file(str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


CTX = PilotContext(pilot_id="p1", site="SiteA", cpus=2, memory_mb=100, disk_mb=10)


def _run(msg: ClaimActivate, work, user: SlotUser) -> tuple[JobRun, JobResult]:
    run = JobRun(msg, slot_ad(CTX, Resources(1, 100, 10)), work, user=user)
    held = run.start()
    assert held is None, held
    deadline = time.monotonic() + 20
    while (result := run.poll()) is None:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.02)
    return run, result


def _activation(body: str, **fields) -> ClaimActivate:
    return ClaimActivate(claim_id="c1", pilot_id="p1", schedd="s", job_id="1.0", job_ad="[]",
                         executable="job.sh", arguments=[], environment={},
                         files={"job.sh": f"#!/bin/sh\n{body}\n".encode()}, cpus=1,
                         memory_mb=100, disk_mb=10, **fields)


@as_root
def test_the_job_runs_as_its_slot_user_in_a_private_scratch_dir(job_root):
    user = SlotUser("62021", 62021, 62021)
    msg = _activation('id -u; id -g; id -G; stat -c "%u %a" .; echo x > out.txt')
    run, result = _run(msg, job_root, user)
    assert result.stdout.decode().split("\n")[:4] == ["62021", "62021", "62021", "62021 700"]
    assert result.output_files == {"out.txt": b"x\n"}
    assert stat.S_IMODE(run.scratch.parent.stat().st_mode) == 0o711  # execute/: not listable
    run.cleanup()


@as_root
def test_a_symlink_left_by_the_job_is_never_read_by_the_root_pilot(job_root):
    secret = job_root / "pilot-secret"
    secret.write_text("pool password")
    os.chmod(secret, 0o600)
    user = SlotUser("62031", 62031, 62031)
    body = f"ln -s {secret} link.txt; cat {secret}; echo rc=$?"
    first, result = _run(_activation(body), job_root, user)
    assert b"pool password" not in result.stdout and result.output_files == {}
    first.cleanup()
    for body, name in ((f"ln -s {secret} link.txt", "link.txt"),
                       (f"ln -s {secret.parent} sub", "sub/pilot-secret")):
        run, listed = _run(_activation(body, output_files=[name]), job_root, user)
        assert listed.state == "held" and f"cannot return {name}" in listed.reason
        run.cleanup()
