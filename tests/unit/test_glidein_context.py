"""The pilot context: environment, context file, validation and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.glidein import __main__ as glidein_main
from services.glidein.context import ContextError, from_env, from_file, load, resolve

ENV = {
    "BURST_PILOT_ID": "p-1", "BURST_ENTRY": "local_1", "BURST_SITE": "Local",
    "BURST_FACTORY": "factory", "BURST_PROVIDER": "aws", "BURST_CPUS": "4",
    "BURST_MEMORY_MB": "2048", "BURST_DISK_MB": "1000", "BURST_IDLE_TIMEOUT_S": "1.5",
    "BURST_MAX_LIFETIME_S": "3600", "BURST_INSTANCE_ID": "i-1", "BURST_INSTANCE_TYPE": "t3",
    "BURST_SPOT": "true", "BURST_GROUP": "main", "BURST_PILOT_ATTRS": '{"HasGPU": false}',
    "AMQP_URL": "amqp://u:p@broker:5672/%2F", "BURST_NAMESPACE": "pool1",
    "BURST_STATE_DIR": "/tmp/state",
}


def test_everything_from_the_environment():
    ctx = load(env=ENV)
    assert (ctx.pilot_id, ctx.entry, ctx.site, ctx.factory, ctx.provider) == (
        "p-1", "local_1", "Local", "factory", "aws")
    assert (ctx.cpus, ctx.memory_mb, ctx.disk_mb) == (4, 2048, 1000)
    assert (ctx.idle_timeout_s, ctx.max_lifetime_s) == (1.5, 3600.0)
    assert (ctx.instance_id, ctx.instance_type, ctx.spot, ctx.group) == ("i-1", "t3", True, "main")
    assert ctx.attributes == {"HasGPU": False} and ctx.source == "env"
    assert ctx.work_dir == Path("/tmp/state/glidein/p-1")
    settings = ctx.settings()
    assert (settings.amqp_url, settings.namespace) == (ENV["AMQP_URL"], "pool1")
    assert settings.state_dir == Path("/tmp/state")


def test_defaults_for_a_minimal_local_pilot():
    ctx = resolve([("env", from_env({"BURST_PILOT_ID": "x"}))], pid=42)
    assert (ctx.cpus, ctx.memory_mb, ctx.idle_timeout_s, ctx.max_lifetime_s) == (
        1, 1024, 1200.0, 86400.0)
    assert ctx.provider == "local" and ctx.instance_id == "local-42" and not ctx.spot


def test_slot_users_default_to_a_range_of_numeric_uids():
    assert load(env={"BURST_PILOT_ID": "x"}).slot_users == "60001-60064"
    assert load(env={"BURST_PILOT_ID": "x", "BURST_SLOT_USERS": "nobody, 61000"}).slot_users \
        == "nobody, 61000"


def test_the_local_drivers_work_dir_is_used():
    ctx = load(env={"BURST_PILOT_ID": "x", "BURST_PILOT_WORK_DIR": "/tmp/pilots/x/work"})
    assert ctx.work_dir == Path("/tmp/pilots/x/work")


def test_a_context_file_overrides_the_environment(tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"pilot_id": "from-file", "cpus": 8, "spot": False,
                                "attributes": {"Flavor": "x"}, "idle_timeout_s": 30}))
    ctx = load(path, env=ENV)
    assert ctx.pilot_id == "from-file" and ctx.cpus == 8 and not ctx.spot
    assert ctx.attributes == {"Flavor": "x"} and ctx.idle_timeout_s == 30.0
    assert ctx.namespace == "pool1"  # not in the file: the environment's
    assert ctx.source == "file"


@pytest.mark.parametrize(("var", "value", "message"), [
    ("BURST_CPUS", "four", "BURST_CPUS: expected a positive integer, got 'four'"),
    ("BURST_CPUS", "0", "BURST_CPUS: expected a positive integer"),
    ("BURST_IDLE_TIMEOUT_S", "-1", "BURST_IDLE_TIMEOUT_S: expected a positive number"),
    ("BURST_SPOT", "maybe", "BURST_SPOT: expected true or false"),
    ("BURST_PILOT_ATTRS", "{nope", "BURST_PILOT_ATTRS: not valid JSON"),
    ("BURST_PILOT_ATTRS", "[1]", "BURST_PILOT_ATTRS: expected a JSON object"),
    ("BURST_PROVIDER", "azure", "BURST_PROVIDER: 'azure' is not one of local, aws"),
    ("BURST_PILOT_ID", "a/b", "BURST_PILOT_ID: 'a/b' may hold letters"),
    ("BURST_NAMESPACE", "a.b", "BURST_NAMESPACE: 'a.b' may hold letters"),
    ("BURST_SLOT_USERS", "60064-60001", "BURST_SLOT_USERS: '60064-60001': expected a range"),
    ("BURST_SLOT_USERS", "no-such-user-x", "BURST_SLOT_USERS: 'no-such-user-x': no such user"),
    ("BURST_SLOT_USERS", "root", "BURST_SLOT_USERS: 'root': a slot user must not be root"),
])
def test_bad_values_name_the_variable(var, value, message):
    with pytest.raises(ContextError) as err:
        load(env={**ENV, var: value})
    assert message in str(err.value)


def test_a_missing_pilot_id_is_named():
    with pytest.raises(ContextError, match="BURST_PILOT_ID .* required"):
        load(env={"BURST_CPUS": "2"})


def test_bad_file_keys_name_the_file_and_key(tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"pilot_id": "p", "cpu": 2}))
    with pytest.raises(ContextError, match=r"ctx.json: cpu: unknown key"):
        from_file(path)
    path.write_text(json.dumps({"pilot_id": "p", "memory_mb": "lots"}))
    with pytest.raises(ContextError, match=r"ctx.json: memory_mb: expected a positive integer"):
        load(path, env={})
    path.write_text("{")
    with pytest.raises(ContextError, match="not valid JSON"):
        from_file(path)
    with pytest.raises(ContextError, match="cannot read the context file"):
        from_file(tmp_path / "absent.json")


def test_a_bad_context_exits_with_code_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BURST_PILOT_ID", "p")
    monkeypatch.setenv("BURST_CPUS", "-3")
    assert glidein_main.main([]) == 2
    assert "BURST_CPUS: expected a positive integer, got '-3'" in capsys.readouterr().err
    assert glidein_main.main(["--context", str(tmp_path / "missing.json")]) == 2


def test_custom_resources_come_as_a_json_object_the_factory_writes():
    from services.condor.pilot import pilot_environment
    from services.runtime.config import EntryConfig, Settings

    entry = EntryConfig(name="gpu", site="S", gpus=1, resources={"Boats": 2})
    env = pilot_environment(entry, "p-9", factory="f", group="main", idle_lifetime_s=0,
                            settings=Settings.from_env({}))
    assert load(env=env).resources == {"GPUs": 1, "Boats": 2}
    assert load(env={"BURST_PILOT_ID": "x"}).resources == {}


@pytest.mark.parametrize(("value", "message"), [
    ('{"Boats": -1}', "BURST_RESOURCES: Boats: expected a whole amount >= 0, got -1"),
    ('{"Boats": 1.5}', "BURST_RESOURCES: Boats: expected a whole amount >= 0, got 1.5"),
    ('{"Cpus": 1}', "BURST_RESOURCES: 'Cpus': Cpus is a built-in resource"),
    ('{"B": 1}', "BURST_RESOURCES: 'B': a resource name is a letter then"),
    ("[1]", "BURST_RESOURCES: expected a JSON object of custom resources"),
])
def test_bad_custom_resources_name_the_variable(value, message):
    with pytest.raises(ContextError) as err:
        load(env={"BURST_PILOT_ID": "x", "BURST_RESOURCES": value})
    assert str(err.value).startswith(message)
