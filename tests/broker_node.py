"""A RabbitMQ node of a test's own, for tests that stop or restart their broker.

The shared broker at AMQP_URL serves every other test and must never be
stopped; a test that bounces its broker starts one of these on ports of its
own, with its own config, data and log directories (see PITFALLS.md: the
system config pins port 5672, so the node gets a config file of its own, and
the server runs as user rabbitmq, so its directories belong to it).

    node = PrivateBroker.start()              # ~5 s
    node.url                                  # amqp://guest:guest@127.0.0.1:<port>/%2F
    node.stop_app(); node.start_app()         # drops every connection, keeps durable queues
    node.stop()                               # the node is gone
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PrivateBroker:
    name: str  # the Erlang node name, e.g. burst-test-5679@localhost
    port: int
    base: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @classmethod
    def start(cls) -> PrivateBroker:
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed: cannot start a private node")
        port, dist = _free_port(), _free_port()
        # Not under pytest's tmp_path: its parents are 0700, and the server runs as rabbitmq.
        base = Path(tempfile.mkdtemp(prefix=f"burst-rabbit-{port}-"))
        os.chmod(base, 0o755)
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n")
        (base / "plugins").write_text("[].\n")
        node = cls(f"burst-test-{port}@localhost", port, base)
        node._own_dirs()
        subprocess.run(["rabbitmq-server", "-detached"], env=node._env(dist), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node.wait_until_up()
        return node

    def _own_dirs(self) -> None:
        try:
            user = pwd.getpwnam("rabbitmq")
        except KeyError:
            return  # the server runs as whoever starts it
        for path in (self.base, *self.base.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)

    def _env(self, dist_port: int | None = None) -> dict[str, str]:
        env = {**os.environ,
               "RABBITMQ_NODENAME": self.name,
               "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
               "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.base / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins")}
        if dist_port is not None:
            env["RABBITMQ_DIST_PORT"] = str(dist_port)
        return env

    def _ctl(self, *args: str, timeout: float = 60.0) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.name, *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_until_up(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.port):
                self._ctl("await_startup", timeout=max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.2)
        raise RuntimeError(f"private RabbitMQ node {self.name} did not start within "
                           f"{timeout:.0f} s (logs in {self.base / 'log'})")

    def stop_app(self) -> None:
        """Stop the broker application: every client connection drops; queues stay."""
        self._ctl("stop_app")

    def start_app(self) -> None:
        self._ctl("start_app")
        self.wait_until_up()

    def stop(self) -> None:
        """Stop the node and remove its directory."""
        try:
            self._ctl("stop", timeout=30.0)
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)
