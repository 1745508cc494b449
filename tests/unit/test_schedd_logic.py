"""The schedd's state machine as pure decisions: every transition, and every refusal."""

from __future__ import annotations

import dataclasses

import classad2
import pytest

from schemas import job as J
from schemas.slot import Claim, ClaimActivate, JobKill
from services.runtime import security
from services.runtime.security import Principal
from services.schedd import logic
from services.schedd.logic import Job, TransferFailed
from services.schedd.store import Store

NOW = 1_700_000_000.0
LOG = "/nonexistent/dir/jobs.log"  # decisions name the file; writing it is the handler's


def ad(**extra) -> str:
    job = classad2.ClassAd({"Cmd": "/bin/echo", "Args": ["a", "b c"], "Env": ["X=1", "Y=two"],
                            "Iwd": "/nonexistent/iwd", "Out": "out/job.out", "Err": "/dev/null",
                            "TransferOutput": ["result.txt"], "UserLog": LOG, **extra})
    return str(job)


def job(state: str = "idle", **fields) -> Job:
    return Job(**{"cluster": 7, "proc": 2, "owner": "alice", "state": state, "ad": ad(),
                  **fields})


def on_pilot(state: str = "running", **fields) -> Job:
    """A job holding claim c1 on pilot p1 at SiteA."""
    return job(state, **{"claim_id": "c1", "pilot_id": "p1", "entry": "e1", "site": "SiteA",
                         "provider": "local", "matched_at": NOW - 5, **fields})


def report(state: str, claim_id: str = "c1", **fields) -> J.JobReport:
    return J.JobReport(job_id="7.2", claim_id=claim_id, pilot_id="p1", state=state, **fields)


PILOT_P1 = security.pilot("p1")
ALICE = Principal("user", "alice", "t1")


def act(j: Job, action: str, reason: str = "", actor: Principal = ALICE) -> logic.Plan:
    return logic.job_action(j, action, reason, actor=actor, schedd="s1", now=NOW)


def decide(j: Job | None, r: J.JobReport, outputs=None,
           sender: Principal = PILOT_P1) -> logic.Plan:
    return logic.job_report(j, r, sender=sender, schedd="s1", now=NOW, outputs=outputs)


def log_codes(plan: logic.Plan) -> list[str]:
    assert all(line.path == LOG for line in plan.user_log)
    return [line.text[:3] for line in plan.user_log]


def columns(plan: logic.Plan) -> dict:
    """The plan's column changes but the stored ad."""
    return {k: v for k, v in plan.changes.items() if k != "ad"}


def stored(plan: logic.Plan) -> classad2.ClassAd:
    """The job's ad as the plan stores it."""
    return classad2.ClassAd(plan.changes["ad"])


def nothing_happens(plan: logic.Plan) -> bool:
    return plan.refused != "" and not (plan.changes or plan.commands or plan.events
                                       or plan.user_log)


# --- user actions ----------------------------------------------------------------------------


def test_release_of_a_held_job_makes_it_idle_again():
    held = job("held", ad=ad(JobStatus=5, HoldReason="oops", HoldReasonCode=1))
    plan = act(held, "release", "fixed the input")
    assert columns(plan) == {"state": "idle", "hold_reason": "", "claim_id": None,
                             "matched_at": None}
    after = stored(plan)
    assert (after["JobStatus"], after["LastJobStatus"], after["EnteredCurrentStatus"]) == (
        1, 5, NOW)
    assert "HoldReason" not in after and "HoldReasonCode" not in after
    assert (after["LastHoldReason"], after["LastHoldReasonCode"]) == ("oops", 1)
    assert plan.events == (J.JobReleased(schedd="s1", job_id="7.2", owner="alice",
                                         reason="fixed the input"),)
    assert log_codes(plan) == ["013"] and "\tfixed the input\n" in plan.user_log[0].text


@pytest.mark.parametrize("state", ["idle", "running", "completed", "removed"])
def test_release_of_a_job_that_is_not_held_is_refused(state):
    plan = act(job(state), "release")
    assert nothing_happens(plan) and plan.refused == f"is {state}, not held"


