"""The local driver: each pilot is a `python -m services.glidein` process here.

Each pilot gets a directory <state>/pilots/<pilot id>/ (0711: its jobs reach
their scratch directories under work/, nothing here can be listed) holding
meta.json (written before the process starts: the idempotency record),
context.json (0600: the pilot's context, to start it again), the pid, the
glidein's log (0600) and work/, the pilot's own directory
(services/condor/pilotdir.py). Pilots run in a session of their own, so they
outlive a factory restart, the factory finds them again through
`instances()`, and their jobs, which share the pilot's process group, die
with it when `terminate` signals the group.

    instances() ──pilot process gone──▶ kill_leftovers(work): no job outlives its pilot
                                        work has unsent reports or recorded jobs, first death:
                                          start it again in place (same id, directory,
                                          context): it resends, then registers again
                                        else: "gone" (the factory reports it lost)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from services.condor import pilotdir
from services.runtime import security

from . import Instance, LaunchSpec

log = logging.getLogger("burst.factory.local")

MAX_RESTARTS = 1  # a pilot that dies again after a restart in place is lost
POOL_ONLY = ("BURST_POOL_KEY_FILE",)  # what the factory's environment holds that a pilot must not


class LocalDriver:
    name = "local"

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen] = {}  # reaped in instances()

    def _dir(self, pilot_id: str) -> Path:
        return self.root / pilot_id

    def launch(self, spec: LaunchSpec) -> Instance:
        existing = self._instance(spec.pilot_id)
        if existing is not None and existing.state == "running":
            return existing
        home = self._dir(spec.pilot_id)
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o711)
        meta = {"pilot_id": spec.pilot_id, "entry": spec.entry, "group": spec.group,
                "launched_at": time.time(), "restarts": 0}
        context = dict(spec.context)
        if spec.pilot_key:  # the pilot's own key, for it alone (0600, in its 0711 home)
            key_file = home / "pilot.key"
            security.write_private(key_file, spec.pilot_key.hex() + "\n")
            context["BURST_PILOT_KEY_FILE"] = str(key_file)
        _write_private(home / "context.json", json.dumps(context))
        _write_private(home / "meta.json", json.dumps(meta))
        pid = self._start(spec.pilot_id, context)
        return Instance(spec.pilot_id, spec.entry, spec.group, f"local-{pid}", "running",
                        meta["launched_at"])

    def _start(self, pilot_id: str, context: dict[str, str]) -> int:
        home = self._dir(pilot_id)
        env = {key: value for key, value in os.environ.items() if key not in POOL_ONLY}
        env.update(context, BURST_PILOT_WORK_DIR=str(home / "work"))
        log_fd = os.open(home / "glidein.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(log_fd, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.glidein"], env=env, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[3]))
        (home / "pid").write_text(str(proc.pid))
        self._children[pilot_id] = proc
        return proc.pid

    def instances(self, entry: str) -> list[Instance]:
        for pilot_id, proc in list(self._children.items()):
            if proc.poll() is not None:  # reap, so an exited pilot is not left a zombie
                del self._children[pilot_id]
        found = []
        for meta_path in self.root.glob("*/meta.json"):
            instance = self._instance(meta_path.parent.name)
            if instance is not None and instance.state == "gone":
                instance = self._after_death(instance)
            if instance is not None and instance.entry == entry:
                found.append(instance)
        return found

    def _instance(self, pilot_id: str) -> Instance | None:
        home = self._dir(pilot_id)
        meta = _read_meta(home)
        if meta is None:
            return None
        pid = _read_pid(home / "pid")
        alive = pid is not None and _is_our_pilot(pid, pilot_id)
        return Instance(pilot_id, meta["entry"], meta.get("group", ""),
                        f"local-{pid}" if pid else "", "running" if alive else "gone",
                        float(meta.get("launched_at", 0.0)))

    def _after_death(self, instance: Instance) -> Instance:
        """A pilot process found gone: sweep its jobs; start it again if it left work undone."""
        home = self._dir(instance.pilot_id)
        meta = _read_meta(home) or {}
        if meta.get("swept_at"):
            return instance
        work = home / "work"
        killed = pilotdir.kill_leftovers(work)
        unfinished = pilotdir.unfinished(work)
        restarts = int(meta.get("restarts", 0))
        context = _read_context(home)
        if unfinished and restarts < MAX_RESTARTS and context is not None:
            meta["restarts"] = restarts + 1
            _write_private(home / "meta.json", json.dumps(meta))
            pid = self._start(instance.pilot_id, context)
            log.warning("event=pilot_restarted pilot=%s pid=%d killed_jobs=%d reason=%s",
                        instance.pilot_id, pid, len(killed),
                        "died without exiting, with reports to resend or jobs recorded")
            return Instance(instance.pilot_id, instance.entry, instance.group, f"local-{pid}",
                            "running", instance.launched_at)
        meta["swept_at"] = time.time()
        _write_private(home / "meta.json", json.dumps(meta))
        if killed or unfinished:
            log.warning("event=pilot_dead pilot=%s killed_jobs=%d unfinished=%s restarts=%d",
                        instance.pilot_id, len(killed), unfinished, restarts)
        return instance

    def terminate(self, pilot_id: str) -> None:
        pid = _read_pid(self._dir(pilot_id) / "pid")
        if pid is not None and _is_our_pilot(pid, pilot_id):
            try:
                os.killpg(pid, signal.SIGTERM)  # the pilot's group: its jobs too
            except ProcessLookupError:
                pass

    def forget(self, pilot_id: str) -> None:
        """Mark a gone pilot as handled, keeping its log for operators."""
        home = self._dir(pilot_id)
        if (home / "meta.json").exists():
            (home / "meta.json").rename(home / "meta.done.json")


def _write_private(path: Path, text: str) -> None:
    """Owner-only (the context holds the broker URL); replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def _read_meta(home: Path) -> dict | None:
    try:
        meta = json.loads((home / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _read_context(home: Path) -> dict[str, str] | None:
    try:
        context = json.loads((home / "context.json").read_text())
    except (OSError, ValueError):
        return None
    return context if isinstance(context, dict) else None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_pilot(pid: int, pilot_id: str) -> bool:
    """Alive and really that pilot: pids are reused, so check its environment."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.environ().get("BURST_PILOT_ID") == pilot_id
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
