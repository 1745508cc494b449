"""The wire format: a schema message <-> an Envelope (body + AMQP properties).

    message ──encode──▶ Envelope(body=msgpack map, type=NAME, x-schema-version=N, ...)
    Envelope ──decode──▶ newest version of the message (upgraded when older)

The version travels in the `x-schema-version` header and the schema name in
the AMQP `type` property; the body alone is never used to guess either.
Anything that cannot be decoded raises `Undecodable`, which the ack policy
dead-letters.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from typing import Any

import msgspec

import schemas
from schemas import SchemaError

CONTENT_TYPE = "application/msgpack"
SEALED_CONTENT_TYPE = "application/msgpack+sealed"  # encrypted to its recipient (security.py)
VERSION_HEADER = "x-schema-version"


class Undecodable(Exception):
    """A body that cannot become a message: wrong type, version or bytes."""


class Envelope(msgspec.Struct, frozen=True):
    """A message as it travels: the body and the AMQP properties the bus reads and writes.

    A msgspec Struct, not a dataclass: two are made per message (published, handled), and a
    Struct is built in C, several times faster than a frozen dataclass's __init__.
    """

    type: str
    version: int
    body: bytes
    message_id: str
    correlation_id: str | None = None
    timestamp: int = 0
    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    content_type: str = CONTENT_TYPE
    routing_key: str = ""
    reply_to: str | None = None


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_message_id() -> str:
    """A random (version 4) UUID as 32 hex digits, like uuid.uuid4().hex.

    Every published message needs one: from the process's random generator (seeded from
    os.urandom, reseeded in a forked child), not a system call per id as uuid4() does.
    Ids must be unique, not unpredictable.
    """
    return "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


def derived_message_id(parent_id: str, index: int) -> str:
    """Id of the index-th message a handler publishes while handling parent_id.

    A redelivered message makes its handler run again; deriving the ids of what
    it publishes from the parent's id makes the repeats carry the same ids, so
    consumers that deduplicate by message id see them as the same messages.

    The id is uuid.uuid5(parent as a UUID, or NAMESPACE_OID, f"{parent_id}/{index}").hex,
    worked out here for the usual parent (32 hex digits) without building UUID objects:
    a third of the time, for every message published from a handler.
    """
    namespace = _uuid_bytes(parent_id)
    digest = bytearray(hashlib.sha1(namespace + f"{parent_id}/{index}".encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    return digest.hex()


def _uuid_bytes(value: str) -> bytes:
    if len(value) == 32:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw
    try:
        return uuid.UUID(hex=value).bytes
    except ValueError:
        return uuid.NAMESPACE_OID.bytes


def encode(
    msg: Any,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    headers: dict[str, Any] | None = None,
    reply_to: str | None = None,
) -> Envelope:
    version = msg.VERSION
    return Envelope(
        type=msg.NAME,
        version=version,
        body=schemas.encode(msg),
        message_id=message_id or new_message_id(),
        correlation_id=correlation_id,
        timestamp=int(time.time()),
        headers={VERSION_HEADER: version, **headers} if headers else {VERSION_HEADER: version},
        routing_key=schemas.routing_key(msg),
        reply_to=reply_to,
    )


def raw_envelope(body: bytes, *, type: str | None, headers: dict | None,
                 content_type: str) -> Envelope:
    """An envelope around bytes as they are (tests, bad-message drills): no schema."""
    return Envelope(type=type or "", version=0, body=body, message_id=new_message_id(),
                    headers=headers or {}, content_type=content_type, timestamp=int(time.time()))


def decode(env: Envelope) -> Any:
    if not env.type:
        raise Undecodable("message has no AMQP type (schema name)")
    if env.content_type != CONTENT_TYPE:
        raise Undecodable(f"content type {env.content_type!r} is not {CONTENT_TYPE}")
    version = env.headers.get(VERSION_HEADER)
    if type(version) is not int:
        version = _version_number(env.type, version)
    try:
        return schemas.decode(env.type, version, env.body)
    except SchemaError as exc:
        raise Undecodable(str(exc)) from None


def _version_number(schema: str, version: Any) -> int:
    if isinstance(version, bytes):
        version = version.decode(errors="replace")
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if not isinstance(version, int) or isinstance(version, bool):
        raise Undecodable(f"{schema}: header {VERSION_HEADER} missing or not an integer")
    return version


def decode_or_none(env: Envelope) -> Any:
    """The message, or None when it cannot be decoded (for readers of the event log)."""
    try:
        return decode(env)
    except Undecodable:
        return None
