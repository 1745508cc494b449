"""Run a frontend: `burst service frontend [--name NAME]` or `python -m services.frontend`."""

from __future__ import annotations

import argparse
import sys

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Frontend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="burst service frontend")
    parser.add_argument("--name", default=None, help="frontend name (default from config)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    name = args.name or pool.services.frontend_name
    instance = "frontend" if name == pool.services.frontend_name else f"frontend-{name}"
    return service.run("frontend", lambda s, bus: Frontend(name, pool, bus),
                       settings=settings, instance=instance)


if __name__ == "__main__":
    sys.exit(main())
