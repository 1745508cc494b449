"""`burst up` / `burst down`: every service as its own process on this machine.

    burst up -d ──▶ python -m services.<name>  (one per service, own session, log file)
                    └── waits for <state>/run/<name>.pid, written once the service consumes
                    the embedded cloud first, when an entry has endpoint = "embedded":
                    the factory finds its endpoint in run/cloud.json (and the metadata
                    service's in run/metadata.json)
    burst down  ──▶ SIGTERM to services and local pilots' process groups, waits for them to
                    exit (SIGKILL for pilots that do not), then kill_leftovers() of every pilot
                    directory: no job process outlives it, even a dead pilot's

Services keep their state in the broker and (the schedd) in SQLite, so a
down/up cycle loses nothing: queued commands wait in durable queues.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from services.condor.pilotdir import kill_leftovers
from services.runtime.config import REPO_ROOT, ConfigError, Settings, load_pool_config

# The metadata service before the factory: cloud launches need its URL.
SERVICES = ("schedd", "negotiator", "frontend", "metadata", "factory", "web")
CLOUD = "cloud"  # the embedded cloud, only where the configuration asks for it
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int | None
    alive: bool


def pid_path(settings: Settings, name: str) -> Path:
    return settings.path("run", f"{name}.pid")


def web_url(settings: Settings) -> str | None:
    """The dashboard's URL, as the web service wrote it once listening (run/web.json)."""
    try:
        return json.loads(settings.path("run", "web.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def metadata_url(settings: Settings) -> str | None:
    """Where the metadata service listens, as it wrote it once listening (run/metadata.json)."""
    try:
        return json.loads(settings.path("run", "metadata.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def log_path(settings: Settings, name: str) -> Path:
    return settings.path("logs", f"{name}.log")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wants_cloud(settings: Settings) -> bool:
    try:
        pool = load_pool_config(settings.config_path)
    except ConfigError:
        return False
    return any(entry.endpoint == "embedded" for entry in pool.entries) or \
        pool.storage.endpoint == "embedded"


def credential_variables(settings: Settings, reader: str = "frontend") -> set[str]:
    """The variables `env:` credential references name that are `reader`'s alone: the
    groups' (the frontend reads them) or the object storage's (the schedd). No other
    service, nor the pilots and VMs they start, is given them."""
    try:
        pool = load_pool_config(settings.config_path)
    except ConfigError:
        return set()
    references = {"frontend": [ref for group in pool.groups
                               for ref in group.credentials.values()],
                  "schedd": [pool.storage.credentials]}.get(reader, [])
    return {ref[4:] for ref in references if ref.startswith("env:")}


def stack_services(settings: Settings) -> tuple[str, ...]:
    """What `burst up` runs: the embedded cloud first (if configured), then SERVICES."""
    return ((CLOUD,) if wants_cloud(settings) else ()) + SERVICES


def service_states(settings: Settings) -> list[ServiceState]:
    states = []
    names = stack_services(settings)
    if CLOUD not in names and pid_path(settings, CLOUD).exists():
        names = (CLOUD, *names)  # still running from before the configuration changed
    for name in names:
        pid = read_pid(pid_path(settings, name))
        states.append(ServiceState(name, pid, alive(pid)))
    return states


def start(settings: Settings, names: tuple[str, ...] | None = None
          ) -> dict[str, subprocess.Popen]:
    """Start the services that are not running; returns the processes started."""
    started = {}
    for name in stack_services(settings) if names is None else names:
        if alive(read_pid(pid_path(settings, name))):
            continue
        pid_path(settings, name).unlink(missing_ok=True)
        log = log_path(settings, name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            started[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], env=environment(settings, name),
                cwd=str(REPO_ROOT),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        if name == CLOUD:  # the factory resolves "embedded" through it: ready first
            wait_ready(settings, {CLOUD: started[CLOUD]})
    return started


def environment(settings: Settings, name: str) -> dict[str, str]:
    """A service's environment: ours, on this pool, less the credential variables of the
    others (the frontend's, the schedd's)."""
    secrets = {variable for reader in ("frontend", "schedd") if reader != name
               for variable in credential_variables(settings, reader)}
    return {**{k: v for k, v in os.environ.items() if k not in secrets},
            "BURST_STATE_DIR": str(settings.state_dir), "BURST_NAMESPACE": settings.namespace,
            "AMQP_URL": settings.amqp_url, "BURST_CONFIG": str(settings.config_path.absolute())}


def wait_ready(settings: Settings, procs: dict[str, subprocess.Popen],
               timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Wait until each started service wrote its pid file; return the ones that failed."""
    deadline = time.monotonic() + timeout
    waiting = dict(procs)
    failed = []
    while waiting and time.monotonic() < deadline:
        for name, proc in list(waiting.items()):
            if read_pid(pid_path(settings, name)) == proc.pid:
                del waiting[name]
            elif proc.poll() is not None:
                failed.append(name)
                del waiting[name]
        time.sleep(0.05)
    return failed + list(waiting)


def log_tail(settings: Settings, name: str, lines: int = 8) -> str:
    try:
        return "\n".join(log_path(settings, name).read_text().splitlines()[-lines:])
    except OSError:
        return ""


def pilot_pids(settings: Settings) -> list[int]:
    pids = []
    for path in settings.path("pilots").glob("*/pid"):
        pid = read_pid(path)
        if alive(pid):
            pids.append(pid)
    return pids


def stop(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM services first (no new work), then pilots; return what did not stop.

    A pilot that ignores SIGTERM for `timeout` is killed with its process group; then
    every pilot directory is swept, so jobs of pilots that died earlier go too.
    """
    targets = [(s.name, s.pid) for s in service_states(settings) if s.alive]
    _terminate(targets)
    leftover = _wait_gone(targets, timeout)
    pilots = [(f"pilot {pid}", pid) for pid in pilot_pids(settings)]
    _terminate(pilots, group=True)
    stuck = _wait_gone(pilots, timeout)
    _terminate([p for p in pilots if f"pilot {p[1]}" in stuck], group=True, sig=signal.SIGKILL)
    for work in settings.path("pilots").glob("*/work"):
        kill_leftovers(work)
    return leftover + _wait_gone(pilots, 5.0)


def _terminate(targets: list[tuple[str, int | None]], group: bool = False,
               sig: int = signal.SIGTERM) -> None:
    for _name, pid in targets:
        if pid is None:
            continue
        try:
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(targets: list[tuple[str, int | None]], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    remaining = [(n, p) for n, p in targets if alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [(n, p) for n, p in remaining if alive(p)]
    return [n for n, _p in remaining]
