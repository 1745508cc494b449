"""`burst trace ID`: a job's provisioning flow as a span tree, from the local span store.

    trace 4bf92f35…  job 12.0: 23 spans over 9.41 s
       +0.000s     12.4 ms  schedd      handle job.submit
       +0.512s      3.0 ms  frontend      decide: request pilots  entry=e1 new_pilots=1
       ...

Offsets are from the trace's first span, durations each span's own; children are indented
under their parent. `--json` prints {"trace_id", "job", "spans": [...]} with every span's
ids, parent, service, start (epoch seconds), duration_ms, status, attributes and links.
"""

from __future__ import annotations

import json

import click

from services.runtime.spanstore import StoredSpan, tree

# Attributes worth a place on a span's line (the rest are in --json).
SHOWN = ("burst.job", "burst.cluster", "burst.entry", "burst.pilot", "burst.new_pilots",
         "burst.autocluster", "burst.claims", "burst.state", "burst.exit_code", "rpc.method",
         "http.response.status_code")


def as_json(trace_id: str, job_id: str, spans: list[StoredSpan]) -> str:
    return json.dumps({"trace_id": trace_id, "job": job_id,
                       "spans": [span.as_json() for span in spans]})


def print_tree(trace_id: str, job_id: str, spans: list[StoredSpan]) -> None:
    origin = min(span.start for span in spans)
    end = max(span.start + span.duration_ms / 1000 for span in spans)
    services = sorted({span.service for span in spans})
    click.echo(f"trace {trace_id}  job {job_id}: {len(spans)} spans over {end - origin:.2f} s "
               f"({', '.join(services)})")
    for depth, span in tree(spans):
        extra = " ".join(f"{key.removeprefix('burst.')}={span.attributes[key]}"
                         for key in SHOWN if key in span.attributes and key != "burst.job")
        status = "  ERROR" if span.status == "ERROR" else ""
        links = f"  (linked to {len(span.links)} other)" if span.links else ""
        click.echo(f"  +{span.start - origin:8.3f}s {span.duration_ms:10.1f} ms  "
                   f"{span.service:<10} {'  ' * depth}{span.name}"
                   f"{'  ' + extra if extra else ''}{status}{links}")
