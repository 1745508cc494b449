"""getenv, job policy, accounting groups, limits, deferral and custom resources in the ad,
and the warnings that name what the pool does not serve: as condor_submit writes them."""

from __future__ import annotations

import classad2
import pytest

from services.condor import jobad
from tests.unit.test_condor_submit_htcondor import read, refusal, script

SUBMITTER = {"HOME": "/home/alice", "PATH": "/usr/bin:/bin", "CONDA_PREFIX": "/opt/conda",
             "CONDA_DEFAULT_ENV": "physics", "LANG": "C.UTF-8", "MULTI": "a\nb",
             "AWS_SECRET_ACCESS_KEY": "s3cr3t", "GITHUB_TOKEN": "ghp_x",
             "AMQP_URL": "amqp://burst:pw@broker/%2F", "BURST_TOKEN_FILE": "/home/alice/t",
             "BURST_POOL_KEY_FILE": "/etc/burst/pool.key"}


@pytest.fixture
def job_dir(tmp_path):
    script(tmp_path / "run.sh")
    return tmp_path


def same_expression(expr: classad2.ExprTree, text: str) -> bool:
    return str(expr) == str(classad2.ExprTree(text))  # classad2 writes =?= as "is"


def one(job_dir, text, **kw):
    sub = read(job_dir, "executable = run.sh\n" + text + "queue\n", **kw)
    [job] = sub.jobs
    return job.ad, [str(warning).split(": ", 1)[1] for warning in sub.warnings]


# --- getenv ----------------------------------------------------------------------------------


def test_getenv_true_copies_the_submitters_environment_but_not_the_pools_or_secrets(job_dir):
    ad, warnings = one(job_dir, 'getenv = true\nenvironment = "LANG=en_US.UTF-8 EXTRA=1"\n',
                       environ=SUBMITTER)
    assert jobad.environment(ad) == {
        "CONDA_DEFAULT_ENV": "physics", "CONDA_PREFIX": "/opt/conda", "EXTRA": "1",
        "HOME": "/home/alice", "LANG": "en_US.UTF-8", "PATH": "/usr/bin:/bin"}
    assert ad["Environment"].startswith("CONDA_DEFAULT_ENV=physics CONDA_PREFIX=/opt/conda")
    assert any("not copied: AMQP_URL, BURST_POOL_KEY_FILE, BURST_TOKEN_FILE" in w
               for w in warnings)
    assert any("look secret: AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN" in w for w in warnings)
    assert not any("s3cr3t" in w or "ghp_x" in w for w in warnings)  # names, never values


def test_getenv_list_takes_names_and_patterns_case_insensitively_with_exclusions(job_dir):
    ad, _ = one(job_dir, "getenv = home, CONDA_*, !conda_prefix, GITHUB_TOKEN, AMQP_URL\n",
                environ=SUBMITTER)
    assert jobad.environment(ad) == {"CONDA_DEFAULT_ENV": "physics", "GITHUB_TOKEN": "ghp_x",
                                     "HOME": "/home/alice"}


def test_getenv_false_and_absent_copy_nothing(job_dir):
    assert jobad.environment(one(job_dir, "getenv = False\n", environ=SUBMITTER)[0]) == {}
    assert jobad.environment(one(job_dir, "", environ=SUBMITTER)[0]) == {}


def test_getenv_with_old_syntax_env_leaves_out_values_it_cannot_write(job_dir):
    ad, _ = one(job_dir, "env = MODE=fast\ngetenv = PATH, SEMI\n",
                environ={"PATH": "/bin", "SEMI": "a;b"})
    assert (ad["Env"], ad["EnvDelim"]) == ("MODE=fast;PATH=/bin", ";")


# --- policy ----------------------------------------------------------------------------------


def test_retries_fold_into_on_exit_remove_as_condor_submit_does(job_dir):
    ad, warnings = one(job_dir, "max_retries = 3\nsuccess_exit_code = 2\nretry_until = 42\n"
                                "on_exit_remove = ExitBySignal == false\n")
    assert (ad["JobMaxRetries"], ad["JobSuccessExitCode"]) == (3, 2)
    assert same_expression(ad.lookup("OnExitRemove"), (
        "NumJobCompletions > JobMaxRetries || ExitCode =?= JobSuccessExitCode || "
        "ExitCode =?= 42 || (ExitBySignal == false)"))
    ad["NumJobCompletions"], ad["ExitCode"], ad["ExitBySignal"] = 1, 1, True
    assert ad.eval("OnExitRemove") is False  # failed: goes round again
    ad["ExitCode"] = 2
    assert ad.eval("OnExitRemove") is True  # success, by success_exit_code
    ad["ExitCode"], ad["NumJobCompletions"] = 1, 4
    assert ad.eval("OnExitRemove") is True  # retries used up
    assert warnings == []  # the schedd retries (services/schedd/policy.py)


