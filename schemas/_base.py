"""Schema machinery: a registry of frozen dataclasses keyed by (NAME, VERSION).

Every message that crosses a service boundary is one of these classes. The
rules (DESIGN.md, "Messages"):

- adding an optional field (with a default) keeps the version;
- anything else is a new version; the old class stays registered, and an
  upgrader turns its fields into the next version's, so a consumer always
  handles the newest shape;
- a body is never interpreted by guessing the version from its fields.

    message ──encode()──▶ msgpack map of its fields
    msgpack ──decode(NAME, VERSION)──▶ that version's class, checked ──upgraders──▶ newest

Bodies are plain msgpack maps. msgspec encodes them and decodes them straight
into the dataclass of the declared (NAME, VERSION), checking every value
against the annotations on the way, so garbage is rejected (and dead-lettered)
at the edge instead of failing deep inside a handler. Keys the class does not
know are skipped: a newer producer may have added optional fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

_REGISTRY: dict[tuple[str, int], type] = {}
_LATEST: dict[str, int] = {}  # name -> newest registered version, kept by message()
_UPGRADERS: dict[tuple[str, int], Callable[[dict], dict]] = {}
# (NAME, VERSION) -> its decoder, made on first use (annotations resolve late)
_DECODERS: dict[tuple[str, int], msgspec.msgpack.Decoder] = {}
_ENCODER = msgspec.msgpack.Encoder()
_PLAIN_AS_IS = (bytes,)  # to_plain keeps bytes as bytes (msgpack bin), not base64 text


class SchemaError(ValueError):
    """A body that does not fit its declared schema: a permanent error."""


def message(cls: type) -> type:
    """Class decorator: make `cls` a frozen dataclass and register it."""
    cls = dataclass(frozen=True)(cls)
    name, version = getattr(cls, "NAME", None), getattr(cls, "VERSION", None)
    if not isinstance(name, str) or not isinstance(version, int):
        raise TypeError(f"{cls.__name__} needs NAME: str and VERSION: int")
    key = (name, version)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise TypeError(f"schema {name} v{version} registered twice")
    _REGISTRY[key] = cls
    _LATEST[name] = max(version, _LATEST.get(name, version))
    return cls


def upgrader(name: str, from_version: int):
    """Register fn(fields of v N) -> fields of v N+1."""

    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        _UPGRADERS[(name, from_version)] = fn
        return fn

    return register


def lookup(name: str, version: int) -> type:
    try:
        return _REGISTRY[(name, version)]
    except KeyError:
        known = sorted(v for (n, v) in _REGISTRY if n == name)
        raise SchemaError(
            f"unknown schema {name} v{version}"
            + (f" (known versions: {known})" if known else "")
        ) from None


def latest_version(name: str) -> int:
    try:
        return _LATEST[name]
    except KeyError:
        raise SchemaError(f"unknown schema {name}") from None


def all_schemas() -> list[type]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def routing_key(cls_or_msg: Any) -> str:
    cls = type(cls_or_msg)
    key = _ROUTING_KEYS.get(cls)  # per message class; a class passed itself is not cached
    if key is None:
        key = f"{cls_or_msg.NAME}.v{cls_or_msg.VERSION}"
        if cls in _REGISTRY.values():
            _ROUTING_KEYS[cls] = key
    return key


_ROUTING_KEYS: dict[type, str] = {}


# --- bodies -------------------------------------------------------------------------------------


def encode(msg: Any) -> bytes:
    """The msgpack body of a message: a map of its fields, in field order."""
    return _ENCODER.encode(msg)


def decode(name: str, version: int, body: bytes) -> Any:
    """The newest version of `name`, from a msgpack body of `version`; SchemaError if not."""
    decoder = _DECODERS.get((name, version))
    if decoder is None:
        decoder = _DECODERS[name, version] = msgspec.msgpack.Decoder(lookup(name, version))
    try:
        msg = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise SchemaError(_describe(lookup(name, version), exc)) from None
    except msgspec.DecodeError as exc:
        raise SchemaError(f"{name} v{version}: body is not msgpack ({exc})") from None
    return msg if version == _LATEST[name] else _upgrade(msg)


def to_plain(msg: Any) -> dict:
    """A message as a map of plain values (nested dataclasses become maps, bytes stay)."""
    return msgspec.to_builtins(msg, builtin_types=_PLAIN_AS_IS)


def from_plain(name: str, version: int, fields: Any) -> Any:
    """The newest version of `name`, from a map of the fields of `version`."""
    return _upgrade(_convert(lookup(name, version), fields))


def _convert(cls: type, fields: Any) -> Any:
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as exc:
        raise SchemaError(_describe(cls, exc)) from None


def _upgrade(msg: Any) -> Any:
    name, version = msg.NAME, msg.VERSION
    newest = latest_version(name)
    while version < newest:
        step = _UPGRADERS.get((name, version))
        if step is None:
            raise SchemaError(f"no upgrade from {name} v{version} to v{version + 1}")
        version += 1
        msg = _convert(lookup(name, version), step(to_plain(msg)))
    return msg


def _label(cls: type) -> str:
    return f"{cls.NAME} v{cls.VERSION}"


def _describe(cls: type, exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.procs[0].ad`" as
    "job.submit v1: procs[0].ad: Expected `str`, got `int`"."""
    problem, _, path = str(exc).partition(" - at `$")
    path = path.rstrip("`").removeprefix(".")
    return f"{_label(cls)}: {path}: {problem}" if path else f"{_label(cls)}: {problem}"


__all__ = ["ClassVar", "message", "upgrader"]  # what the schema modules import from here
