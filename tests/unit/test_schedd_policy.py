"""Job policy as HTCondor applies it, decided over ads that real submit files make."""

from __future__ import annotations

import classad2
import pytest

from services.schedd import policy
from services.schedd.policy import COMPLETE, HOLD, RELEASE, REMOVE, REQUEUE
from tests.unit.test_condor_submit_htcondor import read, script

NOW = 1_700_000_000


def queued(tmp_path, commands: str) -> classad2.ClassAd:
    """The ad the schedd keeps for a job of `commands`, queued at NOW."""
    script(tmp_path / "fit.sh")
    [job] = read(tmp_path, f"executable = fit.sh\n{commands}\nqueue\n").jobs
    return classad2.ClassAd(policy.on_queue(job.ad, NOW).ad)


def run(ad: classad2.ClassAd, exit_code: int | None = 0, signal: int | None = None,
        at: float = NOW + 100) -> tuple[classad2.ClassAd, policy.Verdict]:
    """One run of the job, as the schedd records it: started, ended, and what follows."""
    started = policy.with_attrs(str(ad), {**policy.status_change("idle", "running", at),
                                          **policy.start_attrs(ad, at)})
    ended = classad2.ClassAd(policy.with_attrs(started, policy.exit_attrs(
        classad2.ClassAd(started), exit_code, signal, wall_seconds=10.0)))
    verdict = policy.on_exit(ended, at + 10)
    if verdict.action == REQUEUE:  # idle again, as logic.py puts it
        ended = classad2.ClassAd(policy.with_attrs(str(ended), policy.status_change(
            "running", "idle", at + 10)))
    return ended, verdict


# --- on exit: retries ------------------------------------------------------------------------


def test_max_retries_runs_a_failing_job_again_until_it_succeeds(tmp_path):
    ad = queued(tmp_path, "on_exit_remove = ExitCode == 0\nmax_retries = 3")
    ad, first = run(ad, exit_code=1)
    ad, second = run(ad, exit_code=1)
    ad, third = run(ad, exit_code=0)
    assert [first.action, second.action, third.action] == [REQUEUE, REQUEUE, COMPLETE]
    assert first.reason.startswith("The job attribute OnExitRemove expression '")
    assert first.reason.endswith("' evaluated to FALSE")
    assert (ad["NumJobStarts"], ad["NumJobCompletions"], ad["ExitCode"]) == (3, 3, 0)


def test_max_retries_gives_up_after_that_many_retries(tmp_path):
    ad = queued(tmp_path, "max_retries = 2")
    actions = []
    for _ in range(3):
        ad, verdict = run(ad, exit_code=1)
        actions.append(verdict.action)
    assert actions == [REQUEUE, REQUEUE, COMPLETE]  # 1 run + 2 retries, then it leaves
    assert (ad["NumJobStarts"], ad["ExitCode"]) == (3, 1)


def test_success_exit_code_is_the_code_that_ends_the_retries(tmp_path):
    ad = queued(tmp_path, "max_retries = 5\nsuccess_exit_code = 2")
    assert run(ad, exit_code=0)[1].action == REQUEUE
    assert run(ad, exit_code=2)[1].action == COMPLETE


def test_retry_until_stops_retrying_on_its_own_condition(tmp_path):
    ad = queued(tmp_path, "max_retries = 5\nretry_until = ExitCode == 42")
    assert run(ad, exit_code=1)[1].action == REQUEUE
    assert run(ad, exit_code=42)[1].action == COMPLETE


def test_a_job_without_policy_completes_whatever_its_exit(tmp_path):
    ad = queued(tmp_path, "")
    assert run(ad, exit_code=7)[1].action == COMPLETE
    del ad["OnExitRemove"]  # an ad from before job policy: HTCondor's default is to leave
    assert run(ad, exit_code=7)[1] == policy.Verdict(COMPLETE)


def test_on_exit_remove_false_keeps_a_job_killed_by_a_signal_and_records_how(tmp_path):
    ad = queued(tmp_path, "on_exit_remove = ExitBySignal == false")
    ad, verdict = run(ad, exit_code=None, signal=11)
    assert verdict.action == REQUEUE
    assert (ad["ExitBySignal"], ad["ExitSignal"]) == (True, 11) and "ExitCode" not in ad


