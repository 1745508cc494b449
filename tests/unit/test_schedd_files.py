"""The files the schedd keeps and writes: inputs only from the spool, outputs only inside the
job's initialdir, under names the job asked for, never through a symbolic link."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

import classad2
import pytest

from schemas import job as J
from services.schedd import confined, transfer
from tests.unit.test_schedd import Harness, job_ad


def ad(iwd: Path, **extra) -> classad2.ClassAd:
    return classad2.ClassAd({"Cmd": "/bin/echo", "Iwd": str(iwd), "Out": "job.out",
                             "Err": "/dev/null", **extra})


def write(job: classad2.ClassAd, files: dict[str, bytes], owner: str = "alice",
          **kw) -> list[str]:
    return transfer.write_outputs(job, b"out\n", b"", files, owner=owner, **kw)


@pytest.fixture
def iwd(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_outputs_land_in_iwd_and_subdirectories_are_made(iwd):
    written = write(ad(iwd, Out="out/job.out", TransferOutput=["sub/r.txt"]), {"r.txt": b"42"})
    assert written == [str(iwd / "out" / "job.out"), str(iwd / "r.txt")]
    assert (iwd / "out" / "job.out").read_bytes() == b"out\n"
    assert (iwd / "r.txt").read_bytes() == b"42"


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/b", "", ".", ".."])
def test_an_output_name_with_a_directory_in_it_is_refused_and_nothing_is_written(iwd, name):
    with pytest.raises(transfer.TransferError, match="output file named"):
        write(ad(iwd), {"good.txt": b"1", name: b"x"})
    assert sorted(os.listdir(iwd)) == []  # names are checked before anything is written
    assert not (iwd.parent / "escape.txt").exists()


def test_only_the_names_transfer_output_files_lists_come_back(iwd):
    job = ad(iwd, TransferOutput=["result.txt"])
    with pytest.raises(transfer.TransferError, match="'jobs.sub'.*does not list"):
        write(job, {"result.txt": b"1", "jobs.sub": b"queue 1000000"})
    assert not (iwd / "result.txt").exists()


def test_without_a_list_any_new_file_comes_back_but_never_the_submit_file_or_user_log(iwd):
    (iwd / "jobs.sub").write_text("executable = x\nqueue\n")
    job = ad(iwd, UserLog=str(iwd / "jobs.log"))
    protected = transfer.protected_files(job, str(iwd / "jobs.sub"))
    assert protected == {PurePosixPath("jobs.sub"), PurePosixPath("jobs.log")}
    for name in ("jobs.sub", "jobs.log"):
        with pytest.raises(transfer.TransferError, match="submit file or user log"):
            write(job, {name: b"overwritten"}, protected=protected)
    assert (iwd / "jobs.sub").read_text() == "executable = x\nqueue\n"
    assert write(job, {"new.txt": b"1"}, protected=protected)[-1] == str(iwd / "new.txt")


def test_a_symbolic_link_in_iwd_is_never_followed(iwd, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep")
    (iwd / "victim.txt").symlink_to(outside / "victim.txt")
    (iwd / "out").symlink_to(outside)
    with pytest.raises(transfer.TransferError, match="victim.txt is a symbolic link"):
        write(ad(iwd, Out="/dev/null"), {"victim.txt": b"pwned"})
    with pytest.raises(transfer.TransferError, match="out is a symbolic link"):
        write(ad(iwd, Out="out/victim.txt"), {})
    assert (outside / "victim.txt").read_text() == "keep"
    assert sorted(os.listdir(outside)) == ["victim.txt"]


@pytest.mark.parametrize("out", ["../job.out", "/tmp/job.out"])
def test_stdout_is_written_inside_iwd_only(iwd, out):
    with pytest.raises(transfer.TransferError, match="output file"):
        write(ad(iwd, Out=out), {})
    assert not (iwd.parent / "job.out").exists()


def test_no_output_goes_into_the_schedds_state_directory(tmp_path):
    state = tmp_path / "state"
    (state / "keys").mkdir(parents=True)
    with pytest.raises(transfer.TransferError, match="inside the schedd's state directory"):
        write(ad(state / "keys", TransferOutput=["pool.key"]), {"pool.key": b"0" * 64},
              private_dir=state)
    assert not (state / "keys" / "pool.key").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and other users' rights need root")
def test_as_root_files_belong_to_the_owner_who_must_be_able_to_write_there(tmp_path):
    nobody = confined.account_of("nobody")
    assert nobody is not None and nobody.uid != 0
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, nobody.uid, nobody.gid)
    write(ad(theirs, Out="logs/job.out"), {"r.txt": b"1"}, owner="nobody")
    for path in (theirs / "logs", theirs / "logs" / "job.out", theirs / "r.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.uid, nobody.gid)
    roots = tmp_path / "roots"
    roots.mkdir(mode=0o755)
    with pytest.raises(transfer.TransferError, match="nobody may not"):
        write(ad(roots), {}, owner="nobody")
    assert os.listdir(roots) == []
    assert stat.S_IMODE(roots.stat().st_mode) == 0o755


# --- through the schedd ---------------------------------------------------------------------


@pytest.fixture
def h(settings, tmp_path):
    harness = Harness(settings, tmp_path)
    yield harness
    harness.bus.stop()


def run_to_exit(h: Harness, **report) -> J.JobInfo:
    h.offer(h.demand().autoclusters[0].id)
    h.pilot_inbox.wait_for(lambda items: len(items) == 1)
    h.report("1.0", "c0", "exited", exit_code=0, **report)
    return h.q()["1.0"]


def test_a_report_returning_a_file_outside_iwd_holds_the_job_naming_it(h, tmp_path):
    h.submit([job_ad(tmp_path)])
    job = run_to_exit(h, output_files={"../../escape": b"x"})
    assert job.state == "held" and "'../../escape'" in job.hold_reason
    assert not (tmp_path.parent / "escape").exists()


def test_inputs_are_spooled_per_shared_set_and_cleaned_once_the_cluster_is_done(h, tmp_path):
    h.submit([job_ad(tmp_path)] * 2, files={"in.txt": b"data"})
    spooled = h.schedd.spool_dir / "1" / "shared" / "in.txt"
    assert spooled.read_bytes() == b"data" and stat.S_IMODE(spooled.stat().st_mode) == 0o600
    h.bus.call(J.JobAction(action="remove", ids=["1"]), to="s1")
    h.schedd.clean_spool()
    assert not (h.schedd.spool_dir / "1").exists()


def test_a_submission_naming_an_input_set_it_does_not_carry_is_refused(h, tmp_path):
    from services.runtime.bus import RemoteError

    cluster = h.bus.call(J.ClusterNew(owner="alice"), to="s1").cluster
    bad = J.JobSubmit(cluster=cluster, owner="alice", submit_file="x.sub",
                      procs=[J.ProcAd(0, job_ad(tmp_path), inputs=3)])
    with pytest.raises(RemoteError, match="no input set 3"):
        h.bus.call(bad, to="s1")
    assert h.q() == {}
