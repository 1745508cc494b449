"""Make sure a RabbitMQ broker answers at AMQP_URL (used by `make demo` / `make test`).

    answers? ── yes ─▶ done
       │no
       ├─ rabbitmq-server installed ─▶ rabbitmq-server -detached, wait for it
       ├─ a Docker engine ────────────▶ a throwaway broker for development (guest, on
       │                                 127.0.0.1 only), wait for it
       └─ otherwise ─────────────────▶ one line saying how to get one; exit 1
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from .config import REPO_ROOT, Settings
from .rabbit import broker_answers

START_TIMEOUT_S = 90.0
# Not compose's broker: that one has a user per service and no guest (deploy/README.md),
# while tests and demos make namespaces of their own as guest.
DOCKER_BROKER = ["docker", "run", "-d", "--rm", "--name", "burstwms-dev-rabbitmq",
                 "-p", "127.0.0.1:5672:5672", "rabbitmq:3.13"]


def ensure(settings: Settings) -> str | None:
    """None when a broker answers (perhaps after starting one); else what to tell the user."""
    if broker_answers(settings):
        return None
    starter = _starter() if _is_local(settings.amqp_url) else None
    if starter is None:
        return (f"no RabbitMQ broker answers at {settings.safe_url}; install one "
                f"(apt install rabbitmq-server), run `{' '.join(DOCKER_BROKER)}`, "
                "or set AMQP_URL")
    print(f"burst: no broker at {settings.safe_url}; starting one: {' '.join(starter)}",
          file=sys.stderr)
    subprocess.run(starter, cwd=REPO_ROOT, check=False, stdout=subprocess.DEVNULL)
    if wait_for_broker(settings, START_TIMEOUT_S):
        return None
    return (f"started {' '.join(starter)} but no broker answered at {settings.safe_url} "
            f"within {START_TIMEOUT_S:g}s")


def wait_for_broker(settings: Settings, timeout_s: float, every_s: float = 1.0) -> bool:
    """Connect again and again until a broker answers (a fresh node boots in ~10 s)."""
    retrying = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(every_s),
                        retry=retry_if_result(lambda answered: not answered),
                        retry_error_callback=lambda _state: False)
    return retrying(broker_answers, settings)


def _is_local(url: str) -> bool:
    """Only a broker on this machine can be started here."""
    return (urlsplit(url).hostname or "localhost") in ("localhost", "127.0.0.1", "::1")


def _starter() -> list[str] | None:
    if shutil.which("rabbitmq-server"):
        return ["rabbitmq-server", "-detached"]
    if shutil.which("docker") and _docker_engine():
        return DOCKER_BROKER
    return None


def _docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    problem = ensure(Settings.from_env())
    if problem:
        print(f"burst: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