def test_hold_of_an_idle_job_holds_it_without_troubling_any_pilot():
    plan = act(job("idle"), "hold")
    assert plan.changes["state"] == "held" and plan.changes["hold_reason"] == "held by user"
    assert plan.commands == ()
    assert plan.events == (J.JobHeld(schedd="s1", job_id="7.2", owner="alice",
                                     reason="held by user", code=1),)
    after = stored(plan)
    assert (after["JobStatus"], after["HoldReason"], after["HoldReasonCode"],
            after["HoldReasonSubCode"], after["NumHolds"]) == (5, "held by user", 1, 0, 1)
    assert log_codes(plan) == ["012"] and "\tCode 1 Subcode 0\n" in plan.user_log[0].text


def test_hold_of_a_running_job_kills_it_on_its_pilot_first():
    plan = act(on_pilot("running"), "hold", "too slow")
    (kill, to), = plan.commands
    assert to == "p1" and kill == JobKill(pilot_id="p1", job_id="7.2", claim_id="c1",
                                          reason="too slow")
    assert columns(plan) == {"state": "held", "hold_reason": "too slow", "claim_id": None,
                             "matched_at": None}


@pytest.mark.parametrize(("state", "action"), [
    ("held", "hold"), ("completed", "hold"), ("removed", "hold"),
    ("completed", "remove"), ("removed", "remove")])
def test_acting_on_a_job_already_there_is_refused(state, action):
    plan = act(job(state), action)
    assert nothing_happens(plan) and plan.refused == f"is already {state}"


def test_remove_of_a_matched_job_kills_the_claim_and_ends_it():
    plan = act(on_pilot("idle"), "remove", "changed my mind")
    assert [type(m) for m, _to in plan.commands] == [JobKill]
    assert plan.commands[0][0].reason == "changed my mind"
    assert columns(plan) == {"state": "removed", "finished_at": NOW, "claim_id": None,
                             "matched_at": None}
    assert (stored(plan)["JobStatus"], stored(plan)["RemoveReason"]) == (3, "changed my mind")
    assert plan.events == (J.JobRemoved(schedd="s1", job_id="7.2", owner="alice",
                                        reason="changed my mind"),)
    assert log_codes(plan) == ["009"]


def test_remove_without_a_reason_tells_the_pilot_who_asked():
    (kill, _to), = act(on_pilot("running"), "remove").commands
    assert kill.reason == "remove by user"


def test_a_removed_held_job_has_no_claim_to_kill():
    assert act(job("held"), "remove").commands == ()


def test_ids_that_name_no_job_are_reported():
    assert logic.missing_ids(["7", "7.2", "8", "7.9", "70"], ["7.1", "7.2"]) == {
        "8": "no such job", "7.9": "no such job", "70": "no such job"}


# --- matches ---------------------------------------------------------------------------------

CLAIM = Claim(claim_id="c9", pilot_id="p9", cpus=2, memory_mb=512, disk_mb=10, entry="e9",
              site="SiteB", provider="aws")


def test_activation_sends_the_job_and_its_files_to_the_claims_pilot():
    plan = logic.activate(job("idle"), CLAIM, ("echo", {"echo": b"#!"}), schedd="s1", now=NOW)
    assert plan.changes == {"claim_id": "c9", "pilot_id": "p9", "entry": "e9", "site": "SiteB",
                            "provider": "aws", "matched_at": NOW}
    (activation, to), = plan.commands
    assert to == "p9" and isinstance(activation, ClaimActivate)
    assert (activation.job_id, activation.schedd, activation.executable) == ("7.2", "s1", "echo")
    assert activation.arguments == ["a", "b c"] and activation.files == {"echo": b"#!"}
    assert activation.environment == {"X": "1", "Y": "two"}
    assert (activation.cpus, activation.memory_mb, activation.disk_mb) == (2, 512, 10)
    assert activation.output_files == ["result.txt"]
    assert activation.stream_names == {"stdout": "job.out"}
    assert plan.events == (J.JobMatched(schedd="s1", job_id="7.2", owner="alice",
                                        claim_id="", pilot_id="p9", entry="e9",
                                        site="SiteB"),)
    assert plan.user_log == ()


