"""Run one pilot: `python -m services.glidein [--context FILE]` (the factory starts these)."""

from __future__ import annotations

import argparse
import sys

from services.runtime import service

from .context import ContextError, load
from .handlers import Glidein

EXIT_BAD_CONTEXT = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="burst service glidein")
    parser.add_argument("--context", metavar="FILE", default=None,
                        help="JSON context file (keys as BURST_* variables, lower case, "
                             "without BURST_); overrides the environment")
    args = parser.parse_args(argv)
    try:
        ctx = load(args.context)
    except ContextError as exc:
        print(f"burst glidein: bad pilot context: {exc}", file=sys.stderr)
        return EXIT_BAD_CONTEXT
    return service.run("glidein", lambda _settings, bus: Glidein(ctx, bus),
                       settings=ctx.settings(), instance=f"pilot-{ctx.pilot_id}")


if __name__ == "__main__":
    sys.exit(main())
