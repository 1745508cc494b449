"""The local driver: each pilot is a `python -m services.glidein` process here.

Each pilot gets a directory <state>/pilots/<pilot id>/ holding meta.json
(written before the process starts: the idempotency record), the pid, and
the glidein's log. Pilots run in their own session, so they outlive a
factory restart and the factory finds them again through `instances()`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from services.runtime import security

from . import Instance, LaunchSpec

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
        meta = {"pilot_id": spec.pilot_id, "entry": spec.entry, "group": spec.group,
                "launched_at": time.time()}
        (home / "meta.json").write_text(json.dumps(meta))
        env = {key: value for key, value in os.environ.items() if key not in POOL_ONLY}
        env.update(spec.context, BURST_PILOT_WORK_DIR=str(home / "work"))
        if spec.pilot_key:
            key_file = home / "pilot.key"
            security.write_private(key_file, spec.pilot_key.hex() + "\n")
            env["BURST_PILOT_KEY_FILE"] = str(key_file)
        with open(home / "glidein.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.glidein"], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[3]))
        (home / "pid").write_text(str(proc.pid))
        self._children[spec.pilot_id] = proc
        return Instance(spec.pilot_id, spec.entry, spec.group, f"local-{proc.pid}", "running",
                        meta["launched_at"])

    def instances(self, entry: str) -> list[Instance]:
        for pilot_id, proc in list(self._children.items()):
            if proc.poll() is not None:  # reap, so an exited pilot is not left a zombie
                del self._children[pilot_id]
        found = []
        for meta_path in self.root.glob("*/meta.json"):
            instance = self._instance(meta_path.parent.name)
            if instance is not None and instance.entry == entry:
                found.append(instance)
        return found

    def _instance(self, pilot_id: str) -> Instance | None:
        home = self._dir(pilot_id)
        try:
            meta = json.loads((home / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        pid = _read_pid(home / "pid")
        alive = pid is not None and _is_our_pilot(pid, pilot_id)
        return Instance(pilot_id, meta["entry"], meta.get("group", ""),
                        f"local-{pid}" if pid else "", "running" if alive else "gone",
                        float(meta.get("launched_at", 0.0)))

    def terminate(self, pilot_id: str) -> None:
        pid = _read_pid(self._dir(pilot_id) / "pid")
        if pid is not None and _is_our_pilot(pid, pilot_id):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def forget(self, pilot_id: str) -> None:
        """Mark a gone pilot as handled, keeping its log for operators."""
        home = self._dir(pilot_id)
        if (home / "meta.json").exists():
            (home / "meta.json").rename(home / "meta.done.json")


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
