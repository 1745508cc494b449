"""Shared fixtures: a settings object per test with its own namespace.

Tests that need RabbitMQ take `rabbit_settings`; when no broker answers at
AMQP_URL they fail (never skip): a missing broker in CI must be loud.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from services.runtime.config import Settings


def fresh_settings(tmp_path, **env) -> Settings:
    base = {
        "AMQP_URL": os.environ.get("AMQP_URL", ""),
        "BURST_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "BURST_STATE_DIR": str(tmp_path / "state"),
    }
    if os.environ.get("BURST_CONFIG"):
        base["BURST_CONFIG"] = os.environ["BURST_CONFIG"]
    base.update(env)
    return Settings.from_env(base)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return fresh_settings(tmp_path)


@pytest.fixture
def rabbit_settings(settings) -> Settings:
    from services.runtime.rabbit import broker_answers

    if not broker_answers(settings):
        pytest.fail(f"no RabbitMQ broker answers at {settings.safe_url}: start one "
                    "(rabbitmq-server -detached) or set AMQP_URL", pytrace=False)
    return settings


@pytest.fixture
def job_root():
    """A directory jobs running as slot users can reach: tmp_path lies under
    /tmp/pytest-of-<user>, which is 0700, so a job run as another uid could not
    traverse to its scratch directory there."""
    root = Path(tempfile.mkdtemp(prefix="burst-jobs-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
