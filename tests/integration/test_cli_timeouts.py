"""`burst` and a schedd that does not answer, or answers late, on the real broker: the user
hears so within `--timeout`, in one line, and a submission that took effect is never called
failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.cli import identity
from services.runtime.rabbit import DEADLINE_HEADER, delete_namespace
from services.runtime.service import service_trust
from services.schedd.handlers import Schedd
from services.schedd.store import Store
from tests.helpers import wait_until

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def burst(settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMQP_URL": settings.amqp_url, "BURST_NAMESPACE": settings.namespace,
           "BURST_STATE_DIR": str(settings.state_dir), "BURST_SCHEDD": "slow"}
    env.pop("BURST_TOKEN_FILE", None)
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def user(rabbit_settings):
    identity.ensure_own_token(rabbit_settings)
    yield rabbit_settings
    delete_namespace(rabbit_settings, ["schedd.slow"])


def test_no_schedd_is_reported_within_the_timeout_in_one_line(user, tmp_path):
    for args in (["q"], ["rm", "1"]):
        started = time.monotonic()
        proc = burst(user, "--timeout", "1", *args)
        took = time.monotonic() - started
        assert proc.returncode == 3, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "from slow within 1s" in line and "Traceback" not in proc.stderr
        assert took < 10  # the timeout, plus starting Python and connecting


class LateSchedd(Schedd):
    """Handles a submission only once its sender has stopped waiting for the answer."""

    def on_job_submit(self, msg, ctx):
        deadline_ms = ctx.envelope.headers[DEADLINE_HEADER]
        time.sleep(max(0.0, deadline_ms / 1000 - time.time()) + 0.2)
        return super().on_job_submit(msg, ctx)


def test_a_submission_answered_late_is_reported_as_submitted(user, tmp_path):
    from services.runtime.bus import connect

    bus = connect(user, "schedd", **service_trust(user, "schedd"))
    schedd = LateSchedd("slow", Store(tmp_path / "slow.db"), bus)
    for sub in schedd.subscriptions():
        bus.subscribe(sub)
    bus.start()
    try:
        (tmp_path / "jobs.sub").write_text("executable = /bin/true\nqueue 2\n")
        proc = burst(user, "--timeout", "2", "submit", str(tmp_path / "jobs.sub"), "--json")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == '{"cluster": 1, "jobs": ["1.0", "1.1"]}'
        wait_until(lambda: len(schedd.store.read("SELECT * FROM jobs")) == 2, what="jobs")
    finally:
        bus.stop()
