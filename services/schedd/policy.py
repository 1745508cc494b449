"""Job policy as HTCondor's schedd and shadow apply it: pure decisions over a job's ad.

    every periodic_interval_s (idle, running, held)   when a run ends (ExitCode & co. set first)
      not held: PeriodicHold ────▶ hold (code 3)        PeriodicHold ──▶ hold (3)
      held:     PeriodicRelease ─▶ release             PeriodicRemove ─▶ removed
      any:      PeriodicRemove ──▶ removed              OnExitHold ─────▶ hold (3)
                                                       OnExitRemove ───▶ true or missing: completed
                                                                         false: idle, runs again
    the first that fires wins; one that is Undefined or an Error (but not the literal
    `undefined`) holds the job with code 5 and stops the walk, as HTCondor does: "the user
    screwed something up and they better deal with it" (a held job stays as it is).

`time()` (and `CurrentTime`) mean the `now` a caller passes, never the clock, so every
decision here is a function of the ad and `now`. The ad a job keeps in the queue is kept
up to date with the attributes these expressions read (`status_change`, `exit_attrs`;
logic.py applies them on every transition). HTCondor's own numbers are used throughout:
JobStatus 1 idle, 2 running, 3 removed, 4 completed, 5 held; HoldReasonCode 1 user, 3 job
policy, 5 policy undefined, 12/13 file transfer, 15 submitted on hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import classad2

JOB_STATUS = {"idle": 1, "running": 2, "removed": 3, "completed": 4, "held": 5}

UNSPECIFIED = 0  # HTCondor's HoldReasonCode values
USER_REQUEST = 1
JOB_POLICY = 3
JOB_POLICY_UNDEFINED = 5
DOWNLOAD_FILE_ERROR = 12  # could not receive or write the job's files (its outputs)
UPLOAD_FILE_ERROR = 13  # could not read or send the job's files (its inputs)
SUBMITTED_ON_HOLD = 15

HOLD, RELEASE, REMOVE, REQUEUE, COMPLETE = "hold", "release", "remove", "requeue", "complete"
PERIODIC = ("PeriodicHold", "PeriodicRelease", "PeriodicRemove")

# String literals, and time() (ClassAd function names are case-insensitive). Two patterns
# that each start with a literal, which `re` scans for fast (one alternation took 7x longer).
_STRING = re.compile(r'("(?:[^"\\]|\\.)*")')
_TIME_CALL = re.compile(r"(?<![\w.])time\s*\(\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """What a job's policy says to do, and why (HTCondor's wording)."""

    action: str  # hold | release | remove | requeue | complete
    attr: str = ""  # the expression that fired
    reason: str = ""
    code: int = 0  # HoldReasonCode, for holds
    subcode: int = 0


def at(ad: classad2.ClassAd | str, now: float) -> classad2.ClassAd:
    """The ad (or its text) as its expressions see it at `now`: time() and CurrentTime are
    `now`. A copy: the ad itself is left as it is."""
    text = ad if isinstance(ad, str) else str(ad)
    if "time" in text.lower():
        parts = _STRING.split(text)  # odd parts are string literals: left alone
        parts[::2] = [_TIME_CALL.sub(str(int(now)), part) for part in parts[::2]]
        text = "".join(parts)
    scope = classad2.ClassAd(text)
    scope["CurrentTime"] = int(now)
    return scope


def periodic(ad: classad2.ClassAd | str, state: str, now: float) -> Verdict | None:
    """What the periodic expressions of a job in `state` say now; None: nothing. The ad's
    text will do (the timer's case: parsed once, and again only when something fires)."""
    if state not in ("idle", "running", "held"):
        return None
    held = state == "held"
    scope = at(ad, now)
    steps = [("PeriodicRemove", REMOVE)]
    if not held:
        steps.insert(0, ("PeriodicHold", HOLD))
    elif _number(scope, "HoldReasonCode") != USER_REQUEST:  # a user's hold is the user's
        steps.insert(0, ("PeriodicRelease", RELEASE))
    return _first_to_fire(ad, scope, steps, held=held)


def on_exit(ad: classad2.ClassAd, now: float) -> Verdict:
    """What follows a run that ended; `ad` already has the run's ExitCode, ExitBySignal,
    ExitSignal and NumJobCompletions (exit_attrs)."""
    scope = at(ad, now)
    steps = [("PeriodicHold", HOLD), ("PeriodicRemove", REMOVE), ("OnExitHold", HOLD)]
    if verdict := _first_to_fire(ad, scope, steps, held=False):
        return verdict
    if "OnExitRemove" not in ad:
        return Verdict(COMPLETE)
    fired = _fires(scope, "OnExitRemove")
    if fired is None:
        return _undefined(ad, "OnExitRemove")
    if fired:
        return Verdict(COMPLETE, "OnExitRemove")
    return Verdict(REQUEUE, "OnExitRemove", _firing_reason(ad, "OnExitRemove", "FALSE"))


def _first_to_fire(ad: classad2.ClassAd | str, scope: classad2.ClassAd,
                   steps: list[tuple[str, str]], *, held: bool) -> Verdict | None:
    for attr, action in steps:
        fired = _fires(scope, attr)
        if fired is None:  # HTCondor stops here; a held job cannot be held again
            return None if held else _undefined(_parsed(ad), attr)
        if fired:
            return _fired(_parsed(ad), scope, attr, action)
    return None


def _parsed(ad: classad2.ClassAd | str) -> classad2.ClassAd:
    """The ad as written (its reasons quote time(), not `now`)."""
    return classad2.ClassAd(ad) if isinstance(ad, str) else ad


def _fires(scope: classad2.ClassAd, attr: str) -> bool | None:
    """Whether the expression is true; None when it is Undefined, an Error or no number
    (a missing expression, or the literal `undefined`, is false)."""
    if attr not in scope:
        return False
    value = scope.eval(attr)
    if isinstance(value, classad2.Value):  # Undefined or Error (Value.Error == 1: test first)
        return False if str(scope.lookup(attr)).strip().lower() == "undefined" else None
    if isinstance(value, (bool, int, float)):
        return value != 0
    return None


def _fired(ad: classad2.ClassAd, scope: classad2.ClassAd, attr: str, action: str) -> Verdict:
    if action != HOLD:
        return Verdict(action, attr, _firing_reason(ad, attr, "TRUE"))
    given = scope.eval(f"{attr}Reason") if f"{attr}Reason" in scope else None
    reason = given if isinstance(given, str) and given.strip() else _firing_reason(
        ad, attr, "TRUE")
    subcode = scope.eval(f"{attr}SubCode") if f"{attr}SubCode" in scope else 0
    subcode = int(subcode) if isinstance(subcode, (int, float)) and not isinstance(
        subcode, (bool, classad2.Value)) else 0
    return Verdict(HOLD, attr, reason, JOB_POLICY, subcode)


def _undefined(ad: classad2.ClassAd, attr: str) -> Verdict:
    return Verdict(HOLD, attr, _firing_reason(ad, attr, "UNDEFINED"), JOB_POLICY_UNDEFINED)


def _firing_reason(ad: classad2.ClassAd, attr: str, value: str) -> str:
    return f"The job attribute {attr} expression '{ad.lookup(attr)}' evaluated to {value}"


# --- the attributes expressions read, kept up to date ----------------------------------------


def status_change(old: str, new: str, now: float) -> dict[str, Any]:
    """JobStatus and its bookkeeping when a job moves from state `old` to `new`."""
    if JOB_STATUS[old] == JOB_STATUS[new]:
        return {}
    return {"JobStatus": JOB_STATUS[new], "LastJobStatus": JOB_STATUS[old],
            "EnteredCurrentStatus": int(now)}


def start_attrs(ad: classad2.ClassAd, now: float) -> dict[str, Any]:
    """A run begins: NumJobStarts counts it, JobCurrentStartDate says when."""
    attrs = {"NumJobStarts": _number(ad, "NumJobStarts") + 1, "JobCurrentStartDate": int(now)}
    if "JobStartDate" not in ad:
        attrs["JobStartDate"] = int(now)
    return attrs


def exit_attrs(ad: classad2.ClassAd, exit_code: int | None, exit_signal: int | None,
               wall_seconds: float) -> dict[str, Any]:
    """A run ended: how (a signal leaves ExitCode undefined, as in HTCondor), and counted."""
    by_signal = exit_signal is not None
    return {"ExitBySignal": by_signal, "ExitCode": None if by_signal else exit_code,
            "ExitSignal": exit_signal, "NumJobCompletions": _number(ad, "NumJobCompletions") + 1,
            "RemoteWallClockTime": float(_number(ad, "RemoteWallClockTime") + wall_seconds)}


def hold_attrs(ad: classad2.ClassAd, reason: str, code: int, subcode: int) -> dict[str, Any]:
    return {"HoldReason": reason, "HoldReasonCode": code, "HoldReasonSubCode": subcode,
            "NumHolds": _number(ad, "NumHolds") + 1}


def release_attrs(ad: classad2.ClassAd) -> dict[str, Any]:
    """The hold is over; what it was stays readable as LastHold*."""
    names = ("HoldReason", "HoldReasonCode", "HoldReasonSubCode")
    attrs: dict[str, Any] = dict.fromkeys(names)
    for name in names:
        if name in ad and not isinstance(value := ad.eval(name), classad2.Value):
            attrs[f"Last{name}"] = value
    return attrs


def with_attrs(text: str, attrs: Mapping[str, Any]) -> str:
    """The ad `text` with `attrs` set (None deletes one)."""
    ad = classad2.ClassAd(text)
    for name, value in attrs.items():
        if value is None:
            if name in ad:
                del ad[name]
        else:
            ad[name] = value
    return str(ad)


def _number(ad: classad2.ClassAd, attr: str) -> int | float:
    value = ad.eval(attr) if attr in ad else 0
    if isinstance(value, (bool, classad2.Value)) or not isinstance(value, (int, float)):
        return 0
    return value


# --- when a job is queued --------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    ad: str  # the ad as the queue keeps it
    not_before: float | None  # deferral_time: not demand, not matched before then
    periodic: bool  # has periodic expressions the timer must evaluate


def on_queue(ad: classad2.ClassAd, now: float) -> Queued:
    """A submitted job as the queue keeps it: the queue's clock dates it (QDate, so that
    `time() - QDate` reads one clock), its DeferralTime is resolved to a time. ValueError
    when DeferralTime is no time."""
    ad = classad2.ClassAd(str(ad))
    ad["QDate"] = ad["EnteredCurrentStatus"] = int(now)
    not_before = None
    if "DeferralTime" in ad:
        value = at(ad, now).eval("DeferralTime")
        if isinstance(value, (bool, classad2.Value)) or not isinstance(value, (int, float)):
            raise ValueError(f"DeferralTime {ad.lookup('DeferralTime')} is not a time "
                             f"(it evaluates to {value!r})")
        not_before = float(value)
    periodic = any(attr in ad and str(ad.lookup(attr)).strip().lower() not in ("false", "0")
                   for attr in PERIODIC)
    return Queued(str(ad), not_before, periodic)