# --- on exit: holds, and expressions that cannot be decided ----------------------------------


def test_on_exit_hold_holds_with_its_reason_and_subcode(tmp_path):
    ad = queued(tmp_path, 'on_exit_hold = ExitCode == 3\non_exit_hold_reason = "bad input"\n'
                          "on_exit_hold_subcode = 7")
    assert run(ad, exit_code=0)[1].action == COMPLETE
    assert run(ad, exit_code=3)[1] == policy.Verdict(HOLD, "OnExitHold", "bad input",
                                                     policy.JOB_POLICY, 7)


def test_on_exit_hold_without_a_reason_says_which_expression_held_it(tmp_path):
    _, verdict = run(queued(tmp_path, "on_exit_hold = ExitCode != 0"), exit_code=1)
    assert (verdict.code, verdict.subcode) == (3, 0)
    assert verdict.reason == ("The job attribute OnExitHold expression 'ExitCode != 0' "
                              "evaluated to TRUE")


def test_an_undefined_exit_policy_holds_the_job_with_code_5(tmp_path):
    # ExitCode is undefined after a signal: `==` gives Undefined, which HTCondor holds on
    ad = queued(tmp_path, "on_exit_remove = ExitCode == 0")
    _, verdict = run(ad, exit_code=None, signal=9)
    assert (verdict.action, verdict.attr, verdict.code) == (HOLD, "OnExitRemove", 5)
    assert verdict.reason.endswith("evaluated to UNDEFINED")


def test_hold_wins_over_remove_and_periodic_over_on_exit(tmp_path):
    both = queued(tmp_path, "on_exit_hold = true\non_exit_remove = true")
    assert run(both)[1].action == HOLD
    periodic = queued(tmp_path, "periodic_remove = NumJobCompletions > 0\n"
                                "on_exit_remove = false")
    assert run(periodic)[1].action == REMOVE


# --- periodic --------------------------------------------------------------------------------


def test_periodic_remove_fires_once_its_time_has_come(tmp_path):
    ad = queued(tmp_path, "periodic_remove = (time() - QDate) > 30")
    assert policy.periodic(ad, "idle", NOW + 30) is None
    verdict = policy.periodic(ad, "idle", NOW + 31)
    assert verdict == policy.Verdict(
        REMOVE, "PeriodicRemove",
        "The job attribute PeriodicRemove expression '(time() - QDate) > 30' evaluated to TRUE")
    assert policy.periodic(ad, "held", NOW + 31).action == REMOVE  # in any state but the end
    assert policy.periodic(ad, "completed", NOW + 31) is None


def test_periodic_hold_applies_to_jobs_not_held_with_its_reason(tmp_path):
    ad = queued(tmp_path, "periodic_hold = (JobStatus == 2) && "
                          "(time() - JobCurrentStartDate) > 60\n"
                          'periodic_hold_reason = "ran too long"\nperiodic_hold_subcode = 42')
    started = classad2.ClassAd(policy.with_attrs(str(ad), {
        **policy.status_change("idle", "running", NOW), **policy.start_attrs(ad, NOW)}))
    assert policy.periodic(ad, "idle", NOW + 61) is None  # JobStatus 1
    assert policy.periodic(started, "running", NOW + 60) is None
    assert policy.periodic(started, "running", NOW + 61) == policy.Verdict(
        HOLD, "PeriodicHold", "ran too long", policy.JOB_POLICY, 42)


def test_periodic_release_releases_policy_holds_but_not_a_users(tmp_path):
    ad = queued(tmp_path, "periodic_release = NumHolds < 3")
    by_policy = classad2.ClassAd(policy.with_attrs(str(ad), policy.hold_attrs(
        ad, "too long", policy.JOB_POLICY, 0)))
    by_user = classad2.ClassAd(policy.with_attrs(str(ad), policy.hold_attrs(
        ad, "wait", policy.USER_REQUEST, 0)))
    assert policy.periodic(by_policy, "held", NOW).action == RELEASE
    assert policy.periodic(by_user, "held", NOW) is None
    assert policy.periodic(by_policy, "idle", NOW) is None  # only a held job is released


