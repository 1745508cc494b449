"""Run the dashboard: `burst service web [--host H] [--port N] [--since T]` or
`python -m services.web`."""

from __future__ import annotations

import sys

import click

from services.runtime import httpserve, service
from services.runtime.config import Settings
from services.views.since import parse_since

from .dashboard import Dashboard, DashboardServer
from .handlers import Handler


@click.command("web", context_settings=service.HELP,
               help="Serve the live dashboard and its JSON/SSE API, folded from the event log.")
@click.option("--host", default=None, metavar="ADDR",
              help="listen address (default: [services] web_host of BURST_CONFIG)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="N",
              help="port (default: [services] web_port; 0 takes any free port)")
@click.option("--since", default="24h", show_default=True, metavar="T",
              help="fold events from this time (epoch, ISO time, or an age like 6h)")
def command(host: str | None, port: int | None, since: str) -> int:
    settings = Settings.from_env()
    timers = service.pool_config(settings).services
    host = timers.web_host if host is None else host
    port = timers.web_port if port is None else port
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    server = httpserve.listen(DashboardServer, Handler, host, port, "web_port")
    return service.run("web", lambda s, bus: Dashboard(s, bus, server, start),
                       settings=settings)


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
