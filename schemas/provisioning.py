"""Provisioning: frontend requests and factory entries.

    factory ──entry.advertised──▶ burst.events ──▶ frontend, status
    frontend ──glidein.request──▶ factory               (command, per entry)

An entry ad carries the advertising factory's public key; the frontend seals the
group's credential for the entry's trust domain to it and puts the box in the
request, so no credential is ever readable on the bus.

glidein.request v1 carried `remove_excess` as a bool; v2 carries the
GlideinWMS mode string (NO, WAIT, IDLE, ALL). v1 bodies are upgraded: true
becomes IDLE (remove idle pilots only), false becomes NO.
"""

from __future__ import annotations

from dataclasses import field

from ._base import ClassVar, message, upgrader

REMOVE_EXCESS_MODES = ("NO", "WAIT", "IDLE", "ALL")


@message
class GlideinRequestV1:
    NAME: ClassVar[str] = "glidein.request"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    frontend: str
    group: str
    entry: str
    idle_target: int
    max_glideins: int
    remove_excess: bool
    idle_lifetime_s: float = 0.0
    seq: int = 0
    time: float = 0.0


@message
class GlideinRequest:
    NAME: ClassVar[str] = "glidein.request"
    VERSION: ClassVar[int] = 2
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    frontend: str
    group: str
    entry: str
    idle_target: int  # pilots wanted waiting (pending or unclaimed) at this entry
    max_glideins: int  # ceiling on all pilots of this group at this entry
    remove_excess: str  # NO | WAIT | IDLE | ALL
    idle_lifetime_s: float = 0.0  # 0: the entry's default
    # "<trust domain>@<factory>" -> the group's credential for the entry's trust domain,
    # sealed to that factory's public key (services/runtime/sealing.py): one box per factory
    # advertising the entry, since any of them may be the one consuming the request.
    credentials: dict[str, bytes] = field(default_factory=dict)
    seq: int = 0
    time: float = 0.0


@upgrader("glidein.request", 1)
def _request_v1_to_v2(fields: dict) -> dict:
    fields = dict(fields)
    fields["remove_excess"] = "IDLE" if fields.pop("remove_excess") else "NO"
    return fields


@message
class EntryAdvertised:
    """An entry as its factory sees it now: configuration and pilot counts."""

    NAME: ClassVar[str] = "entry.advertised"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    entry: str
    site: str
    driver: str
    provider: str
    factory: str
    ad: str  # the slot ad a pilot of this entry will advertise (for frontend matching)
    endpoint: str = ""
    trust_domain: str = ""
    cpus: int = 1
    memory_mb: int = 1024
    disk_mb: int = 1024
    pilots: dict[str, int] = field(default_factory=dict)  # state -> count
    max_pilots: int = 0
    time: float = 0.0
    clients: dict[str, dict[str, int]] = field(default_factory=dict)  # client -> state -> count
    credential: str = ""  # the kind of credential the entry needs (none, ec2-keypair, ...)
    sealing_key: str = ""  # the factory's X25519 public key (hex): credentials are sealed to it