def test_periodic_release_ends_a_hold_at_submit(tmp_path):
    ad = queued(tmp_path, "hold = true\nperiodic_release = (time() - QDate) > 60")
    assert ad["HoldReasonCode"] == policy.SUBMITTED_ON_HOLD
    assert policy.periodic(ad, "held", NOW + 60) is None
    assert policy.periodic(ad, "held", NOW + 61).action == RELEASE


def test_an_undefined_periodic_expression_holds_a_job_but_leaves_a_held_one(tmp_path):
    ad = queued(tmp_path, "periodic_remove = NoSuchAttribute > 1")
    verdict = policy.periodic(ad, "idle", NOW)
    assert (verdict.action, verdict.code) == (HOLD, policy.JOB_POLICY_UNDEFINED)
    assert verdict.reason == ("The job attribute PeriodicRemove expression "
                              "'NoSuchAttribute > 1' evaluated to UNDEFINED")
    assert policy.periodic(ad, "held", NOW) is None


@pytest.mark.parametrize("expression", ["undefined", "false", "0"])
def test_literal_undefined_false_and_zero_never_fire(tmp_path, expression):
    ad = queued(tmp_path, f"periodic_remove = {expression}")
    assert policy.periodic(ad, "idle", NOW) is None


@pytest.mark.parametrize("expression", ['"yes"', "{1, 2}", "1/0"])
def test_what_is_no_truth_value_counts_as_undefined(tmp_path, expression):
    ad = queued(tmp_path, f"periodic_hold = {expression}")
    assert policy.periodic(ad, "idle", NOW).code == policy.JOB_POLICY_UNDEFINED


def test_time_is_the_decisions_now_in_any_case_and_never_inside_a_string(tmp_path):
    ad = queued(tmp_path, '+Note = "time() is not called here"\n'
                          "periodic_remove = (TIME( ) - QDate) > 30 && Note != \"\"")
    scope = policy.at(ad, NOW + 5)
    assert scope["Note"] == "time() is not called here"
    assert scope.eval("CurrentTime") == NOW + 5
    assert str(scope.lookup("PeriodicRemove")).startswith(f"({NOW + 5} - QDate) > 30")
    assert policy.periodic(ad, "idle", NOW + 31).action == REMOVE


# --- what the queue keeps --------------------------------------------------------------------


def test_the_queue_dates_a_job_by_its_own_clock_and_resolves_its_deferral(tmp_path):
    script(tmp_path / "fit.sh")
    [job] = read(tmp_path, "executable = fit.sh\ndeferral_time = QDate + 600\n"
                           "periodic_hold = false\nqueue\n").jobs
    kept = policy.on_queue(job.ad, NOW + 7)
    ad = classad2.ClassAd(kept.ad)
    assert (ad["QDate"], ad["EnteredCurrentStatus"]) == (NOW + 7, NOW + 7)
    assert kept.not_before == NOW + 7 + 600
    assert kept.periodic is False  # periodic expressions all false: nothing for the timer


def test_a_job_with_periodic_expressions_is_marked_for_the_timer(tmp_path):
    assert policy.on_queue(queued(tmp_path, "periodic_release = true"), NOW).periodic
    assert policy.on_queue(queued(tmp_path, ""), NOW).not_before is None


def test_a_deferral_time_that_is_no_time_is_refused(tmp_path):
    script(tmp_path / "fit.sh")
    [job] = read(tmp_path, "executable = fit.sh\ndeferral_time = NoSuchAttribute + 60\n"
                           "queue\n").jobs
    with pytest.raises(ValueError, match="DeferralTime NoSuchAttribute \\+ 60 is not a time"):
        policy.on_queue(job.ad, NOW)


def test_a_move_within_one_htcondor_status_changes_nothing():
    assert policy.status_change("idle", "idle", NOW) == {}
    assert policy.status_change("idle", "held", NOW) == {
        "JobStatus": 5, "LastJobStatus": 1, "EnteredCurrentStatus": NOW}