def test_activation_carries_the_custom_resources_claimed():
    gpu_job = job("idle", ad=ad(RequestCpus=1, RequestGPUs=1, Requestboats=2, RequestMemory=9))
    carved = dataclasses.replace(CLAIM, resources={"GPUs": 1})
    (activation, _), = logic.activate(gpu_job, carved, ("echo", {}), schedd="s1",
                                      now=NOW).commands
    assert activation.resources == {"GPUs": 1}  # what the negotiator carved
    # a claim that does not say (a negotiator before custom resources): what the job asks
    (activation, _), = logic.activate(gpu_job, CLAIM, ("echo", {}), schedd="s1",
                                      now=NOW).commands
    assert activation.resources == {"GPUs": 1, "boats": 2}
    (activation, _), = logic.activate(job("idle"), CLAIM, ("echo", {}), schedd="s1",
                                      now=NOW).commands
    assert activation.resources == {}


def test_inputs_that_cannot_be_read_hold_the_job_and_send_nothing():
    plan = logic.activate(job("idle"), CLAIM, TransferFailed("cannot read input x: gone"),
                          schedd="s1", now=NOW)
    assert plan.commands == () and plan.changes["state"] == "held"
    assert plan.changes["hold_reason"] == "cannot read input x: gone"


@pytest.mark.parametrize("j", [on_pilot("idle"), job("held"), on_pilot("running")])
def test_a_job_that_is_not_idle_and_unclaimed_is_not_activated(j):
    assert nothing_happens(logic.activate(j, CLAIM, ("echo", {}), schedd="s1", now=NOW))


# --- reports ---------------------------------------------------------------------------------


def test_running_report_starts_the_job_where_the_pilot_says():
    plan = decide(on_pilot("idle", runs=1, ad=ad(NumJobStarts=1, JobStartDate=5)),
                  report("running", entry="e2", site="SiteC", provider="aws"))
    where = {"pilot_id": "p1", "entry": "e2", "site": "SiteC", "provider": "aws"}
    assert columns(plan) == {"state": "running", "started_at": NOW, "runs": 2, **where}
    after = stored(plan)
    assert (after["JobStatus"], after["NumJobStarts"], after["JobCurrentStartDate"],
            after["JobStartDate"], after["EnteredCurrentStatus"]) == (2, 2, NOW, 5, NOW)
    assert plan.events == (J.JobRunning(schedd="s1", job_id="7.2", owner="alice", **where),)
    assert log_codes(plan) == ["001"] and "<p1> at site SiteC" in plan.user_log[0].text


def test_a_report_without_a_place_keeps_the_one_from_the_match():
    plan = decide(on_pilot("idle"), report("running"))
    assert (plan.changes["entry"], plan.changes["site"]) == ("e1", "SiteA")
    assert "claim_id" not in plan.changes  # the claim lasts while the job runs


@pytest.mark.parametrize(("j", "r"), [
    (on_pilot("running"), report("exited", claim_id="an-old-claim", exit_code=0)),
    (on_pilot("running"), report("running", claim_id="c2")),
    (job("removed"), report("exited", exit_code=0)),  # rm cleared its claim
    (job("idle"), report("running")),  # requeued: the claim is gone
    (None, report("exited", exit_code=0)),  # no such job in this queue
])
def test_stale_reports_change_nothing(j, r):
    assert not logic.returns_outputs(j, r, PILOT_P1)
    plan = decide(j, r, outputs=[])
    assert nothing_happens(plan) and plan.refused.startswith("stale")


def test_a_rejected_claim_puts_the_job_back_to_idle():
    plan = decide(on_pilot("idle"), report("rejected", reason="slot busy"))
    assert plan.changes == {"state": "idle", "pilot_id": None, "entry": None, "site": None,
                            "provider": None, "claim_id": None, "matched_at": None}
    assert plan.events == (J.JobRequeued(schedd="s1", job_id="7.2", owner="alice",
                                         reason="pilot p1 rejected the claim: slot busy"),)
    assert plan.commands == () and plan.user_log == ()


