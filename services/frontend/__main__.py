"""Run a frontend: `burst service frontend [--name NAME]` or `python -m services.frontend`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Frontend

command = service.named_command(
    "frontend", lambda name, _settings, pool, bus: Frontend(name, pool, bus),
    help="Turn the schedds' idle demand into pilot requests per frontend group and entry "
         "([[group]] tables of BURST_CONFIG).")

main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
