"""Schema machinery: a registry of frozen dataclasses keyed by (NAME, VERSION).

Every message that crosses a service boundary is one of these classes. The
rules (DESIGN.md, "Messages"):

- adding an optional field (with a default) keeps the version;
- anything else is a new version; the old class stays registered, and an
  upgrader turns its fields into the next version's, so a consumer always
  handles the newest shape;
- a body is never interpreted by guessing the version from its fields.

Bodies are plain msgpack maps. Field values are checked against the
annotations on decode, so garbage is rejected (and dead-lettered) at the edge
instead of failing deep inside a handler.

Decoding and encoding are on every message's path, so the work that depends
only on the class (type hints, field names, a converter per annotation) is
done once per class and cached; see `build` and `to_plain`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

_REGISTRY: dict[tuple[str, int], type] = {}
_LATEST: dict[str, int] = {}  # name -> newest registered version, kept by message()
_UPGRADERS: dict[tuple[str, int], Callable[[dict], dict]] = {}


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


def to_plain(msg: Any) -> dict:
    """A message as a msgpack-ready map (nested dataclasses become maps)."""
    return _plain(msg)


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names, in order


def _plain(value: Any) -> Any:
    cls = type(value)
    if cls in _SCALARS:
        return value
    if cls is dict:  # not a dataclass: no need to ask
        return {k: _plain(v) for k, v in value.items()} if value else {}
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
        elif isinstance(value, (list, tuple)):
            return [_plain(v) for v in value]
        elif isinstance(value, dict):
            return {k: _plain(v) for k, v in value.items()}
        else:
            return value
    plain = getattr(value, "__dict__", None)
    if plain is not None and len(plain) == len(names):
        # A dataclass instance holds its fields, in field order (its __init__, or build(),
        # set them so), and nothing else: copy that, then convert what is not a scalar.
        plain = plain.copy()
        for name, field_value in plain.items():
            if type(field_value) not in _SCALARS:
                plain[name] = _plain(field_value)
        return plain
    return {name: _plain(getattr(value, name)) for name in names}


def from_plain(name: str, version: int, fields: Any) -> Any:
    """Build the newest version of `name` from the fields of `version`."""
    cls = lookup(name, version)
    msg = build(cls, fields)
    newest = latest_version(name)
    while version < newest:
        step = _UPGRADERS.get((name, version))
        if step is None:
            raise SchemaError(f"no upgrade from {name} v{version} to v{version + 1}")
        version += 1
        msg = build(lookup(name, version), step(to_plain(msg)))
    return msg


def build(cls: type, fields: Any) -> Any:
    plan = _PLANS.get(cls) or _plan(cls)
    if not isinstance(fields, dict):
        raise SchemaError(f"{plan.label}: body is {type(fields).__name__}, not a map")
    kwargs = {}
    direct = plan.direct
    for name, hint, fast, exact, default in plan.fields:
        value = fields.get(name, _ABSENT)
        if type(value) is exact:  # the plain case of str, int, float, bool, bytes: as it is
            kwargs[name] = value
        elif value is not _ABSENT:
            try:
                kwargs[name] = fast(value)
            except _Mismatch:  # not the plain case: check it the thorough way (or raise)
                kwargs[name] = _convert(hint, value, f"{plan.label}: {name}")
        elif default is _REQUIRED:
            raise SchemaError(f"{plan.label}: missing field {name!r}")
        elif direct:
            kwargs[name] = default() if type(default) is _Factory else default
    # Unknown keys are tolerated: a newer producer may have added optional fields.
    if direct:
        # What the generated __init__ would do, without its object.__setattr__ per field.
        msg = object.__new__(cls)
        object.__setattr__(msg, "__dict__", kwargs)
        return msg
    return cls(**kwargs)


_ABSENT: Any = object()
_REQUIRED: Any = object()


class _Factory:
    """A field's default_factory, told apart from a default value that is a callable."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]):
        self.make = make

    def __call__(self) -> Any:
        return self.make()