def test_exited_report_completes_the_job_with_its_outputs():
    r = report("exited", exit_code=3, wall_seconds=4.0)
    assert logic.returns_outputs(on_pilot("running"), r, PILOT_P1)
    plan = decide(on_pilot("running", started_at=NOW - 10), r, outputs=["/iwd/job.out"])
    assert columns(plan) == {"state": "completed", "exit_code": 3, "exit_signal": None,
                             "finished_at": NOW, "started_at": NOW - 10, "pilot_id": "p1",
                             "entry": "e1", "site": "SiteA", "provider": "local",
                             "claim_id": None, "matched_at": None}
    after = stored(plan)
    assert (after["JobStatus"], after["ExitCode"], after["ExitBySignal"],
            after["NumJobCompletions"], after["CompletionDate"]) == (4, 3, False, 1, NOW)
    assert "ExitSignal" not in after
    (done,) = plan.events
    assert isinstance(done, J.JobCompleted) and done.outputs == ["/iwd/job.out"]
    assert (done.exit_code, done.wall_seconds, done.site) == (3, 4.0, "SiteA")
    assert log_codes(plan) == ["005"]
    assert "Normal termination (return value 3)" in plan.user_log[0].text


def test_a_job_that_ended_before_its_running_report_gets_its_start_from_the_wall_time():
    plan = decide(on_pilot("idle"), report("exited", exit_signal=9, wall_seconds=4.0),
                  outputs=[])
    assert plan.changes["started_at"] == NOW - 4.0
    assert "Abnormal termination (signal 9)" in plan.user_log[0].text


def test_a_held_report_holds_the_job_with_the_pilots_reason():
    r = report("held", reason="memory usage 300 MiB exceeded request_memory 128 MiB")
    # its stdout and stderr come back
    assert logic.returns_outputs(on_pilot("running"), r, PILOT_P1)
    plan = decide(on_pilot("running"), r, outputs=["/iwd/job.out"])
    assert plan.changes["state"] == "held" and plan.changes["claim_id"] is None
    assert plan.events[0].reason == r.reason and log_codes(plan) == ["012"]


@pytest.mark.parametrize("state", ["exited", "held"])
def test_outputs_that_cannot_be_written_hold_the_job(state):
    plan = decide(on_pilot("running"), report(state, exit_code=0, reason="oom"),
                  outputs=TransferFailed("cannot write output /iwd/job.out: Read-only"))
    assert plan.changes["state"] == "held"
    assert plan.changes["hold_reason"] == "cannot write output /iwd/job.out: Read-only"
    assert [type(e) for e in plan.events] == [J.JobHeld]


def test_an_unknown_report_state_is_refused_as_a_bad_message():
    assert not logic.returns_outputs(on_pilot("running"), report("sleeping"), PILOT_P1)
    with pytest.raises(logic.InvalidMessage, match="unknown job report state 'sleeping'"):
        decide(on_pilot("running"), report("sleeping"))


# --- job policy: when a run ends, and on the periodic timer ----------------------------------

RETRY = {"OnExitRemove": classad2.ExprTree("NumJobCompletions > JobMaxRetries || "
                                           "ExitCode =?= 0"),
         "JobMaxRetries": 3, "NumJobCompletions": 0, "NumJobStarts": 1, "JobStatus": 2}


def test_a_run_its_policy_does_not_let_leave_puts_the_job_back_to_idle():
    j = on_pilot("running", ad=ad(**RETRY), runs=1)
    plan = decide(j, report("exited", exit_code=1, wall_seconds=3.0), outputs=["/iwd/out"])
    assert columns(plan) == {"state": "idle", "exit_code": 1, "exit_signal": None,
                             "pilot_id": None, "entry": None, "site": None, "provider": None,
                             "claim_id": None, "matched_at": None}
    after = stored(plan)
    assert (after["JobStatus"], after["ExitCode"], after["NumJobCompletions"],
            after["NumJobStarts"], after["RemoteWallClockTime"]) == (1, 1, 1, 1, 3.0)
    (requeued,) = plan.events
    assert isinstance(requeued, J.JobRequeued) and requeued.reason.startswith(
        "exited with code 1; The job attribute OnExitRemove expression")
    assert plan.commands == ()  # the run is over on the pilot already
    assert log_codes(plan) == ["004"]
    assert "\t(0) Job terminated and was requeued\n\t(1) Normal termination (return value 1)" \
        "\n\tThe job attribute OnExitRemove" in plan.user_log[0].text


