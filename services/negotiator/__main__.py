"""Run the negotiator: `burst service negotiator` or `python -m services.negotiator`."""

from __future__ import annotations

import sys

import click

from services.runtime import service
from services.runtime.config import Settings

from .handlers import Negotiator


@click.command("negotiator", context_settings=service.HELP)
def command() -> int:
    """Matchmaking for the pool of BURST_NAMESPACE; configured by BURST_CONFIG [services]
    negotiator_interval_s and negotiator_half_life_s."""
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    return service.run("negotiator", lambda s, bus: Negotiator(pool, bus), settings=settings)


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