@dataclass(frozen=True)
class _Plan:
    """What build() needs of a class, worked out once.

    Per field (name, hint, fast converter, exact type or None, default): the exact type is
    the one a value of the plain case has (kept as it is); default is _REQUIRED, a value or
    a _Factory. `direct`: the instance can be made by filling its __dict__ (no __post_init__,
    no __slots__, every field an __init__ argument), in field order like __init__ does.
    """

    label: str
    fields: tuple[tuple[str, Any, Callable[[Any], Any], type | None, Any], ...]
    direct: bool


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    label = f"{cls.NAME} v{cls.VERSION}" if hasattr(cls, "NAME") else cls.__name__
    hints = _hints(cls)
    fields = tuple(
        (f.name, hints[f.name], _fast_converter(hints[f.name]),
         hints[f.name] if hints[f.name] in _PRIMITIVES else None, _default(f))
        for f in dataclasses.fields(cls)
    )
    direct = (not hasattr(cls, "__post_init__")
              and not any("__slots__" in vars(k) for k in cls.__mro__)
              and all(f.init for f in dataclasses.fields(cls)))
    plan = _PLANS[cls] = _Plan(label, fields, direct)
    return plan


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return _Factory(f.default_factory)
    return _REQUIRED


class _Mismatch(Exception):
    """A fast converter met a value off its plain path; _convert decides instead."""


def _fast_converter(tp: Any) -> Callable[[Any], Any]:
    """fn(value) returning what _convert(tp, value, ...) returns, for the common exact
    types (str, int, list[str], X | None, nested dataclasses...), or raising _Mismatch
    for anything else, which build() then hands to _convert: same result, same errors."""
    if tp is Any:
        return _identity
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            return _mismatch  # several alternatives: the order of trying them matters
        inner = _fast_converter(others[0])
        return lambda value: None if value is None else inner(value)
    if origin in (list, tuple):
        item = _fast_converter((args[:1] or (Any,))[0])
        if origin is tuple:
            return lambda value: (tuple([item(v) for v in value])
                                  if type(value) in (list, tuple) else _mismatch(value))
        return lambda value: ([item(v) for v in value]
                              if type(value) in (list, tuple) else _mismatch(value))
    if origin is dict:
        key, val = (_fast_converter(a) for a in (args or (Any, Any)))
        return lambda value: ({key(k): val(v) for k, v in value.items()}
                              if type(value) is dict else _mismatch(value))
    if origin is None and dataclasses.is_dataclass(tp):
        return partial(build, tp)
    if tp is float:
        return lambda value: (value if type(value) is float
                              else float(value) if type(value) is int else _mismatch(value))
    if tp in _PRIMITIVES:
        return lambda value: value if type(value) is tp else _mismatch(value)
    return _mismatch


def _identity(value: Any) -> Any:
    return value


def _mismatch(_value: Any) -> Any:
    raise _Mismatch


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints re-evaluates string annotations on every call; decoding is a hot path.
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_PRIMITIVES = {int: (int,), float: (float, int), str: (str,), bytes: (bytes,), bool: (bool,)}


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if errors else f"{where}: bad value")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        items = [_convert(item, v, f"{where}[]") for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected a map, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {
            _convert(key_tp, k, f"{where} key"): _convert(val_tp, v, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return build(tp, value)
    allowed = _PRIMITIVES.get(tp)
    if allowed is not None:
        if isinstance(value, bool) and tp is not bool:
            raise SchemaError(f"{where}: expected {tp.__name__}, got bool")
        if not isinstance(value, allowed):
            raise SchemaError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
        return float(value) if tp is float else value
    return value


__all__ = [
    "ClassVar",
    "SchemaError",
    "all_schemas",
    "build",
    "from_plain",
    "latest_version",
    "lookup",
    "message",
    "routing_key",
    "to_plain",
    "upgrader",
]