def test_the_run_its_policy_lets_leave_completes_the_job():
    j = on_pilot("running", ad=ad(**{**RETRY, "NumJobCompletions": 2}))
    plan = decide(j, report("exited", exit_code=0), outputs=[])
    assert plan.changes["state"] == "completed"
    assert [type(e) for e in plan.events] == [J.JobCompleted]


def test_on_exit_hold_holds_the_job_where_it_ran_with_code_3():
    j = on_pilot("running", ad=ad(OnExitHold=classad2.ExprTree("ExitCode == 2"),
                                  OnExitHoldReason="exit 2 means bad input"))
    plan = decide(j, report("exited", exit_code=2), outputs=[])
    assert (plan.changes["state"], plan.changes["exit_code"], plan.changes["site"]) == (
        "held", 2, "SiteA")
    assert plan.events == (J.JobHeld(schedd="s1", job_id="7.2", owner="alice",
                                     reason="exit 2 means bad input", code=3),)
    assert stored(plan)["HoldReasonCode"] == 3 and plan.commands == ()


def test_periodic_remove_at_exit_removes_the_job():
    j = on_pilot("running", ad=ad(PeriodicRemove=classad2.ExprTree("ExitCode == 5"),
                                  OnExitRemove=False))
    plan = decide(j, report("exited", exit_code=5), outputs=[])
    assert (plan.changes["state"], plan.changes["exit_code"]) == ("removed", 5)
    assert plan.events[0].reason.startswith("The job attribute PeriodicRemove expression")


def test_the_timer_removes_an_idle_job_whose_periodic_remove_fires():
    j = job("idle", ad=ad(QDate=NOW - 31, JobStatus=1,
                          PeriodicRemove=classad2.ExprTree("(time() - QDate) > 30")))
    plan = logic.periodic(j, schedd="s1", now=NOW)
    assert columns(plan) == {"state": "removed", "finished_at": NOW, "claim_id": None,
                             "matched_at": None}
    assert stored(plan)["RemoveReason"] == plan.events[0].reason
    assert log_codes(plan) == ["009"]
    assert nothing_happens(logic.periodic(j, schedd="s1", now=NOW - 2))


def test_the_timer_holds_a_running_job_and_kills_it_on_its_pilot():
    j = on_pilot("running", ad=ad(PeriodicHold=True, PeriodicHoldSubCode=9, JobStatus=2))
    plan = logic.periodic(j, schedd="s1", now=NOW)
    (kill, to), = plan.commands
    assert to == "p1" and isinstance(kill, JobKill)
    assert plan.changes["state"] == "held"
    assert (plan.events[0].code, plan.events[0].subcode) == (3, 9)


def test_the_timer_releases_a_job_its_policy_held():
    j = job("held", ad=ad(JobStatus=5, HoldReasonCode=3, HoldReason="x",
                          PeriodicRelease=classad2.ExprTree("NumHolds < 3"), NumHolds=1))
    plan = logic.periodic(j, schedd="s1", now=NOW)
    assert plan.changes["state"] == "idle"
    assert plan.events[0].reason == ("The job attribute PeriodicRelease expression "
                                     "'NumHolds < 3' evaluated to TRUE")


# --- pilots that go away, claims never started -----------------------------------------------


