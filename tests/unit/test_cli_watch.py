"""`burst status --watch`: a table redrawn in place on a terminal, a block (or a JSON
line) per change in a log, and Ctrl-C ends it."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from services.cli import watch


def status(completed: int) -> dict:
    return {"entries": [{"name": "e1", "site": "S", "driver": "local", "provider": "local",
                         "pilots": {"idle": 1}}],
            "jobs": {"idle": 0, "running": 0, "completed": completed, "held": 0, "removed": 0},
            "slots": {"claimed": 0, "unclaimed": 1}, "vms": {"local": {"running": 1}},
            "services": {"web": {"pid": 1, "alive": True, "url": "http://127.0.0.1:8470/"}}}


def then_ctrl_c(*results):
    """A status source that gives these results, then is interrupted as by Ctrl-C."""
    pending = list(results)

    def current() -> dict:
        if not pending:
            raise KeyboardInterrupt
        return pending.pop(0)

    return current


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(watch, "REFRESH_S", 0)


def test_a_log_gets_each_changed_status_once():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        watch._lines(Console(file=out, width=100), then_ctrl_c(status(1), status(1), status(2)),
                     as_json=False)
    text = out.getvalue()
    assert text.count("completed=1") == 1 and text.count("completed=2") == 1
    assert text.count("dashboard: http://127.0.0.1:8470/") == 2
    assert "\x1b[" not in text  # no control characters in a log


def test_json_gives_one_line_per_change():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        watch._lines(Console(file=out), then_ctrl_c(status(1), status(2), status(2)),
                     as_json=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["jobs"]["completed"] for line in lines] == [1, 2]


def test_a_terminal_gets_the_table_redrawn_in_place():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        watch._live(Console(file=out, force_terminal=True, width=100),
                    then_ctrl_c(status(1), status(2)))
    text = out.getvalue()
    assert "completed=2" in text and "Ctrl-C stops" in text
    assert "\x1b[?25l" in text and text.rstrip().endswith("\x1b[?25h")  # cursor back at the end
