"""Run the negotiator: `burst service negotiator` or `python -m services.negotiator`."""

from __future__ import annotations

import sys

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Negotiator


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    return service.run("negotiator", lambda s, bus: Negotiator(pool, bus), settings=settings)


if __name__ == "__main__":
    sys.exit(main())
