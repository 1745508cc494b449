"""Files that travel beside messages, through object storage or from a URL.

    burst submit ──PUT (presigned)──▶ bucket ◀──GET (presigned)── pilot ──PUT──▶ bucket
         │ job.submit: StoredFile per name                 ▲          job.report: StoredOutput
         ▼                                                 │ claim.activate: FileFetch,
       schedd ── presigns, per job, with the storage keys ─┘ upload URLs by slot

Messages carry only what a file is (its sha256 and size) and where to get or put
it; a file's content rides in a message only when it is small (inline).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredFile:
    """An input file `burst submit` put in object storage: its content's sha256 (hex), size."""

    sha256: str
    size: int


@dataclass(frozen=True)
class FileFetch:
    """A file the pilot fetches into the job's scratch directory before the job starts."""

    name: str  # in the scratch directory
    url: str  # http(s) URL, or a presigned GET: a capability, never shown in events or logs
    source: str  # what a hold reason names: the user's URL, or the input file's name
    sha256: str = ""  # expected (hex); "" = none given
    size: int = -1  # expected; -1 = unknown (then the claim's fetch_max_bytes caps it)


@dataclass(frozen=True)
class StoredOutput:
    """A file a pilot put through one of the claim's upload URLs."""

    slot: str  # the key of ClaimActivate.uploads it used
    sha256: str
    size: int
