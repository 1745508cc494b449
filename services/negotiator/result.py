"""What a pass decided: runs of claims per autocluster, reasons for what still waits.

    NegotiationResult.runs ──matches / offers()──▶ one Claim per job, made when asked for

A pass records its claims as runs ("these pilots take k jobs each"); the
claims themselves, each with a fresh random id, are made once, when the
offers are sent or `matches` is read: a pass over a million jobs decides in a
few hundred thousand runs, and the ids are capabilities nobody needs before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from schemas.demand import MatchAnalysis
from schemas.slot import Claim, MatchOffer
from services.condor.claims import new_claim_id

from .jobs import Resources
from .matcher import Run

AcKey = tuple[str, str]  # (schedd, autocluster id)


@dataclass(frozen=True)
class NegotiationResult:
    runs: dict[AcKey, list[Run]]  # only autoclusters that got claims
    requests: dict[AcKey, Resources]  # what each of their jobs takes from a slot
    reasons: dict[AcKey, str]  # autoclusters left idle with no match at all
    owners: dict[AcKey, str]  # every autocluster with idle jobs in the pass
    schedds: tuple[str, ...]  # every schedd whose demand the pass saw
    cpus_by_owner: dict[str, int]  # cpus matched this pass, per fair-share principal
    cpus_by_group: dict[str, int]  # the same per accounting group ("<none>": no group)
    priorities: dict[str, float]  # the priorities the pass used
    evaluations: int  # classad2 symmetric matches run
    slot_classes: int  # classes of slots the pass started from
    claim_prefix: str
    slots: dict  # pilot id -> its SlotRecord when the pass ran: where the claims are

    @property
    def match_count(self) -> int:
        return sum(len(pilots) * per for runs in self.runs.values() for pilots, per, _ in runs)

    @cached_property
    def matches(self) -> dict[AcKey, list[Claim]]:
        return {key: self._claims(key, runs) for key, runs in self.runs.items()}

    def offers(self, cycle: int = 0) -> list[MatchOffer]:
        return [
            MatchOffer(schedd=schedd, autocluster=ac, owner=self.owners[(schedd, ac)],
                       claims=claims, cycle=cycle)
            for (schedd, ac), claims in self.matches.items()
        ]

    def analyses(self, source: str = "negotiator") -> list[MatchAnalysis]:
        """One per schedd in the pass, so reasons that no longer hold get cleared."""
        by_schedd: dict[str, dict[str, str]] = {schedd: {} for schedd in self.schedds}
        for (schedd, ac), reason in self.reasons.items():
            by_schedd[schedd][ac] = reason
        return [MatchAnalysis(source=source, schedd=s, reasons=r) for s, r in by_schedd.items()]

    def _claims(self, key: AcKey, runs: list[Run]) -> list[Claim]:
        request = self.requests[key]
        cpus, memory_mb, disk_mb = request
        claims = []
        for pilots, per, first in runs:
            number = first
            for pilot_id in pilots:
                slot = self.slots[pilot_id]
                entry, site, provider = slot.where
                for _ in range(per):
                    number += 1  # claims count from 1 in a pass, as they were made
                    claims.append(Claim(
                        claim_id=new_claim_id(f"{self.claim_prefix}.{number}"),
                        pilot_id=pilot_id, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb,
                        entry=entry, site=site, provider=provider,
                        # What was carved, named as the slot names it (Boats, not boats).
                        resources={slot.spelled(name): amount
                                   for name, amount in request.custom}))
        return claims
