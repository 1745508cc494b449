"""The job policy a submit file asks for, written into the ad as condor_submit writes it.

    hold = true                          JobStatus 5, HoldReason, HoldReasonCode 15
    on_exit_remove/hold, periodic_*      OnExitRemove, OnExitHold, PeriodicRemove, ...
    max_retries, success_exit_code,      JobMaxRetries, JobSuccessExitCode, folded into
      retry_until                          OnExitRemove: NumJobCompletions > JobMaxRetries
                                           || ExitCode =?= <success> [|| <retry_until>]
    nice_user, accounting_group(_user)   AcctGroup, AcctGroupUser, AccountingGroup
    concurrency_limits(_expr)            ConcurrencyLimits
    deferral_*, cron_*                   DeferralTime, DeferralWindow, DeferralPrepTime, Cron*

Which of these the pool acts on yet is the command table's business (commands.py):
what is recorded here but not acted on is named in a warning at submit. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import classad2

from .where import Where, boolean, convert, expression, integer, non_negative

HELD = 5
SUBMITTED_ON_HOLD = 15  # HTCondor's HoldReasonCode SubmittedOnHold
SUBMITTED_ON_HOLD_REASON = "submitted on hold at user's request"
DEFAULT_JOB_MAX_RETRIES = 2  # HTCondor's DEFAULT_JOB_MAX_RETRIES
NICE_USER_GROUP = "nice-user"  # HTCondor's NICE_USER_ACCOUNTING_GROUP_NAME
DEFERRAL_WINDOW_DEFAULT = 0
DEFERRAL_PREP_TIME_DEFAULT = 300

_EXPRESSIONS = (("on_exit_hold_reason", "OnExitHoldReason"),
                ("on_exit_hold_subcode", "OnExitHoldSubCode"),
                ("periodic_hold", "PeriodicHold"), ("periodic_hold_reason", "PeriodicHoldReason"),
                ("periodic_hold_subcode", "PeriodicHoldSubCode"),
                ("periodic_release", "PeriodicRelease"), ("periodic_remove", "PeriodicRemove"))
_DEFAULT_FALSE = ("OnExitHold", "PeriodicHold", "PeriodicRelease", "PeriodicRemove")
_CRON = (("cron_minute", "CronMinute"), ("cron_hour", "CronHour"),
         ("cron_day_of_month", "CronDayOfMonth"), ("cron_month", "CronMonth"),
         ("cron_day_of_week", "CronDayOfWeek"))
_SUBMITTER_NAME = re.compile(r"[\w.\-]+")
_LIMIT = re.compile(r"[\w.]+(?::\d+(?:\.\d*)?)?")


def add_policy(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    if convert(expanded, "hold", boolean, False, where):
        ad["JobStatus"], ad["HoldReasonCode"] = HELD, SUBMITTED_ON_HOLD
        ad["HoldReason"] = SUBMITTED_ON_HOLD_REASON
    for attr in _DEFAULT_FALSE:
        ad[attr] = False
    for key, attr in _EXPRESSIONS:
        if expanded.get(key):
            ad[attr] = convert(expanded, key, expression, None, where)
    _add_retries(ad, expanded, where)
    _add_accounting_group(ad, expanded, where)
    _add_concurrency_limits(ad, expanded, where)
    _add_deferral(ad, expanded, where)


def _add_retries(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    """condor_submit's SetJobRetries: any retry command turns OnExitRemove into a retry loop
    that ends on success, on retry_until, or after JobMaxRetries completions."""
    on_exit_remove = expanded.get("on_exit_remove", "")
    if expanded.get("on_exit_hold"):
        ad["OnExitHold"] = convert(expanded, "on_exit_hold", expression, None, where)
    if not any(expanded.get(key) for key in ("max_retries", "success_exit_code",
                                             "retry_until")):
        ad["OnExitRemove"] = convert(expanded, "on_exit_remove", expression,
                                     classad2.ExprTree("true"), where)
        return
    ad["JobMaxRetries"] = convert(expanded, "max_retries", non_negative,
                                  DEFAULT_JOB_MAX_RETRIES, where)
    success = "0"
    if expanded.get("success_exit_code"):
        ad["JobSuccessExitCode"] = convert(expanded, "success_exit_code", integer, 0, where)
        success = "JobSuccessExitCode"
    clauses = ["NumJobCompletions > JobMaxRetries", f"ExitCode =?= {success}"]
    if until := expanded.get("retry_until", "").strip():
        futile = re.fullmatch(r"[+-]?\d+", until)
        clauses.append(f"ExitCode =?= {int(until)}" if futile
                       else _wrapped(convert(expanded, "retry_until", expression, None, where)))
    if on_exit_remove:
        clauses.append(_wrapped(convert(expanded, "on_exit_remove", expression, None, where)))
    ad["OnExitRemove"] = classad2.ExprTree(" || ".join(clauses))


def _wrapped(expr: classad2.ExprTree) -> str:
    text = str(expr)
    return text if re.fullmatch(r"[\w.]+", text) else f"({text})"


def _add_accounting_group(ad: classad2.ClassAd, expanded: Mapping[str, str],
                          where: Where) -> None:
    """condor_submit's SetAccountingGroup; nice_user is the nice-user group since 8.9.9."""
    group = expanded.get("accounting_group", "").strip()
    if convert(expanded, "nice_user", boolean, False, where):
        ad["NiceUser"], ad["MaxJobRetirementTime"] = True, 0
        if not group:
            group = NICE_USER_GROUP
        elif group != NICE_USER_GROUP:
            where.warn("nice_user", "conflicts with accounting_group: nice_user is ignored")
    group_user = expanded.get("accounting_group_user", "").strip()
    if not group and not group_user:
        return
    group_user = group_user or where.ctx.owner
    for key, name in (("accounting_group", group), ("accounting_group_user", group_user)):
        if name and not _SUBMITTER_NAME.fullmatch(name):
            raise where.error(key, f"{name!r} is not a valid name: use letters, digits, "
                                   "'_', '-' and '.'")
    ad["AcctGroupUser"] = group_user
    if group:
        ad["AcctGroup"], ad["AccountingGroup"] = group, f"{group}.{group_user}"
    else:
        ad["AccountingGroup"] = group_user  # a user alias, no group


