"""Run one pilot: `python -m services.glidein [--context FILE]` (the factory starts these)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from services.runtime import security, service

from .context import ContextError, load
from .handlers import Glidein

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
    try:
        signer = pilot_signer(ctx.pilot_id, os.environ)
    except security.AuthError as exc:
        print(f"burst glidein: {exc}", file=sys.stderr)
        return EXIT_BAD_CONTEXT
    return service.run("glidein", lambda _settings, bus: Glidein(ctx, bus),
                       settings=ctx.settings(), instance=f"pilot-{ctx.pilot_id}",
                       trust={"signer": signer})


def pilot_signer(pilot_id: str, env: Mapping[str, str]) -> security.Signer:
    """The pilot's own key (given by its factory; never the pool key): it signs what the pilot
    publishes and opens what is sealed for it."""
    path = env.get("BURST_PILOT_KEY_FILE")
    if not path:
        raise security.AuthError("no pilot key: BURST_PILOT_KEY_FILE is not set (the factory "
                                 "gives every pilot one)")
    try:
        key = bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError) as exc:
        raise security.AuthError(f"{path}: cannot read the pilot key ({exc})") from None
    if len(key) != security.KEY_BYTES:
        raise security.AuthError(f"{path}: not a pilot key")
    return security.Signer(security.pilot(pilot_id), key)


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