def test_retry_until_expression_and_default_max_retries(job_dir):
    ad, _ = one(job_dir, "retry_until = ExitCode > 100 && ExitCode < 110\n")
    assert ad["JobMaxRetries"] == 2  # HTCondor's DEFAULT_JOB_MAX_RETRIES
    assert same_expression(ad.lookup("OnExitRemove"), (
        "NumJobCompletions > JobMaxRetries || ExitCode =?= 0 || "
        "(ExitCode > 100 && ExitCode < 110)"))


def test_policy_expressions_land_in_the_ad(job_dir):
    ad, warnings = one(job_dir, "on_exit_hold = ExitCode == 3\n"
                                'on_exit_hold_reason = "bad input"\n'
                                "periodic_remove = (time() - QDate) > 30\n"
                                "periodic_hold = NumJobStarts > 5\n"
                                "periodic_release = HoldReasonCode == 3\n")
    assert str(ad.lookup("OnExitHold")) == "ExitCode == 3"
    assert ad["OnExitHoldReason"] == "bad input"
    assert str(ad.lookup("PeriodicRemove")) == "(time() - QDate) > 30"
    assert str(ad.lookup("PeriodicHold")) == "NumJobStarts > 5"
    assert str(ad.lookup("PeriodicRelease")) == "HoldReasonCode == 3"
    assert ad["OnExitRemove"] is True
    assert warnings == []  # the schedd evaluates them all


def test_a_bad_policy_expression_is_refused_on_its_line(job_dir):
    err = refusal(job_dir, "executable = run.sh\nperiodic_remove = (time() - \nqueue\n")
    assert err.line == 2 and "periodic_remove" in str(err)


# --- accounting groups and limits ------------------------------------------------------------


def test_accounting_group_and_user_make_the_group_dot_user_principal(job_dir):
    ad, _ = one(job_dir, "accounting_group = group_physics.higgs\n"
                         "accounting_group_user = bob\n")
    assert (ad["AcctGroup"], ad["AcctGroupUser"], ad["AccountingGroup"]) == (
        "group_physics.higgs", "bob", "group_physics.higgs.bob")
    ad, _ = one(job_dir, "accounting_group = group_cms\n")
    assert ad["AccountingGroup"] == "group_cms.alice"  # the owner by default


def test_nice_user_is_the_nice_user_group(job_dir):
    ad, _ = one(job_dir, "nice_user = true\n")
    assert (ad["NiceUser"], ad["AcctGroup"], ad["AccountingGroup"]) == (
        True, "nice-user", "nice-user.alice")
    ad, warnings = one(job_dir, "nice_user = true\naccounting_group = group_a\n")
    assert ad["AccountingGroup"] == "group_a.alice"
    assert any("conflicts with accounting_group" in w for w in warnings)


def test_bad_accounting_group_is_refused(job_dir):
    err = refusal(job_dir, "executable = run.sh\naccounting_group = group a\nqueue\n")
    assert err.line == 2 and "not a valid name" in str(err)


def test_concurrency_limits_are_lower_case_sorted_as_condor_submit_writes_them(job_dir):
    ad, _ = one(job_dir, "concurrency_limits = SW_Matlab, db_writes:2, Licenses.X\n")
    assert ad["ConcurrencyLimits"] == "db_writes:2,licenses.x,sw_matlab"
    err = refusal(job_dir, "executable = run.sh\nconcurrency_limits = a:b\nqueue\n")
    assert err.line == 2 and "invalid concurrency limit 'a:b'" in str(err)


# --- deferral and cron -----------------------------------------------------------------------


def test_deferral_time_is_recorded_with_htcondors_window_and_prep_time(job_dir):
    ad, warnings = one(job_dir, "deferral_time = 1800000000\n")
    assert (ad["DeferralTime"], ad["DeferralWindow"], ad["DeferralPrepTime"]) == (
        1800000000, 0, 300)
    assert warnings == []  # the schedd keeps the job back until then
    ad, warnings = one(job_dir, "deferral_time = QDate + 3600\ndeferral_window = 60\n")
    assert ad.eval("DeferralTime") == 1_700_003_600 and ad["DeferralWindow"] == 60
    assert [w.split(":")[0] for w in warnings] == ["deferral_window"]


