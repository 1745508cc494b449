"""Run one pilot: `python -m services.glidein [--context FILE]` (the factory starts these)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from services.runtime import service

from .context import ContextError, load
from .handlers import Glidein
from .isolation import guard_key_file

EXIT_BAD_CONTEXT = 2


@click.command("glidein", context_settings=service.HELP)
@click.option("--context", metavar="FILE", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="JSON context file (keys as BURST_* variables, lower case, without "
                   "BURST_); overrides the environment")
def command(context: Path | None) -> int:
    """One pilot: register, advertise a slot, run the jobs matched to it, retire when idle."""
    try:
        ctx = load(context)
    except ContextError as exc:
        print(f"burst glidein: bad pilot context: {exc}", file=sys.stderr)
        return EXIT_BAD_CONTEXT
    guard_key_file(os.environ.get("BURST_PILOT_KEY_FILE"))
    return service.run("glidein", lambda _settings, bus: Glidein(ctx, bus),
                       settings=ctx.settings(), instance=f"pilot-{ctx.pilot_id}")


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
