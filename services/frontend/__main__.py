"""Run a frontend: `burst service frontend [--name NAME]` or `python -m services.frontend`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Frontend


def main(argv: list[str] | None = None) -> int:
    return service.run_named("frontend", argv,
                             lambda name, _settings, pool, bus: Frontend(name, pool, bus))


if __name__ == "__main__":
    sys.exit(main())