def test_cron_commands_are_recorded_and_warned(job_dir):
    ad, warnings = one(job_dir, "cron_minute = 0\ncron_hour = */6\non_exit_remove = false\n")
    assert (ad["CronMinute"], ad["CronHour"], ad["DeferralPrepTime"]) == ("0", "*/6", 300)
    assert any(w.startswith("cron_minute: recorded; the job runs once") for w in warnings)


# --- resources -------------------------------------------------------------------------------


def test_request_gpus_and_custom_resources_become_requests_the_slot_must_meet(job_dir):
    ad, _ = one(job_dir, "request_gpus = 2\nrequest_Boats = 3\nrequest_licenses = 0\n")
    assert (ad["RequestGPUs"], ad["RequestBoats"], ad["Requestlicenses"]) == (2, 3, 0)
    slot = classad2.ClassAd("[Cpus = 4; Memory = 8192; Disk = 10000000; GPUs = 2; Boats = 3;"
                            " Requirements = true]")
    assert ad.symmetricMatch(slot)
    slot["GPUs"] = 1
    assert not ad.symmetricMatch(slot)
    del slot["Boats"]
    slot["GPUs"] = 2
    assert not ad.symmetricMatch(slot)  # a slot without the resource does not match
    assert "licenses" not in str(ad.lookup("Requirements"))  # a request of 0 asks nothing


def test_request_memory_may_be_an_expression_as_in_htcondor(job_dir):
    ad, _ = one(job_dir, "request_memory = ifThenElse(MemoryUsage =!= undefined, "
                         "MemoryUsage * 3/2, 2048)\nrequest_cpus = 2 * 2\n")
    assert ad.eval("RequestMemory") == 2048 and ad.eval("RequestCpus") == 4
    ad["MemoryUsage"] = 4000
    assert ad.eval("RequestMemory") == 6000


@pytest.mark.parametrize("line", ["request_memory = GB", "request_cpus = 1.5",
                                  "request_memory = \"2G\"", "request_disk = 3 - 5"])
def test_requests_that_cannot_be_sizes_are_refused(job_dir, line):
    err = refusal(job_dir, f"executable = run.sh\n{line}\nqueue\n")
    assert err.line == 2


# --- warnings: what the pool does not serve is named, what changes nothing stays quiet -------


def test_commands_not_served_are_each_named_once_in_a_warning(job_dir):
    sub = read(job_dir, """
        executable = run.sh
        container_image = docker://python:3.11
        transfer_output_remaps = "out.txt = results/out_$(Process).txt"
        kill_sig = SIGUSR1
        stream_output = true
        notification = Complete
        notify_user = alice@example.org
        should_transfer_files = YES
        when_to_transfer_output = ON_EXIT
        queue 3
        """)
    named = [str(warning).split(": ")[1] for warning in sub.warnings]
    assert named == ["container_image", "transfer_output_remaps", "kill_sig", "stream_output"]
    assert all(str(w).startswith(f"{job_dir / 'job.sub'} line ") for w in sub.warnings)


def test_a_line_nothing_uses_is_named_as_a_likely_typo(job_dir):
    sub = read(job_dir, "executable = run.sh\nrequst_memory = 4G\nDATA = /data\n"
                        "arguments = $(DATA)/in\nqueue\n")
    assert [str(w) for w in sub.warnings] == [
        f"{job_dir / 'job.sub'} line 2: 'requst_memory' is not a submit command and nothing "
        "uses it: is it a typo?"]


def test_other_universes_are_refused_container_runs_as_vanilla_with_a_warning(job_dir):
    err = refusal(job_dir, "universe = java\nexecutable = run.sh\nqueue\n")
    assert err.line == 1 and "only the vanilla universe" in str(err)
    ad, warnings = one(job_dir, "universe = container\n")
    assert ad["JobUniverse"] == 5
    assert any(w.startswith("universe: the container universe is not served") for w in warnings)


def test_refused_commands_name_their_line(job_dir):
    err = refusal(job_dir, "executable = run.sh\nnoop_job = true\nqueue\n")
    assert err.line == 2 and "noop_job is not supported here" in str(err)
