"""compose.yaml's services, run without Docker: each container's command, with the compose
environment translated to this machine (this broker, a state dir per container, ports any
free one), starts and becomes ready as its healthcheck says (its /metrics answers), and
stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from services.cli.stack import CLOUD, SERVICES
from services.runtime.config import Settings
from services.runtime.rabbit import broker_answers, delete_namespace
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
# Ports a machine shares with other pools (and a container has to itself): any free one here.
PORTS = {"metrics_port_base": 0, "cloud_port": 0, "web_port": 0, "metadata_port": 0}


def translated_config(root: Path) -> Path:
    text = (REPO / "deploy" / "compose.toml").read_text()
    for key, value in PORTS.items():
        text, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if not found:
            text = text.replace("[services]\n", f"[services]\n{key} = {value}\n", 1)
    (root / "compose.toml").write_text(text)
    shutil.copy(REPO / "deploy" / "embedded-cloud.keys", root / "embedded-cloud.keys")
    return root / "compose.toml"


def environment(service: dict, root: Path, name: str, namespace: str) -> dict[str, str]:
    """The container's environment on this machine: what compose gives it, with the
    container's paths, hosts and broker user replaced by ours."""
    env = {**os.environ, **{key: str(value) for key, value in service["environment"].items()}}
    broker = os.environ.get("AMQP_URL") or Settings.from_env({}).amqp_url
    env.update(BURST_NAMESPACE=namespace, BURST_STATE_DIR=str(root / f"{name}-state"),
               BURST_CONFIG=str(root / "compose.toml"),
               BURST_POOL_KEY_FILE=str(root / "keys" / "pool.key"),
               OTEL_TRACES_EXPORTER="burst")  # no Jaeger here: the local store only
    for key in ("AMQP_URL", "BURST_PILOT_AMQP_URL"):
        if key in env and key in service["environment"]:
            env[key] = broker
    return env


@pytest.fixture()
def compose():
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_every_compose_service_starts_from_its_command_and_is_healthy(compose, tmp_path):
    namespace = f"compose{uuid.uuid4().hex[:8]}"
    translated_config(tmp_path)
    services = compose["services"]
    if not broker_answers(Settings.from_env(environment(services["schedd"], tmp_path, "schedd",
                                                        namespace))):
        pytest.fail("no RabbitMQ broker answers at AMQP_URL", pytrace=False)

    def run(name: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", *services[name]["command"]], cwd=REPO,
            env=environment(services[name], tmp_path, name, namespace),
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "wb"), **kw)

    made = subprocess.run([sys.executable, "-m", "services.cli.main",
                           *services["pool-key"]["command"]], cwd=REPO, capture_output=True,
                          text=True, env=environment(services["pool-key"], tmp_path, "pool-key",
                                                     namespace), timeout=60)
    assert made.returncode == 0 and made.stdout.strip() == str(tmp_path / "keys" / "pool.key")
    key = (tmp_path / "keys" / "pool.key").read_text()

    started = {CLOUD: run(CLOUD)}
    cloud = wait_until(lambda: _json(tmp_path / f"{CLOUD}-state" / "run" / "cloud.json"), 60,
                       "the embedded cloud to serve")
    for name in SERVICES:  # http://cloud:5000 is, here, where it listens
        services[name]["environment"]["BURST_CLOUD_ENDPOINT"] = cloud["endpoint"]
        started[name] = run(name)
    try:
        for name, proc in started.items():
            state = tmp_path / f"{name}-state"
            wait_until(lambda state=state, name=name, proc=proc: _ready(state, name, proc),
                       60, f"{name} to be ready ({(tmp_path / f'{name}.log').read_text()[-800:]})")
        assert (tmp_path / "keys" / "pool.key").read_text() == key  # made once, kept
    finally:
        for proc in started.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, proc in started.items()}
        delete_namespace(Settings.from_env(environment(services["schedd"], tmp_path, "schedd",
                                                       namespace)),
                         ["schedd.schedd", "negotiator", "frontend.frontend", "metadata",
                          "factory.factory", *[f"factory.entry.{e}" for e in (
                              "local", "emb-aws", "emb-openstack", "emb-opennebula",
                              "emb-eucalyptus")]])
    assert codes == dict.fromkeys(started, 0)


def _ready(state: Path, name: str, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"{name} exited with {proc.returncode}"
    pid = (state / "run" / f"{name}.pid")
    metrics = _json(state / "run" / f"{name}.metrics.json")
    if not pid.exists() or pid.read_text().strip() != str(proc.pid) or metrics is None:
        return False
    with urllib.request.urlopen(metrics["url"], timeout=5) as answer:  # its healthcheck
        return answer.status == 200


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
