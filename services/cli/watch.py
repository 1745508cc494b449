"""`burst status --watch`: the collector view kept live from the event stream.

    event log ──(thread: replay_then_follow)──▶ PoolView, under a lock
    every second: the status ──▶ a rich Live table, redrawn in place (a terminal)
                             └─▶ a plain block or a JSON line, each time it changed (a pipe)

Ctrl-C stops it with exit 0: watching has no outcome to report.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from services.runtime.codec import decode_or_none
from services.runtime.config import Settings
from services.views import PoolView
from services.views.records import event_time, iso
from services.views.stream import CAUGHT_UP, replay_then_follow

from . import output

REFRESH_S = 1.0


class Follower:
    """Folds the event log into a PoolView on a thread, from `since`, and goes on live."""

    def __init__(self, settings: Settings, since: float | None):
        from services.runtime.rabbit import read_event_log

        self.history = partial(read_event_log, settings)
        self.since = since
        self.view = PoolView()
        self.lock = threading.Lock()
        self.caught_up = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> Follower:
        threading.Thread(target=self._run, name="status-watch", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            for env in replay_then_follow(self.history, self.since, patient=False):
                if env is CAUGHT_UP:
                    self.caught_up.set()
                    continue
                event = decode_or_none(env)
                if event is not None:
                    with self.lock:
                        self.view.apply(event, event_time(env, event))
        except Exception as exc:  # before the backlog was read: the command reports it
            self.error = exc
            self.caught_up.set()

    def status(self) -> dict[str, Any]:
        with self.lock:
            return self.view.status()


def watch(settings: Settings, since: float | None, as_json: bool,
          services: Callable[[], dict[str, Any]], console: Console | None = None) -> None:
    """Show the status until Ctrl-C; raises what stopped the first read of the log."""
    console = console or output.console
    follower = Follower(settings, since).start()
    follower.caught_up.wait()
    if follower.error is not None:
        raise follower.error

    def current() -> dict[str, Any]:
        return {**follower.status(), "services": services()}

    try:
        if console.is_terminal and not as_json:
            _live(console, current)
        else:
            _lines(console, current, as_json)
    except KeyboardInterrupt:
        pass


def _live(console: Console, current: Callable[[], dict[str, Any]]) -> None:
    def view() -> Group:
        stamp = Text(f"{time.strftime('%H:%M:%S')}  live from the event stream; Ctrl-C stops",
                     style="dim")
        return Group(output.status_view(current()), stamp)

    with Live(view(), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(REFRESH_S)
            live.update(view(), refresh=True)


def _lines(console: Console, current: Callable[[], dict[str, Any]], as_json: bool) -> None:
    last = None
    while True:
        result = current()
        if result != last:
            last = result
            if as_json:
                console.file.write(json.dumps(result) + "\n")
                console.file.flush()
            else:
                console.print(Text(f"-- {iso(time.time())}"))
                console.print(output.status_view(result))
                console.file.flush()
        time.sleep(REFRESH_S)
