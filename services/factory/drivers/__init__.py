"""Drivers: how a factory starts, lists and stops pilots at one kind of resource.

    factory ──launch(spec)──▶ driver ──▶ a process / a VM that runs a glidein
    factory ──instances()───▶ driver ──▶ what is really there (rebuilds state)
    factory ──terminate(id)─▶ driver
    factory ──flush()───────▶ driver  (optional: drivers that batch terminations send them)

`launch` must be idempotent per pilot id: a factory that crashed after asking
for a pilot and restarted asks again, and must not get a second one.
A driver whose pilots boot from user data sets `boot_token = True`: the
factory then gives each launch a boot token and the metadata service's URL
instead of relying on the context (which such pilots never see). A driver
that acts with a group's credential may have `credential_arrived(secret)`,
returning True when it can now see VMs it could not before, and `blind`,
true while it has no credential to look with (the factory then neither
adopts nor reconciles that entry: nothing listed would not mean nothing there).
`instances` reports each pilot's resource as running (pending counts), stopped
(shut down but still holding a VM: the factory terminates it) or gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class LaunchSpec:
    pilot_id: str
    entry: str
    group: str  # the client (frontend.group) the pilot is launched for
    context: dict[str, str] = field(default_factory=dict)  # the glidein's BURST_* context
    factory: str = ""  # the factory that launches it (cloud drivers tag VMs with it)
    # The pilot's own key (security.py), for this pilot alone: never logged, never in an event.
    pilot_key: bytes = field(default=b"", repr=False)
    # Cloud pilots: a single-use boot token (runtime/bootstrap.py) and where to exchange it.
    boot_token: str = field(default="", repr=False)
    metadata_url: str = ""
    # The group's credential for the entry's trust domain, opened from its request.
    credential: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Instance:
    pilot_id: str
    entry: str
    group: str
    instance_id: str
    state: str  # running | stopped | gone
    launched_at: float


class Driver(Protocol):
    name: str

    def launch(self, spec: LaunchSpec) -> Instance: ...

    def instances(self, entry: str) -> list[Instance]: ...

    def terminate(self, pilot_id: str) -> None: ...


def make_driver(kind: str, settings, entry, emit=None) -> Driver:
    """The driver of an entry; `emit` publishes its events (cloud.call_failed)."""
    if kind == "local":
        from .local import LocalDriver

        return LocalDriver(settings.path("pilots"))
    if kind == "ec2":
        from .ec2 import EC2Driver

        return EC2Driver(entry, settings, emit=emit)
    raise ValueError(f"entry {entry.name}: driver {kind!r} is not available yet")
