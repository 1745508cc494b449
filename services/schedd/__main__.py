"""Run a schedd: `burst service schedd [--name NAME]` or `python -m services.schedd`."""

from __future__ import annotations

import argparse
import sys

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Schedd
from .store import Store


def build(name: str):
    def make(settings: Settings, bus) -> Schedd:
        store = Store(settings.path("schedd", f"{name}.db"))
        return Schedd(name, store, bus)

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="burst service schedd")
    parser.add_argument("--name", default=None, help="schedd name (default from config)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    name = args.name or service.pool_config(settings).services.schedd_name
    instance = "schedd" if name == "schedd" else f"schedd-{name}"
    return service.run("schedd", build(name), settings=settings, instance=instance)


if __name__ == "__main__":
    sys.exit(main())
