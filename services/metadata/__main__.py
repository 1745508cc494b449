"""Run the metadata service: `burst service metadata [--host H] [--port N]` or
`python -m services.metadata`."""

from __future__ import annotations

import sys

import click

from services.runtime import httpserve, service
from services.runtime.config import Settings

from .handlers import MetadataBroker
from .server import BootHandler, MetadataServer


@click.command("metadata", context_settings=service.HELP,
               help="Exchange the boot tokens in cloud pilots' user data for their "
                    "configuration and key, each token once.")
@click.option("--host", default=None, metavar="ADDR",
              help="listen address (default: [services] metadata_host of BURST_CONFIG)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="N",
              help="port (default: [services] metadata_port; 0 takes any free port)")
def command(host: str | None, port: int | None) -> int:
    settings = Settings.from_env()
    pool = service.pool_config(settings)
    host = pool.services.metadata_host if host is None else host
    port = pool.services.metadata_port if port is None else port
    server = httpserve.listen(MetadataServer, BootHandler, host, port, "metadata_port")
    return service.run("metadata", lambda s, bus: MetadataBroker(s, pool, bus, server),
                       settings=settings)


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
