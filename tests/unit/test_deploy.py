"""Deployment files are right for users with Docker, checked as far as we can here."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from services.cli.stack import SERVICES
from services.runtime.config import load_pool_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_compose_runs_the_broker_and_every_service(compose):
    services = compose["services"]
    assert set(services) == {"rabbitmq", *SERVICES}
    assert "healthcheck" in services["rabbitmq"]
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["service", name]
        assert svc["environment"]["AMQP_URL"].startswith("amqp://guest:guest@rabbitmq:5672/")
        assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_volumes_are_declared(compose):
    used = {v.split(":")[0] for svc in compose["services"].values()
            for v in svc.get("volumes", []) if not v.startswith(".")}
    assert used <= set(compose["volumes"])


def test_the_image_entrypoint_is_the_burst_command():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["burst"\]', dockerfile, re.M)
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (REPO / copied).exists(), copied
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["burst"] == "services.cli.main:main"


@pytest.mark.parametrize("name", [*SERVICES, "glidein"])
def test_each_service_entrypoint_runs_outside_a_container(name):
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "service", name, "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"burst service {name}" in proc.stdout


@pytest.mark.parametrize("path", ["deploy/burst.toml", "demo/burst-demo.toml"])
def test_shipped_configurations_load(path):
    pool = load_pool_config(REPO / path)
    assert pool.entries and pool.groups


def test_pinned_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values()
                                      for d in extra]
    # pika alone is a compatible range (>=1.3,<2): the bus uses only its public API.
    pinned = [d for d in deps if "==" in d or (d.startswith("pika>=") and ",<" in d)]
    assert pinned == deps, sorted(set(deps) - set(pinned))
