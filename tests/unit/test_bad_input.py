"""Bad input on every path, generated (hypothesis): each reader either takes it or refuses it
with its own error, the one its caller turns into a dead letter or one line for a user; no
other exception, no traceback.

    message bodies ──codec.decode──▶ a message | Undecodable         (dead-lettered)
    submit files ──parse_submit_text──▶ jobs | SubmitError            (one line, exit 1)
    configuration ──load_pool_config / Settings.from_env──▶ ok | ConfigError (one line)
    command lines ──burst ...──▶ exit 0/1/2/3, one line, never a traceback

Examples are derandomized: the suite sees the same ones on every run (no flaky failure);
raise BURST_HYPOTHESIS_EXAMPLES for a longer hunt.
"""

from __future__ import annotations

import dataclasses
import os
import string
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import schemas
from services.cli.main import cli
from services.condor.submit import JobSpec, SubmitError, parse_submit_text
from services.runtime import codec
from services.runtime.codec import Envelope, Undecodable
from services.runtime.config import ConfigError, Settings, load_pool_config

EXAMPLES = int(os.environ.get("BURST_HYPOTHESIS_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
PER_SCHEMA = settings(PROPERTY, max_examples=max(EXAMPLES // 5, 10))  # times every schema
SCHEMAS = schemas.all_schemas()

# Values msgpack can carry, nested.
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner,
                                        max_size=4), max_leaves=12)


def decode(schema: type, body: bytes, version: object = None,
           content_type: str = codec.CONTENT_TYPE) -> object:
    version = schema.VERSION if version is None else version
    env = Envelope(type=schema.NAME, version=0, body=body, message_id="m",
                   headers={codec.VERSION_HEADER: version}, content_type=content_type)
    return codec.decode(env)


def fields_of(schema: type) -> st.SearchStrategy[dict]:
    """Maps with some of the schema's own field names (and others), holding anything."""
    names = [f.name for f in dataclasses.fields(schema)]
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=6), values, max_size=8)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda c: f"{c.NAME}.v{c.VERSION}")
@PER_SCHEMA
@given(body=st.binary(max_size=64))
def test_random_bytes_never_decode_to_anything_but_undecodable(schema, body):
    try:
        decode(schema, body)
    except Undecodable:
        pass


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda c: f"{c.NAME}.v{c.VERSION}")
@PER_SCHEMA
@given(data=st.data())
def test_random_maps_decode_to_a_message_or_undecodable(schema, data):
    body = msgpack.packb(data.draw(fields_of(schema) | values), use_bin_type=True)
    try:
        message = decode(schema, body)
    except Undecodable:
        return
    assert schemas.routing_key(message).startswith(schema.NAME)


@PROPERTY
@given(schema=st.sampled_from(SCHEMAS), version=values, content_type=st.text(max_size=30),
       body=st.binary(max_size=32))
def test_random_headers_are_undecodable_not_a_crash(schema, version, content_type, body):
    try:
        decode(schema, body, version=version, content_type=content_type)
    except Undecodable:
        pass


# --- submit files ----------------------------------------------------------------------------

COMMANDS = ["executable", "arguments", "environment", "input", "output", "error", "log",
            "initialdir", "transfer_input_files", "transfer_output_files", "request_cpus",
            "request_memory", "request_disk", "requirements", "rank", "priority", "universe",
            "max_retries", "transfer_executable", "+DESIRED_Sites", "+Foo", "MY.Bar", "x"]
WORDS = ["run.sh", "in.txt", "sub", "..", "/", "/bin/true", "$(Process)", "$(Cluster)",
         "$(x)", "$$(GLIDEIN_Site)", "$(", ")", "'", '"', "1", "-1", "0", "2GB", "99999999999"
         "999999999TB", "1e400", "true", "false", "&&", "||", "(", ",", ";", "=", "\\", "#"]
values_text = st.lists(st.sampled_from(WORDS) | st.text(max_size=6), max_size=5).map(" ".join)
command_lines = st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(COMMANDS), values_text)
queue_lines = st.one_of(
    st.just("queue"), st.integers(-2, 4).map(lambda n: f"queue {n}"),
    st.builds(lambda v, rest: f"queue {v} in {rest}", st.sampled_from(["x", "1x", ""]),
              values_text),
    st.builds(lambda rest: f"queue x from ({rest})", values_text),
    st.builds(lambda rest: f"queue matching {rest}", values_text),
    st.builds(lambda rest: f"queue {rest}", values_text))
junk_lines = st.text(max_size=20) | st.sampled_from(["", "# c", "if true", "endif",
                                                     "include : x", "(", ")", "\\"])
submit_text = st.lists(command_lines | queue_lines | junk_lines, max_size=12).map("\n".join)
NUMERIC = ["request_cpus", "request_memory", "request_disk", "priority", "max_retries",
           "+Foo"]
number_lines = st.builds(
    lambda key, number, unit: f"{key} = {number}{unit}", st.sampled_from(NUMERIC),
    st.integers(-(2**80), 2**80) | st.floats(allow_nan=True),
    st.sampled_from(["", "K", "MB", "G", "TB", " GB", "x"]))
# A working file with random commands before its queue statement: gets past the first checks.
mostly_good = st.builds(
    lambda lines, queue: "\n".join(["executable = run.sh", *lines, queue]),
    st.lists(command_lines | number_lines, max_size=4), queue_lines)
