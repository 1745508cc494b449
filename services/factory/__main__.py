"""Run a factory: `burst service factory [--name NAME]` or `python -m services.factory`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Factory

command = service.named_command(
    "factory", Factory,
    help="Launch the pilots the frontends ask for at the entries of BURST_CONFIG, and watch "
         "them until they leave. Several factories share the entries.")

main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
