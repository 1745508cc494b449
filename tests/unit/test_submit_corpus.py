"""A corpus of real-world-shaped submit files through `burst submit --dry-run --json`.

Each directory of tests/data/submit/ holds a job.sub (modelled on HTCondor's test
suite, the OSG user school and CHTC guides, and experiment production scripts),
the files it names, and expected.json: the job ads condor_submit would make of
it (checked against HTCondor's manual and condor_submit's behaviour), or the
refusal that names why it cannot be served, and the commands named in warnings.

expected.json: "jobs" (per proc) and "all_jobs" (every proc) give attributes and
values, "{dir}" standing for the case's directory and "/Expr(...)/" for an
expression (compared as parsed ClassAd expressions); "absent" lists attributes
that must not be there; "warnings" the subjects of the warnings, in line order;
"environ" is the submitter's whole environment; "refused" is {"line", "says"}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import classad2
import pytest
from click.testing import CliRunner

from services.cli.main import cli

CORPUS = Path(__file__).resolve().parents[1] / "data" / "submit"
CASES = sorted(path.name for path in CORPUS.iterdir() if (path / "job.sub").exists())


def _normal(value, directory: Path):
    if isinstance(value, str) and value.startswith("/Expr(") and value.endswith(")/"):
        return ("expr", str(classad2.ExprTree(value[len("/Expr("):-len(")/")])))
    if isinstance(value, str):
        return value.replace("{dir}", str(directory))
    return value


def _subject(stderr_line: str) -> str:
    message = stderr_line.split(": ", 3)[-1]  # burst: warning: FILE line N: MESSAGE
    return message.split(":")[0].split(" ")[0]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", CASES)
def test_dry_run_gives_the_jobs_htcondor_would(name, monkeypatch):
    directory = CORPUS / name
    expected = json.loads((directory / "expected.json").read_text())
    for variable in list(os.environ):  # the submitter's environment is the case's own
        monkeypatch.delenv(variable)
    for variable, value in expected.get("environ", {}).items():
        monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["submit", "--dry-run", "--json", "--owner", "alice",
                                      str(directory / "job.sub")])
    if "refused" in expected:
        refused = expected["refused"]
        assert result.exit_code == 1 and result.stdout == ""
        assert f"job.sub line {refused['line']}: " in result.stderr
        assert refused["says"] in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    ads = json.loads(result.stdout)
    wanted = expected.get("jobs") or [{}] * len(ads)
    assert len(ads) == len(wanted)
    for proc, (ad, attrs) in enumerate(zip(ads, wanted, strict=True)):
        assert ad["ProcId"] == proc and ad["ClusterId"] == 1 and ad["Owner"] == "alice"
        for attr, value in {**expected.get("all_jobs", {}), **attrs}.items():
            assert attr in ad, f"proc {proc}: no {attr}"
            assert _normal(ad[attr], directory) == _normal(value, directory), f"proc {proc}: {attr}"
        for attr in expected.get("absent", []):
            assert attr not in ad, f"proc {proc}: {attr} should not be there"
    warned = [_subject(line) for line in result.stderr.splitlines()
              if line.startswith("burst: warning: ")]
    assert warned == expected["warnings"]
