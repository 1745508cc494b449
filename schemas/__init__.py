"""Message schemas: one module per entity, each message a frozen dataclass.

Importing this package registers every schema. See `_base` for the rules.
"""

from . import cloud, deadletter, demand, job, pilot, provisioning, slot, token  # noqa: F401
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
