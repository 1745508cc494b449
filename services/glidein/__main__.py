"""Run one pilot: `python -m services.glidein [--context FILE]` (the factory starts these)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from services.condor.pilot import PilotContext
from services.runtime import security, service, tracing

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
    # Spans from the start: a VM's boot exchange is one, before it knows its state dir.
    tracing.setup("glidein")
    tracing.export(None)
    try:
        ctx = load(context)
    except ContextError as exc:
        print(f"burst glidein: bad pilot context: {exc}", file=sys.stderr)
        return EXIT_BAD_CONTEXT
    guard_key_file(str(ctx.key_file) if ctx.key_file else None)
    try:
        signer = pilot_signer(ctx)
    except security.AuthError as exc:
        print(f"burst glidein: {exc}", file=sys.stderr)
        return EXIT_BAD_CONTEXT
    return service.run("glidein", lambda _settings, bus: Glidein(ctx, bus),
                       settings=ctx.settings(), instance=f"pilot-{ctx.pilot_id}",
                       trust={"signer": signer}, serve_metrics=False)


def pilot_signer(ctx: PilotContext) -> security.Signer:
    """The pilot's own key (given by its factory; never the pool key): it signs what the pilot
    publishes and opens what is sealed for it."""
    where, text = "BURST_PILOT_KEY", ctx.key_hex
    if not text:
        if ctx.key_file is None:
            raise security.AuthError("no pilot key: neither BURST_PILOT_KEY_FILE nor "
                                     "BURST_PILOT_KEY is set (the factory gives every pilot one)")
        where = str(ctx.key_file)
        try:
            text = ctx.key_file.read_text()
        except OSError as exc:
            raise security.AuthError(f"{where}: cannot read the pilot key ({exc.strerror})"
                                     ) from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != security.KEY_BYTES:
        raise security.AuthError(f"{where}: not a pilot key ({security.KEY_BYTES * 2} hex digits)")
    return security.Signer(security.pilot(ctx.pilot_id), key)


main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
