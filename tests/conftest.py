"""Shared fixtures: a settings object per test with its own namespace.

Tests that need RabbitMQ take `rabbit_settings`; when no broker answers at
AMQP_URL they fail (never skip): a missing broker in CI must be loud.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
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


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """The S3 of the embedded cloud (a moto server on 127.0.0.1, any free port), once per
    run: tests make buckets of their own names."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class _WebHandler(http.server.SimpleHTTPRequestHandler):
    """Serves its directory; /redirect-to/URL answers 302 to URL."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def do_GET(self):  # noqa: N802 (the base class's name)
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def web_root(tmp_path):
    """(directory, base URL) of a local HTTP server (127.0.0.1) serving the directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_WebHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
