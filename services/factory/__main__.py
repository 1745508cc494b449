"""Run a factory: `burst service factory [--name NAME]` or `python -m services.factory`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Factory


def main(argv: list[str] | None = None) -> int:
    return service.run_named("factory", argv, Factory)


if __name__ == "__main__":
    sys.exit(main())
