"""`burst submit --dry-run FILE [--json]`: the job ads a submit file would queue, queued nowhere.

    jobs.sub ──services/condor/submit.py (cluster 1, as condor_submit -dry-run)──▶ ads
        │                                                                          │
        └── warnings (commands the pool does not serve) ──▶ stderr      stdout ◀───┘
                                              text: each ad in HTCondor's long form, then
                                              "N job(s) dry-run to cluster 1."
                                              --json: a JSON list of the ads (classad2's JSON)

No broker, no service and no token: the owner is --owner, else the login name.
`print_warnings` is also what a real `burst submit` uses to show its warnings.
"""

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path

import click

from services.condor.submit import Submission, SubmitError, read_submit_file

DRY_RUN_CLUSTER = 1  # condor_submit -dry-run's cluster id


def run(file: Path, *, as_json: bool, owner: str | None) -> None:
    """Print what `burst submit FILE` would queue; exit 1 with one line on a bad file."""
    try:
        submission = read_submit_file(file, cluster=DRY_RUN_CLUSTER,
                                      owner=owner or getpass.getuser(),
                                      submit_host=socket.gethostname())
    except SubmitError as err:
        click.echo(f"burst: {err}", err=True)
        sys.exit(1)
    print_warnings(submission)
    ads = [spec.ad for spec in submission.jobs]
    if as_json:
        # classad2's own JSON ("\/Expr(...)\/" for expressions), joined into one list.
        click.echo("[\n" + ",\n".join(ad.printJson().strip() for ad in ads) + "\n]")
        return
    for ad in ads:
        click.echo(ad.printOld().strip() + "\n")
    click.echo(f"{len(ads)} job(s) dry-run to cluster {DRY_RUN_CLUSTER}.")


def check(file: Path, *, owner: str) -> None:
    """Read the file before a cluster id is taken: raise SubmitError, or print its warnings."""
    print_warnings(read_submit_file(file, cluster=DRY_RUN_CLUSTER, owner=owner))


def print_warnings(submission: Submission) -> None:
    for warning in submission.warnings:
        click.echo(f"burst: warning: {warning}", err=True)
