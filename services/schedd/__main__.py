"""Run a schedd: `burst service schedd [--name NAME]` or `python -m services.schedd`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Schedd
from .store import Store


def main(argv: list[str] | None = None) -> int:
    def build(name, settings, _pool, bus) -> Schedd:
        return Schedd(name, Store(settings.path("schedd", f"{name}.db")), bus)

    return service.run_named("schedd", argv, build)


if __name__ == "__main__":
    sys.exit(main())
