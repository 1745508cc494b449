"""Views of the pool folded from its event stream, shared by `burst status`, `burst events`,
the `web` dashboard and the demo's plot. No service: nothing here talks to the bus.

    event log ──▶ stream.replay_then_follow ──▶ timeline.Timeline.apply
                                                  ├─ pool.PoolView   (the collector view now)
                                                  ├─ Series          (counts over time)
                                                  └─ feed, events per job (records.py)
    filters.EventFilter: which events a reader wants (CLI flags, dashboard query)
"""

from .filters import EventFilter
from .pool import JobView, PilotView, PoolView
from .timeline import Point, Series, Timeline

__all__ = ["EventFilter", "JobView", "PilotView", "Point", "PoolView", "Series", "Timeline"]
