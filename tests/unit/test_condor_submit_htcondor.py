"""Submit files as HTCondor means them: the refusals and meanings issue 11 found wrong.

Each test is a submit file a user could bring from an HTCondor pool, and asserts
what condor_submit would have made of it (or the refusal that names why not).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from services.cli import inputs
from services.condor import jobad
from services.condor.submit import Submission, SubmitError, read_submit_file

NOW = 1_700_000_000


def read(directory: Path, text: str, *, name: str = "job.sub",
         environ: dict[str, str] | None = None) -> Submission:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return read_submit_file(path, cluster=7, owner="alice", now=NOW, environ=environ or {})


def refusal(directory: Path, text: str) -> SubmitError:
    with pytest.raises(SubmitError) as caught:
        read(directory, text)
    return caught.value


def script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho \"$@\"\n")
    path.chmod(0o755)
    return path


# --- wrong refusals --------------------------------------------------------------------------


def test_control_characters_stay_inside_their_line(tmp_path):
    """A page break and a vertical tab pasted into values: lines end only at \\n."""
    script(tmp_path / "fit.sh")
    sub = read(tmp_path, "executable = fit.sh\n"
                         "description = Z mass fit\x0cpage 2 of the notes\n"
                         'arguments = "--sep \x0b --label run42"\n'
                         "request_memory = 2 GB\nqueue\n")
    [job] = sub.jobs
    assert job.ad["JobDescription"] == "Z mass fit\x0cpage 2 of the notes"
    assert jobad.arguments(job.ad) == ["--sep", "--label", "run42"]  # \v is whitespace
    assert job.ad["RequestMemory"] == 2048
    err = refusal(tmp_path, "executable = fit.sh\ndescription = a\x0cb\n"
                            "request_cpus = two\nqueue\n")
    assert err.line == 3  # a control character does not shift the line numbers


def test_a_relative_executable_is_found_from_the_submit_files_directory(tmp_path):
    """Per-run directories as initialdir, the analysis script kept beside the submit file."""
    script(tmp_path / "bin" / "analyze.sh")
    for run in (0, 1):
        (tmp_path / "runs" / f"run_{run}").mkdir(parents=True)
        (tmp_path / "runs" / f"run_{run}" / "events.dat").write_text("x")
    sub = read(tmp_path, """
        executable = bin/analyze.sh
        initialdir = runs/run_$(Process)
        transfer_input_files = events.dat
        output = analyze.out
        queue 2
        """)
    assert [job.ad["Cmd"] for job in sub.jobs] == [str(tmp_path / "bin" / "analyze.sh")] * 2
    assert [job.ad["Iwd"] for job in sub.jobs] == [str(tmp_path / "runs" / f"run_{run}")
                                                   for run in (0, 1)]
    assert set(sent(sub, proc=1)) == {"analyze.sh", "events.dat"}  # what travels with it


def test_an_executable_only_under_initialdir_is_refused_with_the_reason(tmp_path):
    script(tmp_path / "run1" / "step.sh")
    err = refusal(tmp_path, "initialdir = run1\nexecutable = step.sh\nqueue\n")
    assert err.line == 2 and "not from initialdir" in str(err)


def test_shell_runs_a_command_line_with_macros(tmp_path):
    script(tmp_path / "run.sh")
    sub = read(tmp_path, """
        shell = ./run.sh $(sample) > $(sample).log 2>&1
        transfer_input_files = run.sh
        transfer_output_files = $(sample).log
        queue sample in (ttbar, wjets)
        """)
    assert [job.ad["Cmd"] for job in sub.jobs] == ["/bin/sh", "/bin/sh"]
    assert [jobad.arguments(job.ad) for job in sub.jobs] == [
        ["-c", "./run.sh ttbar > ttbar.log 2>&1"], ["-c", "./run.sh wjets > wjets.log 2>&1"]]
    assert all(job.ad["TransferExecutable"] is False for job in sub.jobs)
    assert set(sent(sub, proc=0)) == {"run.sh"}  # /bin/sh is the pilot's own


def test_shell_with_an_executable_as_well_is_refused(tmp_path):
    script(tmp_path / "run.sh")
    err = refusal(tmp_path, "executable = run.sh\nshell = echo hi\nqueue\n")
    assert err.line == 1 and "either shell or executable" in str(err)


# --- wrong meanings --------------------------------------------------------------------------


def test_queue_arguments_from_a_file_gives_each_job_its_line(tmp_path):
    script(tmp_path / "sim.sh")
    (tmp_path / "params.txt").write_text("--seed 1 --n 1000\n--seed 2 --n 1000\n"
                                         "--seed 3 --n 'a b'\n")
    sub = read(tmp_path, """
        executable = sim.sh
        arguments = --default
        output = sim_$(Process).out
        queue arguments from params.txt
        """)
    assert [jobad.arguments(job.ad) for job in sub.jobs] == [
        ["--seed", "1", "--n", "1000"], ["--seed", "2", "--n", "1000"],
        ["--seed", "3", "--n", "'a", "b'"]]  # old syntax: quotes are literal, as in HTCondor


def test_queue_variables_named_like_commands_set_those_commands(tmp_path):
    script(tmp_path / "fit.sh")
    for name in ("a.root", "b.root"):
        (tmp_path / name).write_text("x")
    sub = read(tmp_path, """
        executable = fit.sh
        queue transfer_input_files, arguments from (
          a.root, "-i a.root -o 'fit a.json'"
          b.root, "-i b.root -o 'fit b.json'"
        )
        """)
    assert [job.ad["TransferInput"] for job in sub.jobs] == ["a.root", "b.root"]
    assert [jobad.arguments(job.ad) for job in sub.jobs] == [
        ["-i", "a.root", "-o", "fit a.json"], ["-i", "b.root", "-o", "fit b.json"]]


def test_transfer_output_files_empty_quotes_transfer_nothing(tmp_path):
    script(tmp_path / "stage.sh")
    [job] = read(tmp_path, 'executable = stage.sh\ntransfer_output_files = ""\nqueue\n').jobs
    assert job.ad["TransferOutput"] == ""  # condor_submit's special case, kept in the ad
    assert jobad.string_list(job.ad, "TransferOutput") == []  # what the pilot is asked for
    [job] = read(tmp_path, "executable = stage.sh\nqueue\n").jobs
    assert "TransferOutput" not in job.ad


def test_hold_true_queues_the_job_held_as_htcondor_does(tmp_path):
    script(tmp_path / "big.sh")
    sub = read(tmp_path, "executable = big.sh\nhold = True\nqueue 2\n")
    for job in sub.jobs:
        assert (job.ad["JobStatus"], job.ad["HoldReasonCode"]) == (5, 15)
        assert job.ad["HoldReason"] == "submitted on hold at user's request"
    [job] = read(tmp_path, "executable = big.sh\nhold = false\nqueue\n").jobs
    assert job.ad["JobStatus"] == 1 and "HoldReason" not in job.ad


@pytest.mark.parametrize("url", ["osdf:///ospool/ap20/data/alice/ref.fa",
                                 "stash:///osgconnect/public/alice/ref.fa"])
def test_osdf_and_stash_inputs_are_refused_at_submit_naming_the_scheme(tmp_path, url):
    script(tmp_path / "blast.sh")
    scheme = url.split(":")[0]
    err = refusal(tmp_path, f"executable = blast.sh\ntransfer_input_files = {url}\nqueue\n")
    assert err.line == 2 and f"the {scheme}:// scheme is not served" in str(err)


def test_http_https_and_s3_inputs_are_kept_as_urls_for_the_pilot(tmp_path):
    script(tmp_path / "blast.sh")
    (tmp_path / "query.fa").write_text(">q\nACGT\n")
    [job] = read(tmp_path, """
        executable = blast.sh
        transfer_input_files = query.fa, https://data.example.org/db/nt.tar.gz, \\
                               http://mirror.example.org/x.fa, s3://bucket/ref/y.fa
        queue
        """).jobs
    assert job.ad["TransferInput"] == ("query.fa,https://data.example.org/db/nt.tar.gz,"
                                       "http://mirror.example.org/x.fa,s3://bucket/ref/y.fa")


def sent(sub, proc: int) -> dict[str, bytes]:
    """The files `burst submit` reads and sends with job `proc` (services/cli/inputs.py)."""
    found = inputs.read(sub.jobs, "job.sub", 1)
    return found.sets[found.index[proc]]
