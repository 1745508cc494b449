"""The CLI's one door into other service packages: running their entry points here.

    burst service NAME     ─▶ launch(NAME)                  ─▶ services.NAME.__main__.main(args)
    burst bench negotiate  ─▶ launch("negotiator", "bench") ─▶ services.negotiator.bench.run()

Starting a service in this process is launching it, not depending on it: the
CLI uses nothing of the module but its entry point, and services otherwise
never import each other (tests/unit/test_import_graph.py allows exactly this
function). What the CLI shares with services about HTCondor comes from
services.condor.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ENTRY_POINTS = ("__main__", "bench")


def launch(service: str, entry_point: str = "__main__") -> ModuleType:
    if entry_point not in ENTRY_POINTS:
        raise ValueError(f"{entry_point!r} is not an entry point; one of {ENTRY_POINTS}")
    return importlib.import_module(f"services.{service}.{entry_point}")
