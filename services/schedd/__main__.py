"""Run a schedd: `burst service schedd [--name NAME]` or `python -m services.schedd`."""

from __future__ import annotations

import sys

from services.runtime import service

from .handlers import Schedd
from .storage import open_store
from .store import Store


def _build(name, settings, pool, bus) -> Schedd:
    return Schedd(name, Store(settings.path("schedd", f"{name}.db")), bus,
                  spool_dir=settings.path("spool", name), private_dir=settings.state_dir,
                  claim_grace_s=pool.services.claim_grace_s,
                  periodic_interval_s=pool.services.periodic_interval_s,
                  storage=open_store(pool.storage, settings, name), files=pool.storage)


command = service.named_command(
    "schedd", _build,
    help="Keep one job queue (BURST_STATE_DIR/schedd/NAME.db): submissions, job states, "
         "claims on pilots, output files.")

main = service.main_for(command)


if __name__ == "__main__":
    sys.exit(main())
