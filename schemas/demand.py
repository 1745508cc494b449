"""Demand: what the schedd's queue needs, grouped into autoclusters.

    schedd ──demand.autoclusters──▶ burst.events ──▶ negotiator, frontend
    negotiator, frontend ──match.analysis──▶ burst.events ──▶ schedd (why idle jobs wait)

An autocluster is the set of idle jobs of one owner whose significant
attributes (Requirements, Rank, Request*, DESIRED_Sites) are equal, so
matchmaking and provisioning work per autocluster, never per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._base import ClassVar, message


@dataclass(frozen=True)
class AutoCluster:
    id: str
    owner: str
    ad: str  # ClassAd text holding the significant attributes
    idle: int
    running: int = 0
    desired_sites: str = ""  # comma list from +DESIRED_Sites, "" when unset
    # W3C traceparent of the submission of its oldest idle job: the frontend's decision to
    # ask for pilots and the negotiator's match for it are spans in that job's trace.
    traceparent: str = ""


@message
class DemandSnapshot:
    """The full demand of one schedd; each snapshot replaces the previous one."""

    NAME: ClassVar[str] = "demand.autoclusters"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    schedd: str
    seq: int
    autoclusters: list[AutoCluster]
    time: float = 0.0


@message
class MatchAnalysis:
    """Why autoclusters of a schedd cannot run; an id missing here is fine."""

    NAME: ClassVar[str] = "match.analysis"
    VERSION: ClassVar[int] = 1

    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    source: str  # "negotiator" or "frontend:<group>"
    schedd: str
    reasons: dict[str, str] = field(default_factory=dict)  # autocluster id -> reason
