"""Run the negotiator: `burst service negotiator` or `python -m services.negotiator`."""

from __future__ import annotations

import argparse
import sys

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Negotiator


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="burst service negotiator",
        description="Matchmaking for the pool of BURST_NAMESPACE; configured by BURST_CONFIG "
                    "[services] negotiator_interval_s and negotiator_half_life_s.",
    ).parse_args(argv)
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    return service.run("negotiator", lambda s, bus: Negotiator(pool, bus), settings=settings)


if __name__ == "__main__":
    sys.exit(main())