numbers = st.lists(number_lines, min_size=1, max_size=3).map(
    lambda lines: "\n".join(["executable = run.sh", *lines, "queue"]))


@pytest.fixture(scope="module")
def submit_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("submit")
    (base / "run.sh").write_text("#!/bin/sh\n")
    (base / "in.txt").write_text("x")
    (base / "sub").mkdir()
    return base


def read_submit(text: str, base: Path) -> list[JobSpec] | SubmitError:
    try:
        return parse_submit_text(text, cluster=3, owner="alice", initialdir_default=base,
                                 source_name="jobs.sub")
    except SubmitError as exc:
        assert str(exc).startswith("jobs.sub")  # the one line names the file
        return exc


@PROPERTY
@given(text=submit_text | mostly_good)
@example(text="executable = run.sh\nqueue $(x)")  # found: a KeyError out of htcondor2
def test_random_submit_files_give_jobs_or_a_submit_error(submit_dir, text):
    found = read_submit(text, submit_dir)
    if not isinstance(found, SubmitError):
        assert [spec.proc for spec in found] == list(range(len(found)))


@PROPERTY
@given(text=numbers)
@example(text="executable = run.sh\nrequest_memory = 99999999999999999999999TB\nqueue")
def test_any_number_in_a_submit_file_gives_jobs_or_a_submit_error(submit_dir, text):
    read_submit(text, submit_dir)


@PROPERTY
@given(text=st.text(max_size=200))
def test_random_text_gives_jobs_or_a_submit_error(submit_dir, text):
    read_submit(text, submit_dir)


# --- configuration ---------------------------------------------------------------------------

toml_scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
                | st.text(string.printable, max_size=8))
TABLE_KEYS = ["name", "site", "driver", "provider", "cpus", "memory_mb", "disk_mb",
              "endpoint", "limits", "attributes", "faults", "match", "credentials",
              "schedd_name", "web_port", "claim_grace_s", "slot_lease_s", "oops"]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
            .replace("\r", "\\r").replace("\t", "\\t").replace("\x0b", "\\u000b") \
            .replace("\x0c", "\\f") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"
    return str(value)


toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(TABLE_KEYS), inner, max_size=3),
                           max_leaves=6)
tables = st.dictionaries(st.sampled_from(TABLE_KEYS), toml_values, max_size=6)


def toml_file(entries: list[dict], groups: list[dict], services: dict | None) -> str:
    text = []
    for kind, items in (("entry", entries), ("group", groups)):
        for table in items:
            text.append(f"[[{kind}]]")
            text += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    if services is not None:
        text.append("[services]")
        text += [f"{key} = {toml_value(value)}" for key, value in services.items()]
    return "\n".join(text) + "\n"


def load(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "pool.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        load_pool_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), exc


@PROPERTY
@given(entries=st.lists(tables, max_size=3), groups=st.lists(tables, max_size=2),
       services=st.none() | tables)
def test_random_configurations_load_or_give_a_config_error(tmp_path, entries, groups, services):
    load(tmp_path, toml_file(entries, groups, services))


@PROPERTY
@given(content=st.binary(max_size=80) | st.text(max_size=80))
def test_random_bytes_as_a_configuration_give_a_config_error(tmp_path, content):
    load(tmp_path, content)


@PROPERTY
@given(env=st.dictionaries(st.sampled_from(["AMQP_URL", "BURST_NAMESPACE", "BURST_CONFIG",
                                            "BURST_STATE_DIR"]), st.text(max_size=12)))
def test_random_environments_give_settings_or_a_config_error(env):
    try:
        Settings.from_env(env)
    except ConfigError:
        pass


# --- command lines ---------------------------------------------------------------------------

# Commands that start processes or servers (up, service) are left out: the rest either fail
# fast with the broker unreachable, or work on a state directory of their own.
VERBS = ["submit", "q", "wait", "rm", "hold", "release", "status", "events", "bench", "token",
         "down", "--timeout", "--help", "nope"]
TOKENS = ["--json", "--timeout", "--since", "--reason", "--schedd", "--owner", "--entity",
          "--job", "--key", "--watch", "-f", "issue", "--admin", "--lifetime", "--out",
          "1", "1.0", "abc", "-3", "0.2", "nan", "inf", "10m", "", "jobs.sub", "bus", "--",
          "-h"]  # not `bench negotiate`: a benchmark that runs for real, without a broker
args = st.lists(st.sampled_from(VERBS), min_size=1, max_size=1).flatmap(
    lambda verb: st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=4).map(
        lambda rest: ["--timeout", "0.3", *verb, *rest]))


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict[str, str]:
    from services.cli import identity

    base = tmp_path_factory.mktemp("cli")
    env = {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F", "BURST_NAMESPACE": "hypo",
           "BURST_STATE_DIR": str(base / "state"), "BURST_TOKEN_FILE": "",
           "BURST_CONFIG": str(Path(__file__).resolve().parents[2] / "deploy" / "burst.toml")}
    identity.ensure_own_token(Settings.from_env(env))  # so commands get as far as the broker
    return env


@PROPERTY
@given(argv=args)
def test_random_command_lines_exit_0_to_3_without_a_traceback(cli_env, argv):
    result = CliRunner().invoke(cli, argv, env=cli_env)
    assert result.exit_code in (0, 1, 2, 3), (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        (argv, result.output, result.exception)
    assert "Traceback" not in result.output, (argv, result.output)