def _add_concurrency_limits(ad: classad2.ClassAd, expanded: Mapping[str, str],
                            where: Where) -> None:
    limits = expanded.get("concurrency_limits", "").strip().lower()
    if limits and expanded.get("concurrency_limits_expr"):
        raise where.error("concurrency_limits_expr", "concurrency_limits and "
                                                     "concurrency_limits_expr can't be used "
                                                     "together")
    if expanded.get("concurrency_limits_expr"):
        ad["ConcurrencyLimits"] = convert(expanded, "concurrency_limits_expr", expression,
                                          None, where)
    if not limits:
        return
    names = [name for name in re.split(r"[,\s]+", limits) if name]
    if bad := [name for name in names if not _LIMIT.fullmatch(name)]:
        raise where.error("concurrency_limits", f"invalid concurrency limit {bad[0]!r}: "
                                                "use NAME or NAME:AMOUNT")
    ad["ConcurrencyLimits"] = ",".join(sorted(names))


def _add_deferral(ad: classad2.ClassAd, expanded: Mapping[str, str], where: Where) -> None:
    if expanded.get("deferral_time"):
        ad["DeferralTime"] = convert(expanded, "deferral_time", _when, None, where)
    for key, attr in _CRON:
        if value := expanded.get(key, "").strip():
            if not re.fullmatch(r"[\d*,/\-]+", value):
                raise where.error(key, f"{value!r} is not a crontab field")
            ad[attr] = value
    if "DeferralTime" not in ad and not any(attr in ad for _key, attr in _CRON):
        return
    for keys, attr, default in ((("cron_window", "deferral_window"), "DeferralWindow",
                                 DEFERRAL_WINDOW_DEFAULT),
                                (("cron_prep_time", "deferral_prep_time"), "DeferralPrepTime",
                                 DEFERRAL_PREP_TIME_DEFAULT)):
        key = next((key for key in keys if expanded.get(key)), keys[0])
        ad[attr] = convert(expanded, key, _when, default, where)


def _when(text: str) -> int | classad2.ExprTree:
    """A time in seconds: a non-negative integer, or an expression (e.g. QDate + 3600)."""
    if re.fullmatch(r"\s*[+-]?\d+\s*", text):
        return non_negative(text)
    return expression(text)
