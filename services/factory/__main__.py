"""Run a factory: `burst service factory [--name NAME]` or `python -m services.factory`."""

from __future__ import annotations

import argparse
import sys

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="burst service factory")
    parser.add_argument("--name", default=None, help="factory name (default from config)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    name = args.name or pool.services.factory_name
    instance = "factory" if name == pool.services.factory_name else f"factory-{name}"
    return service.run("factory", lambda s, bus: Factory(name, s, pool, bus),
                       settings=settings, instance=instance)


if __name__ == "__main__":
    sys.exit(main())
