"""`burst wait`'s progress line: redrawn in place on a terminal, plain lines in a log."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from services.cli.output import Progress


def jobs(*states: str) -> list:
    return [SimpleNamespace(state=state) for state in states]


def test_a_log_gets_a_plain_line_each_time_the_counts_change():
    out = io.StringIO()
    with Progress(Console(file=out)) as progress:
        progress.show(jobs("idle", "running"))
        progress.show(jobs("idle", "running"))
        progress.show(jobs("completed", "running"))
    assert out.getvalue() == ("0/2 completed, 1 running, 1 idle\n"
                              "1/2 completed, 1 running, 0 idle\n")


def test_a_terminal_gets_one_line_redrawn_and_its_cursor_back():
    out = io.StringIO()
    with Progress(Console(file=out, force_terminal=True, width=60)) as progress:
        progress.show(jobs("idle", "running"))
        progress.show(jobs("completed", "completed"))
    text = out.getvalue()
    assert "\x1b[?25l" in text and text.count("\x1b[?25h") == 1  # hidden while waiting only
    assert text.endswith("2/2 completed, 0 running, 0 idle\n")  # the last counts stay
    assert text.index("\x1b[?25h") < text.rindex("2/2 completed")
