"""Run the embedded cloud: `burst service cloud [--port N]` or `python -m services.cloud`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click
from prometheus_client import REGISTRY

from services.runtime import service
from services.runtime.config import ConfigError, Settings

EXIT_UNAVAILABLE = 3


@click.command(name="burst service cloud")
@click.option("--port", type=int, default=None,
              help="EC2/S3 endpoint port (default: [services] cloud_port; 0 = any free port)")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="listen address (0.0.0.0 in a container: factories elsewhere reach it, "
                   "with BURST_CLOUD_ENDPOINT set to its URL)")
def command(port: int | None, host: str) -> None:
    """The embedded cloud: an EC2/S3 endpoint (moto) and a VM host booting glideins."""
    from .embedded import EmbeddedCloud
    from .gauges import CloudGauges

    service.setup_logging("cloud")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per API call
    log = logging.getLogger("burst.cloud")
    try:
        settings = Settings.from_env()
        cloud = EmbeddedCloud(settings, service.pool_config(settings), port=port, host=host)
        served = service.start_metrics(settings, "cloud")
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the port is taken
        click.echo(f"burst service cloud: cannot listen: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    REGISTRY.register(CloudGauges(cloud.vmhost))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    cloud.start()
    pid_path = service.pid_file(settings, "cloud")
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(f"{os.getpid()}\n")
    try:
        done.wait()
    finally:
        log.info("event=service_stopping service=cloud")
        cloud.stop()
        served.close()
        if pid_path.exists() and pid_path.read_text().strip() == str(os.getpid()):
            pid_path.unlink()


def main(argv: list[str] | None = None) -> int:
    return command.main(args=argv, prog_name="burst service cloud", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
