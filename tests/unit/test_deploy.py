"""Deployment files are right for users with Docker, checked as far as we can here."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from services.cli.stack import CLOUD, SERVICES
from services.runtime.config import load_pool_config
from services.runtime.metrics import port_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


BACKENDS = {"rabbitmq", "jaeger", "prometheus", "pool-key"}
STATE, KEYS_DIR, SPANS = "/var/lib/burst", "/etc/burst/keys", "/var/lib/burst/spans"


def test_compose_runs_the_broker_the_cloud_every_service_and_their_backends(compose):
    services = compose["services"]
    assert set(services) == BACKENDS | {CLOUD, *SERVICES}
    assert "healthcheck" in services["rabbitmq"] and "healthcheck" in services["prometheus"]
    for name in (CLOUD, *SERVICES):
        svc = services[name]
        assert svc["command"][:2] == ["service", name]
        assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert svc["depends_on"]["pool-key"]["condition"] == "service_completed_successfully"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        # ready once its /metrics answers, on the port Prometheus scrapes
        assert f"127.0.0.1:{metrics_port(name)}/metrics" in " ".join(svc["healthcheck"]["test"])
        assert f"spans:{SPANS}" in svc["volumes"]  # one span store: `burst trace` anywhere
    for name in SERVICES:
        # Its own broker user, its password from .env (deploy/rabbitmq/passwords.py).
        assert services[name]["environment"]["AMQP_URL"] == (
            f"amqp://{name}:${{BURST_AMQP_PASSWORD_{name.upper()}:?run python3 "
            "deploy/rabbitmq/passwords.py}@rabbitmq:5672/burst")
    assert "AMQP_URL" not in services[CLOUD]["environment"]  # no bus: its VMs join as pilot
    for name in ("factory", "metadata"):  # they hand pilots the `pilot` user's URL
        assert services[name]["environment"]["BURST_PILOT_AMQP_URL"].startswith(
            "amqp://pilot:${BURST_AMQP_PASSWORD_PILOT:?")


def test_every_service_signs_with_one_pool_key_made_once(compose):
    services = compose["services"]
    maker = services["pool-key"]
    assert maker["command"] == ["key", "init"] and maker["restart"] == "no"
    assert maker["environment"]["BURST_POOL_KEY_FILE"] == f"{KEYS_DIR}/pool.key"
    for name in (*SERVICES, "pool-key"):
        svc = services[name]
        assert f"keys:{KEYS_DIR}" in svc["volumes"], name
        assert svc["environment"]["BURST_POOL_KEY_FILE"] == f"{KEYS_DIR}/pool.key"
    # Per service, what must not be shared: the factory's key pair, the metadata service's
    # table of used tokens, the schedd's queue (their state dirs, outside the keys volume).
    for name in ("schedd", "factory", "metadata"):
        assert f"{name}-state:{STATE}" in services[name]["volumes"]


def test_traces_go_to_jaeger_and_the_local_store_metrics_to_prometheus(compose):
    env = compose["services"]["schedd"]["environment"]
    assert env["OTEL_TRACES_EXPORTER"] == "otlp,burst"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    targets = set(job["static_configs"][0]["targets"])
    assert targets == {f"{name}:{metrics_port(name)}" for name in (CLOUD, *SERVICES)}
    mounted = compose["services"]["prometheus"]["volumes"][0]
    assert mounted == "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"


def test_the_compose_configuration_has_the_default_entries_and_reaches_across_containers():
    compose_pool = load_pool_config(REPO / "deploy" / "compose.toml")
    default = load_pool_config(REPO / "deploy" / "burst.toml")
    assert compose_pool.entries == default.entries and compose_pool.groups == default.groups
    timers = compose_pool.services
    assert (timers.metrics_host, timers.metrics_port_base) == ("0.0.0.0", 9470)
    assert timers.metadata_url == "http://metadata:8471"
    assert timers.pilot_amqp_url == "env:BURST_PILOT_AMQP_URL"


def metrics_port(name: str) -> int:
    timers = load_pool_config(REPO / "deploy" / "compose.toml").services
    return port_for(name, timers.metrics_port_base, timers.metrics_ports)


def test_compose_broker_listens_on_localhost_with_the_definitions_and_no_guest(compose):
    broker = compose["services"]["rabbitmq"]
    assert broker["ports"] and all(port.startswith("${BURST_BROKER_BIND:-127.0.0.1}:")
                                   for port in broker["ports"])
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in broker["volumes"]
                  if volume.startswith("./"))
    assert mounts == {"./deploy/rabbitmq/rabbitmq.conf": "/etc/rabbitmq/conf.d/20-burstwms.conf",
                      "./deploy/rabbitmq/definitions.local.json": "/etc/rabbitmq/definitions.json"}
    conf = (REPO / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    assert "loopback_users.guest = true" in conf
    assert "guest:" not in (REPO / "compose.yaml").read_text()  # no service logs in as guest
    for name in SERVICES:
        for port in compose["services"][name].get("ports", []):
            assert port.startswith("${BURST_WEB_BIND:-127.0.0.1}:")


def test_the_passwords_script_makes_env_and_hashed_definitions(tmp_path, monkeypatch):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "passwords", REPO / "deploy" / "rabbitmq" / "passwords.py")
    passwords = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(passwords)
    env, rendered = tmp_path / ".env", tmp_path / "definitions.local.json"
    env.write_text("BURST_AMQP_PASSWORD_CLI=mine\n")
    monkeypatch.setattr(passwords, "ENV_FILE", env)
    monkeypatch.setattr(passwords, "RENDERED", rendered)
    assert passwords.main() == 0
    values = passwords.read_env(env)
    users = [u["name"] for u in json.loads(rendered.read_text())["users"]]
    assert values["BURST_AMQP_PASSWORD_CLI"] == "mine"  # a password given is kept
    assert sorted(values) == sorted(passwords.variable(user) for user in users)
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    first = rendered.read_text()
    assert passwords.main() == 0 and passwords.read_env(env) == values  # nothing new made
    assert json.loads(first)["users"][0]["password_hash"]


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


@pytest.mark.parametrize("name", [*SERVICES, "glidein", "cloud"])
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


def test_the_readmes_real_cloud_example_loads(tmp_path):
    """What README.md tells a user to write for AWS, OpenStack and OpenNebula is valid."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## On real clouds", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "burst.toml").write_text(example)
    pool = load_pool_config(tmp_path / "burst.toml")
    assert {e.provider for e in pool.entries} == {"aws", "openstack", "opennebula"}
    assert {e.credential for e in pool.entries} == {"ec2-keypair"}
    assert set(pool.groups[0].credentials) == {e.trust_domain for e in pool.entries}
