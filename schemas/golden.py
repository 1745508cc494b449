"""Golden samples: one msgpack body per schema version, kept in schemas/golden/.

    python -m schemas.golden          # write samples that are missing
    python -m schemas.golden --check  # fail if one is missing

A sample is written once and never rewritten: it stands for the bytes that
producers of that version put on the wire, so decoding it must keep working
for as long as the version is supported. The sample's content is a
deterministic example built from the field types (see `example`).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from . import all_schemas, encode

GOLDEN_DIR = Path(__file__).parent / "golden"


def sample_path(cls: type) -> Path:
    return GOLDEN_DIR / f"{cls.NAME}.v{cls.VERSION}.msgpack"


def example(cls: type) -> Any:
    """A deterministic instance of `cls` with every field set."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _value(hints[f.name], f.name) for f in dataclasses.fields(cls)})


def _value(tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in typing.get_args(tp) if a is not type(None)), name)
    if origin in (list, tuple):
        return [_value(typing.get_args(tp)[0], name)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        return {_value(key_tp, f"{name}-key"): _value(val_tp, name)}
    if dataclasses.is_dataclass(tp):
        return example(tp)
    if name == "remove_excess" and tp is str:
        return "IDLE"
    return {str: f"example-{name}", int: 7, float: 1.5, bool: True,
            bytes: f"bytes-{name}".encode()}.get(tp)


def write_missing() -> list[Path]:
    GOLDEN_DIR.mkdir(exist_ok=True)
    written = []
    for cls in all_schemas():
        path = sample_path(cls)
        if not path.exists():
            path.write_bytes(encode(example(cls)))
            written.append(path)
    return written


def missing() -> list[Path]:
    return [sample_path(cls) for cls in all_schemas() if not sample_path(cls).exists()]


if __name__ == "__main__":
    if "--check" in sys.argv:
        absent = missing()
        for path in absent:
            print(f"missing golden sample: {path}")
        sys.exit(1 if absent else 0)
    for path in write_missing():
        print(f"wrote {path}")
