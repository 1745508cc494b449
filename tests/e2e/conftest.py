"""A whole pool per test module: `burst up -d` in its own namespace and state dir.

Tests drive it only through the `burst` command, as a user would, and wait
for what they expect with deadlines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.config import Settings
from services.runtime.rabbit import broker_answers
from tests.helpers import wait_until

E2E_CONFIG = """
[services]
negotiator_interval_s = 2.0
frontend_interval_s = 1.0
factory_interval_s = 0.5
periodic_interval_s = 2.0  # periodic_remove and friends, well within a test's patience
web_port = 0  # several pools on one machine: each dashboard on a free port
metadata_port = 0  # ... and each metadata service
metrics_port_base = 0  # ... and each service's /metrics

[[entry]]
name = "e2e-a"
site = "SiteA"
driver = "local"
provider = "local"
cpus = 2
memory_mb = 1024
disk_mb = 2048
idle_timeout_s = 60.0
resources = { Boats = 2 }
[entry.limits]
max_pilots = 2
max_launch_per_cycle = 2

[[entry]]
name = "e2e-b"
site = "SiteB"
driver = "local"
provider = "local"
cpus = 1
memory_mb = 1024
disk_mb = 2048
idle_timeout_s = 60.0
[entry.limits]
max_pilots = 1

[[group]]
name = "main"
credentials = { local = "none" }
"""

# For pools with the embedded cloud: quick timers, the cloud and the other servers on free
# ports (several pools at once).
CLOUD_SERVICES = """
[services]
negotiator_interval_s = 2.0
frontend_interval_s = 1.0
factory_interval_s = 0.5
cloud_port = 0
cloud_boot_delay_s = 0.3
cloud_interval_s = 0.2
web_port = 0
metadata_port = 0
metrics_port_base = 0
"""


class Pool:
    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True)
        (root / "burst.toml").write_text(E2E_CONFIG)
        self.env = {
            **os.environ,
            "BURST_CONFIG": str(root / "burst.toml"),
            "BURST_STATE_DIR": str(root / "state"),
            "BURST_NAMESPACE": f"e2e{uuid.uuid4().hex[:8]}",
        }
        self.settings = Settings.from_env(self.env)

    def burst(self, *args: str, env: dict | None = None, timeout: float = 120,
              input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli.main", *args],
                              cwd=self.work, env={**self.env, **(env or {})}, text=True,
                              capture_output=True, timeout=timeout, input=input)

    def ok(self, *args: str, **kw) -> str:
        proc = self.burst(*args, **kw)
        assert proc.returncode == 0, f"burst {' '.join(args)}: {proc.stderr or proc.stdout}"
        return proc.stdout

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json"))

    def write(self, name: str, text: str, mode: int | None = None) -> Path:
        path = self.work / name
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)
        return path

    def submit(self, name: str, text: str) -> dict:
        self.write(name, text)
        return self.json("submit", name)

    def job(self, job_id: str) -> dict:
        (job,) = self.json("q", job_id)
        return job

    def token(self, user: str, *extra: str) -> Path:
        """A token file for `user` (issued by the pool's administrator: whoever ran up)."""
        path = self.root / f"{user}.token"
        self.ok("token", "issue", user, "--out", str(path), *extra)
        return path

    def as_user(self, user: str) -> None:
        """From now on, `burst` commands act as `user` (not an administrator)."""
        self.env["BURST_TOKEN_FILE"] = str(self.token(user))

    @staticmethod
    def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
        return wait_until(predicate, timeout, what, poll_s=0.3)

    def web_url(self) -> str:
        """The dashboard's URL, as `burst status` shows it."""
        return self.json("status")["services"]["web"]["url"]

    def pid(self, service: str) -> int:
        return int((self.root / "state" / "run" / f"{service}.pid").read_text())


@contextlib.contextmanager
def running_pool(config: str | None = None, queues: tuple[str, ...] = (),
                 files: dict[str, str] | None = None) -> Iterator[Pool]:
    """`burst up -d` in a root of its own (with `files` written there first), `burst down`
    and its queues removed after."""
    # Not under pytest's tmp_path (/tmp/pytest-of-<user> is 0700): run by root, pilots run
    # jobs as slot users, who must be able to reach their scratch directories in the state dir.
    root = Path(tempfile.mkdtemp(prefix="burst-e2e-"))
    os.chmod(root, 0o711)
    p = Pool(root)
    if config is not None:
        (root / "burst.toml").write_text(config)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    if not broker_answers(p.settings):
        pytest.fail(f"no RabbitMQ broker answers at {p.settings.safe_url}", pytrace=False)
    p.ok("up", "-d")
    try:
        yield p
    finally:
        p.burst("down")
        _delete_namespace(p, queues)
        if not os.environ.get("BURST_KEEP_TEST_POOLS"):  # set it to read a failed pool's logs
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pool():
    with running_pool() as p:
        p.as_user("tester")
        yield p


def _delete_namespace(p: Pool, extra: tuple[str, ...] = ()) -> None:
    from services.runtime.rabbit import delete_namespace

    queues = ["schedd.schedd", "negotiator", "frontend.frontend", "factory.factory", "metadata",
              "factory.entry.e2e-a", "factory.entry.e2e-b", *extra]
    delete_namespace(p.settings, queues)
