"""Which events a reader wants: the filters of `burst events` and of the dashboard's
/api/events, one definition for both.

    --entity job --entity pilot   any of these  (OR within one filter)
    --entry e1 --owner alice      all of these  (AND across filters)

An event without the field a filter asks about (a pilot event has no owner) does
not match that filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

FILTER_NAMES = ("entity", "entry", "job", "owner", "key")


@dataclass(frozen=True)
class EventFilter:
    entities: tuple[str, ...] = ()  # the first word of the routing key: job, pilot, slot, ...
    entries: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()  # "12.3" or a whole cluster "12"
    owners: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # fnmatch globs over the routing key, e.g. "pilot.*"

    @classmethod
    def of(cls, entity: Iterable[str] = (), entry: Iterable[str] = (), job: Iterable[str] = (),
           owner: Iterable[str] = (), key: Iterable[str] = ()) -> EventFilter:
        return cls(tuple(entity), tuple(entry), tuple(job), tuple(owner), tuple(key))

    @classmethod
    def from_query(cls, query: Mapping[str, list[str]]) -> EventFilter:
        """From URL query parameters (?entity=job&entry=e1), as parse_qs gives them."""
        return cls.of(**{name: query.get(name, []) for name in FILTER_NAMES})

    def __bool__(self) -> bool:
        return any((self.entities, self.entries, self.jobs, self.owners, self.keys))

    @property
    def needs_fields(self) -> bool:
        """Whether matching needs the decoded event, not just its routing key."""
        return bool(self.entries or self.jobs or self.owners)

    def matches(self, routing_key: str, event: Any) -> bool:
        if self.entities and routing_key.split(".", 1)[0] not in self.entities:
            return False
        if self.keys and not any(fnmatchcase(routing_key, glob) for glob in self.keys):
            return False
        if not self.needs_fields:
            return True
        if event is None:
            return False
        if self.entries and getattr(event, "entry", None) not in self.entries:
            return False
        if self.owners and getattr(event, "owner", None) not in self.owners:
            return False
        return not self.jobs or any(self._names_job(event, wanted) for wanted in self.jobs)

    @staticmethod
    def _names_job(event: Any, wanted: str) -> bool:
        ids = list(getattr(event, "jobs", None) or [])  # job.submitted: the whole cluster
        if getattr(event, "job_id", None):
            ids.append(event.job_id)
        return any(job_id == wanted or job_id.startswith(f"{wanted}.") for job_id in ids)
