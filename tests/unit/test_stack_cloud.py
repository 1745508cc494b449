"""`burst up` runs the embedded cloud only where an entry asks for it, and starts it first."""

from __future__ import annotations

from services.cli import stack
from tests.conftest import fresh_settings

LOCAL = '[[entry]]\nname = "l"\nsite = "L"\n'
EMBEDDED = LOCAL + '[[entry]]\nname = "c"\nsite = "C"\ndriver = "ec2"\nendpoint = "embedded"\n'


def test_the_cloud_is_part_of_the_stack_only_when_configured(tmp_path):
    config = tmp_path / "burst.toml"
    settings = fresh_settings(tmp_path, BURST_CONFIG=str(config))
    config.write_text(LOCAL)
    assert stack.stack_services(settings) == stack.SERVICES
    assert [s.name for s in stack.service_states(settings)] == list(stack.SERVICES)
    config.write_text(EMBEDDED)
    assert stack.stack_services(settings) == (stack.CLOUD, *stack.SERVICES)
    config.write_text(LOCAL)  # configured away while it still runs: still stopped by down
    stack.pid_path(settings, stack.CLOUD).parent.mkdir(parents=True)
    stack.pid_path(settings, stack.CLOUD).write_text("999999999\n")
    states = {s.name: s for s in stack.service_states(settings)}
    assert stack.CLOUD in states and not states[stack.CLOUD].alive


def test_only_the_frontend_is_given_the_credential_variables(tmp_path, monkeypatch):
    config = tmp_path / "burst.toml"
    config.write_text(LOCAL + '[[group]]\nname = "g"\ncredentials = { aws = "env:AWS_X", '
                              'os = "file:os.keys", local = "none" }\n')
    settings = fresh_settings(tmp_path, BURST_CONFIG=str(config))
    monkeypatch.setenv("AWS_X", "AKIA:secret")
    monkeypatch.setenv("HOME_LIKE", "kept")
    assert stack.credential_variables(settings) == {"AWS_X"}
    assert stack.environment(settings, "frontend")["AWS_X"] == "AKIA:secret"
    for name in ("factory", "cloud", "schedd", "metadata"):
        env = stack.environment(settings, name)
        assert "AWS_X" not in env and env["HOME_LIKE"] == "kept"
        assert env["BURST_NAMESPACE"] == settings.namespace


def test_object_storage_on_the_embedded_cloud_starts_it_and_only_the_schedd_has_its_keys(
        tmp_path, monkeypatch):
    config = tmp_path / "burst.toml"
    config.write_text(LOCAL + '[storage]\nendpoint = "embedded"\ncredentials = "env:S3_KEYS"\n'
                              '[[group]]\nname = "g"\ncredentials = { aws = "env:AWS_X" }\n')
    settings = fresh_settings(tmp_path, BURST_CONFIG=str(config))
    monkeypatch.setenv("S3_KEYS", "AKIA:s3-secret")
    monkeypatch.setenv("AWS_X", "AKIA:secret")
    assert stack.stack_services(settings) == (stack.CLOUD, *stack.SERVICES)
    assert stack.environment(settings, "schedd")["S3_KEYS"] == "AKIA:s3-secret"
    assert "AWS_X" not in stack.environment(settings, "schedd")
    assert "S3_KEYS" not in stack.environment(settings, "frontend")
    for name in ("factory", "cloud", "negotiator", "metadata", "web"):
        assert not {"S3_KEYS", "AWS_X"} & set(stack.environment(settings, name))