@pytest.mark.parametrize("state", ["idle", "running"])
def test_jobs_of_a_pilot_that_went_away_wait_again(state):
    plan = logic.pilot_gone(on_pilot(state), "p1", "vanished", schedd="s1", now=NOW)
    assert plan.changes["state"] == "idle" and plan.changes["pilot_id"] is None
    assert plan.events == (J.JobRequeued(schedd="s1", job_id="7.2", owner="alice",
                                         reason="pilot p1 went away: vanished"),)
    assert plan.commands == ()  # nobody left to tell


@pytest.mark.parametrize("j", [on_pilot("running", pilot_id="p2"), on_pilot("completed"),
                               on_pilot("held"), job("idle", pilot_id="p1")])
def test_a_pilot_going_away_leaves_other_jobs_alone(j):
    assert nothing_happens(logic.pilot_gone(j, "p1", "vanished", schedd="s1", now=NOW))


def test_a_claim_not_started_in_time_is_dropped_on_the_pilot_and_the_job_waits_again():
    plan = logic.expire_claim(on_pilot("idle", matched_at=NOW - 121), now=NOW, timeout_s=120,
                              schedd="s1")
    (kill, to), = plan.commands
    assert to == "p1" and kill.reason == "claim not activated in time"
    assert plan.changes["state"] == "idle" and plan.changes["claim_id"] is None
    assert plan.events[0].reason == "pilot p1 did not start it within 120s"


@pytest.mark.parametrize("j", [on_pilot("idle", matched_at=NOW - 119), on_pilot("running",
                               matched_at=NOW - 500), job("idle")])
def test_claims_within_their_time_or_already_started_do_not_expire(j):
    assert nothing_happens(logic.expire_claim(j, now=NOW, timeout_s=120, schedd="s1"))


# --- plain data in -----------------------------------------------------------------------------


def test_a_job_reads_from_a_queue_row_and_its_ad_without_a_user_log_logs_nothing(tmp_path):
    row = {"cluster": 1, "proc": 0, "owner": "bob", "state": "held", "ad": "[ Cmd = \"x\" ]",
           "claim_id": None, "pilot_id": None, "entry": None, "site": None, "provider": None,
           "matched_at": None, "started_at": None, "runs": 0, "exit_code": None, "spool": None}
    j = Job.from_row(row)
    assert (j.id, j.state) == ("1.0", "held")
    plan = act(j, "release", actor=Principal("user", "bob", "t2"))
    assert plan.user_log == () and plan.events[0].owner == "bob"


def test_the_store_refuses_columns_it_does_not_have(tmp_path):
    store = Store(tmp_path / "q.db")
    with pytest.raises(ValueError, match="no such job columns"), store.transaction() as tx:
        tx.update_job(1, 0, {"state": "idle", "stat": "oops"})
    store.close()


# --- who may: reports only from the claim's pilot, actions only by the owner --------------


@pytest.mark.parametrize("sender", [security.pilot("p2"), security.service("factory"),
                                    ALICE])
def test_a_report_signed_by_anyone_but_the_claims_pilot_changes_nothing(sender):
    r = report("exited", exit_code=0, stdout=b"forged")
    assert not logic.returns_outputs(on_pilot("running"), r, sender)  # nothing written
    plan = decide(on_pilot("running"), r, outputs=[], sender=sender)
    assert nothing_happens(plan) and plan.refused.startswith("forged")


def test_a_report_naming_another_pilot_than_the_claims_changes_nothing():
    r = J.JobReport(job_id="7.2", claim_id="c1", pilot_id="p2", state="exited", exit_code=0)
    plan = decide(on_pilot("running"), r, outputs=[], sender=security.pilot("p2"))
    assert nothing_happens(plan)


@pytest.mark.parametrize("action", ["remove", "hold", "release"])
def test_another_owner_may_not_act_on_a_job(action):
    plan = act(job("held" if action == "release" else "idle"), action,
               actor=Principal("user", "mallory", "t9"))
    assert nothing_happens(plan)
    assert plan.refused == f"is owned by alice; only its owner or an administrator may {action} it"


def test_an_administrator_may_act_on_anyones_job():
    plan = act(job("idle"), "remove", actor=Principal("user", "root", "t0", admin=True))
    assert plan.changes["state"] == "removed"
