"""The users of deploy/rabbitmq/definitions.json on a real broker: imported into a throwaway
vhost (users and vhost renamed, removed afterwards; the broker's own users are never touched),
each part of the pool runs its bus as its user, and a pilot cannot do what is not a pilot's."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pika
import pytest

from schemas.job import JobQuery, JobReport
from schemas.slot import SlotAdvertised
from services.runtime.bus import connect
from services.runtime.config import Settings
from services.runtime.rabbit import declare_topology, read_event_log
from tests.helpers import wait_until
from tests.unit.test_broker_definitions import PACKAGE, definitions, subscriptions

pytestmark = pytest.mark.broker
PASSWORDS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "passwords.py"


def rabbitmqctl(*args: str) -> str:
    proc = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode:
        raise AssertionError(f"rabbitmqctl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def renamed(defs: dict, vhost: str, prefix: str, passwords: dict[str, str]) -> dict:
    """The definitions for a vhost and users of the test's own, with password hashes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("passwords", PASSWORDS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = json.dumps(defs)
    for user in [u["name"] for u in defs["users"]]:
        text = text.replace(f'"{user}"', f'"{prefix}{user}"')
    text = text.replace('"vhost": "burst"', f'"vhost": "{vhost}"').replace(
        '"name": "burst"', f'"name": "{vhost}"')
    return module.render(json.loads(text), {prefix + k: v for k, v in passwords.items()})


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    from services.runtime.rabbit import broker_answers
    from tests.conftest import fresh_settings

    rabbit_settings = fresh_settings(tmp_path_factory.mktemp("broker"))
    if not broker_answers(rabbit_settings):
        pytest.fail(f"no RabbitMQ broker answers at {rabbit_settings.safe_url}", pytrace=False)
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("these tests make users with rabbitmqctl, which is not installed here",
                    pytrace=False)
    tag = secrets.token_hex(4)
    vhost, prefix = f"burst-test-{tag}", f"t{tag}-"
    defs = definitions()
    passwords = {u["name"]: secrets.token_urlsafe(16) for u in defs["users"]}
    rendered = renamed(defs, vhost, prefix, passwords)
    # The node reads the file as its own user (stdin is not taken by every version), and
    # imports it in the background.
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        path = Path(folder) / "definitions.json"
        path.write_text(json.dumps(rendered))
        path.chmod(0o644)
        rabbitmqctl("import_definitions", str(path))
        wait_until(lambda: f"{prefix}pilot" in rabbitmqctl("list_permissions", "-p", vhost)
                   if vhost in rabbitmqctl("list_vhosts").split() else False,
                   timeout=30, what="the definitions imported", poll_s=0.3)
    state = tmp_path_factory.mktemp("state")
    settings = {
        user: Settings(amqp_url=f"amqp://{prefix}{user}:{passwords[user]}@127.0.0.1:"
                                f"{_port(rabbit_settings)}/{quote(vhost, safe='')}",
                       namespace="burst", config_path=rabbit_settings.config_path,
                       state_dir=state)
        for user in passwords}
    yield settings
    rabbitmqctl("delete_vhost", vhost)
    for user in passwords:
        rabbitmqctl("delete_user", prefix + user)


def _port(settings: Settings) -> int:
    return pika.URLParameters(settings.amqp_url).port


def channel(settings: Settings):
    """A channel that waits for each publish to be confirmed (or refused)."""
    ch = pika.BlockingConnection(pika.URLParameters(settings.amqp_url)).channel()
    ch.confirm_delivery()
    return ch


def refused(do) -> str:
    """The broker's refusal of what `do(channel)` tries, as a pilot would meet it."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refusal:
        do()
    assert refusal.value.reply_code == 403
    return refusal.value.reply_text


def test_every_part_of_the_pool_runs_its_bus_as_its_user(users, tmp_path):
    subs = subscriptions(users["schedd"], tmp_path)
    started = []
    try:
        for user in PACKAGE:  # declares the topology and its queues, consumes them
            bus = connect(users[user], user)
            for sub in subs[user]:
                bus.subscribe(sub)
            bus.start()
            started.append(bus)
        by_user = dict(zip(PACKAGE, started, strict=True))
        by_user["pilot"].emit(SlotAdvertised(pilot_id="p1", ad="[]", state="idle",
                                             free_cpus=1, free_memory_mb=1, free_disk_mb=1))
        by_user["pilot"].send(JobReport(job_id="1.0", claim_id="c", pilot_id="p1",
                                        state="running"), to="schedd")
        by_user["cli"].send(JobQuery(), to="schedd")
        for bus in started:
            bus.flush()
        for user in ("cli", "web", "factory"):  # they read the event log
            assert any(env.type == "slot.advertised"
                       for env in read_event_log(users[user], idle_timeout=0.5))
    finally:
        for bus in started:
            bus.stop()


def test_a_pilot_cannot_publish_what_is_not_a_pilots_nor_read_the_schedds_queue(users,
                                                                               tmp_path):
    pilot = users["pilot"]
    declare_topology(users["schedd"], subscriptions(users["schedd"], tmp_path)["schedd"])
    channel(pilot).basic_publish("burst.events", "pilot.registered.v1", b"")  # its own
    assert "pilot.lost.v1" in refused(lambda: channel(pilot).basic_publish(
        "burst.events", "pilot.lost.v1", b""))
    assert "job.completed.v1" in refused(lambda: channel(pilot).basic_publish(
        "burst.events", "job.completed.v1", b""))
    assert "burst.schedd.schedd" in refused(lambda: channel(pilot).basic_consume(
        "burst.schedd.schedd", lambda *args: None))
    assert "burst.schedd.schedd" in refused(lambda: channel(pilot).queue_purge(
        "burst.schedd.schedd"))


def test_the_cli_user_cannot_emit_events(users):
    assert "exchange 'burst.events'" in refused(lambda: channel(users["cli"]).basic_publish(
        "burst.events", "job.completed.v1", b""))


def test_the_dead_letter_policy_bounds_a_dead_letter_queue_declared_without_limits(users):
    channel(users["pilot"]).queue_declare("burst.glidein.old.dlq", durable=True)
    listed = rabbitmqctl("list_queues", "-p", users["pilot"].amqp_url.rsplit("/", 1)[1]
                         .replace("%2F", "/"), "name", "policy")
    assert any(line.split() == ["burst.glidein.old.dlq", "burst-dead-letters"]
               for line in listed.splitlines()), listed
