"""deploy/rabbitmq/definitions.json against the code: each broker user may touch exactly the
names its part of the pool uses, and publish exactly the routing keys it sends or emits.

What a part uses is read from the code, not written down twice:
    queues          the Subscriptions its service declares (real service objects)
    commands/events the schema classes its package builds (ast), sorted by how they travel
    the event log   whether its package reads the bus history
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import schemas
from services.condor.pilot import PilotContext
from services.frontend.handlers import Frontend
from services.glidein.handlers import Glidein
from services.negotiator.handlers import Negotiator
from services.runtime.bus import Names, Subscription, connect
from services.runtime.config import EntryConfig, PoolConfig
from services.schedd.handlers import Schedd
from services.schedd.store import Store

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO / "deploy" / "rabbitmq" / "definitions.json"
NAMES = Names("burst")
BASE = {NAMES.cmd, NAMES.events, NAMES.unroutable, NAMES.event_log}  # every bus declares these
REPLIES = {"cluster.allocated", "input.uploads", "job.list", "job.action.result",
           "rpc.error"}  # to reply-to
PACKAGE = {"schedd": "schedd", "negotiator": "negotiator", "frontend": "frontend",
           "factory": "factory", "web": "web", "metadata": "metadata", "pilot": "glidein",
           "cli": "cli"}
NO_BROKER_USER = ("cloud",)  # the embedded cloud uses no bus: its VMs join as `pilot`
POOL = PoolConfig(path=None, entries=(EntryConfig("e1", "SiteA"), EntryConfig("e2", "SiteB")),
                  groups=())


def definitions() -> dict:
    return json.loads(DEFINITIONS.read_text())


def subscriptions(settings, tmp_path: Path) -> dict[str, list[Subscription]]:
    """The queues each part declares, from the real services (factory, metadata: their own
    method, as building one would start drivers or an HTTP server)."""
    from services.factory.handlers import Factory
    from services.metadata.handlers import MetadataBroker

    bus = connect(settings, "defs", memory=True)
    factory = Factory.__new__(Factory)
    factory.name, factory.entries = "factory", {e.name: e for e in POOL.entries}
    return {
        "metadata": MetadataBroker.__new__(MetadataBroker).subscriptions(),
        "schedd": Schedd("schedd", Store(tmp_path / "s.db"), bus).subscriptions(),
        "negotiator": Negotiator(POOL, bus).subscriptions(),
        "frontend": Frontend("frontend", POOL, bus).subscriptions(),
        "factory": factory.subscriptions(),
        "web": [],
        "pilot": Glidein(PilotContext(pilot_id="local-e1-1a2b", work_dir=tmp_path), bus
                       ).subscriptions(),
        "cli": [],
    }


def built_schemas(package: str) -> set[str]:
    """Names of the schemas a package's code constructs (benchmarks aside)."""
    by_class = {cls.__name__: cls.NAME for cls in schemas.all_schemas()}
    found = set()
    for path in (REPO / "services" / package).rglob("*.py"):
        if path.name == "bench.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in by_class:
                    found.add(by_class[name])
    return found


def reads_event_log(package: str) -> bool:
    for path in (REPO / "services" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "history") or \
                    (isinstance(node, ast.Name) and node.id == "read_event_log"):
                return True
    return False


@dataclass(frozen=True)
class Uses:
    """What one broker user must be allowed, and nothing more."""

    configure: frozenset[str]
    write: frozenset[str]
    read: frozenset[str]
    events: frozenset[str]  # routing keys it publishes on <ns>.events
    commands: frozenset[str]  # routing keys it publishes on <ns>.cmd


def uses(user: str, subs: list[Subscription], commands: set[str]) -> Uses:
    own = set()
    for sub in subs:
        queue = NAMES.queue(sub.queue)
        own |= {queue, NAMES.dlq(queue), NAMES.retry(queue)}
    built = built_schemas(PACKAGE[user])
    sent = {n for n in built if n in commands}
    emitted = {n for n in built if n not in commands and n not in REPLIES}
    if subs:
        emitted.add("deadletter.overflowed")  # what its bus says of a full dead-letter queue
    exchanges = ({NAMES.cmd} if sent else set()) | ({NAMES.events} if emitted else set())
    return Uses(
        configure=frozenset(BASE | own),
        # amq.default: its dead letters, retries (and RPC replies) go to queues by name
        write=frozenset({NAMES.unroutable, NAMES.event_log} | own | exchanges
                        | ({"amq.default"} if subs else set())),
        read=frozenset({NAMES.unroutable, NAMES.events} | own
                       | ({NAMES.cmd} if any(s.commands for s in subs) else set())
                       | ({NAMES.event_log} if reads_event_log(PACKAGE[user]) else set())),
        events=frozenset(keys(emitted)),
        commands=frozenset(keys(sent, ".someone")))


