"""Message schemas: one module per entity, each message a frozen dataclass.

Importing this package registers every schema. See `_base` for the rules.
"""

from . import demand, job, pilot, provisioning, slot  # noqa: F401  (registration)
from ._base import (
    SchemaError,
    all_schemas,
    decode,
    encode,
    from_plain,
    latest_version,
    lookup,
    routing_key,
    to_plain,
)

__all__ = [
    "SchemaError",
    "all_schemas",
    "decode",
    "encode",
    "from_plain",
    "latest_version",
    "lookup",
    "routing_key",
    "to_plain",
]