def keys(names: set[str], suffix: str = "") -> set[str]:
    """Routing keys of every version of these schemas (older producers may still send)."""
    return {f"{cls.NAME}.v{cls.VERSION}{suffix}" for cls in schemas.all_schemas()
            if cls.NAME in names}


@pytest.fixture(scope="module")
def pool_uses(tmp_path_factory) -> dict[str, Uses]:
    from tests.conftest import fresh_settings

    tmp = tmp_path_factory.mktemp("defs")
    subs = subscriptions(fresh_settings(tmp), tmp)
    commands = {name for each in subs.values() for sub in each for name in sub.commands}
    return {user: uses(user, each, commands) for user, each in subs.items()}


def universe(pool_uses: dict[str, Uses]) -> set[str]:
    """Every name the pool uses on the broker."""
    return set().union(*(u.configure | u.write | u.read for u in pool_uses.values()))


def every_key(suffix: str = "") -> set[str]:
    return keys({cls.NAME for cls in schemas.all_schemas()}, suffix)


def permission(user: str) -> dict:
    (found,) = [p for p in definitions()["permissions"] if p["user"] == user]
    return found


def topic(user: str, exchange: str) -> dict:
    (found,) = [t for t in definitions()["topic_permissions"]
                if t["user"] == user and t["exchange"] == exchange]
    return found


def matching(pattern: str, names: set[str]) -> set[str]:
    return {name for name in names if re.search(pattern, name)}


def test_the_definitions_have_one_vhost_the_users_and_no_guest():
    defs = definitions()
    assert [v["name"] for v in defs["vhosts"]] == ["burst"]
    users = {u["name"] for u in defs["users"]}
    assert users == {*PACKAGE, "admin"} and "guest" not in users
    assert all(u["password_hash"] == "" for u in defs["users"])  # passwords.py fills them
    assert all(p["vhost"] == "burst" for p in defs["permissions"] + defs["topic_permissions"])


@pytest.mark.parametrize("user", sorted(PACKAGE))
def test_each_user_may_touch_exactly_the_names_its_part_uses(pool_uses, user):
    expected, names = pool_uses[user], universe(pool_uses)
    perms = permission(user)
    for kind in ("configure", "write", "read"):
        assert matching(perms[kind], names) == set(getattr(expected, kind)), kind


@pytest.mark.parametrize("user", sorted(PACKAGE))
def test_each_user_may_publish_exactly_the_keys_its_part_sends(pool_uses, user):
    expected = pool_uses[user]
    events = topic(user, NAMES.events)["write"]
    assert matching(events, every_key()) == set(expected.events)
    commands = topic(user, NAMES.cmd)["write"]
    assert matching(commands, every_key(".someone")) == set(expected.commands)


def test_what_the_pool_sends_is_split_between_users_as_the_senders_of_each_schema_say(
        pool_uses):
    """A pilot sends what pilots may send (SENDERS), the CLI what users may: no more."""
    kinds = {"pilot": "pilot", "cli": "user"}
    for user, kind in kinds.items():
        for key in pool_uses[user].events | pool_uses[user].commands:
            cls = schemas.lookup(key.split(".v")[0], int(key.split(".v")[1].split(".")[0]))
            assert kind in getattr(cls, "SENDERS", (kind,)) or cls.NAME == "deadletter.overflowed"


def test_dead_letter_queues_are_bounded_by_a_policy_like_the_buses_arguments():
    from services.runtime.rabbit import DEAD_LETTER_ARGUMENTS

    (policy,) = definitions()["policies"]
    assert re.search(policy["pattern"], "burst.schedd.schedd.dlq")
    assert not re.search(policy["pattern"], "burst.schedd.schedd")
    arguments = {f"x-{key}": value for key, value in policy["definition"].items()}
    assert arguments == DEAD_LETTER_ARGUMENTS


def test_passwords_are_hashed_as_rabbitmq_does(tmp_path):
    spec = importlib.util.spec_from_file_location("passwords", DEFINITIONS.with_name(
        "passwords.py"))
    passwords = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(passwords)
    # RabbitMQ's own example (rabbit_password_hashing_sha256): salt 908DC60A, "test12".
    assert passwords.password_hash("test12", bytes.fromhex("908DC60A")) == \
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    rendered = passwords.render(definitions(), dict.fromkeys(PACKAGE.keys() | {"admin"}, "pw"))
    assert all(len(u["password_hash"]) == 48 for u in rendered["users"])


@pytest.mark.parametrize("package", NO_BROKER_USER)
def test_a_part_without_a_broker_user_never_touches_the_bus(package):
    for path in (REPO / "services" / package).rglob("*.py"):
        text = path.read_text()
        assert "runtime.bus" not in text and "runtime.rabbit" not in text and \
            "import pika" not in text, path
