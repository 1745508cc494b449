"""Boot tokens the metadata service refused (services/metadata/).

    VM ──POST /v1/boot (token)──▶ metadata ──token.refused──▶ burst.events ──▶ burst events, web

One event per refused exchange: a reused token (someone replayed leaked user
data, or a pilot booted twice), an expired or forged one, a token of another
pool, or one presented by another instance than the one launched with it. The
token itself is never in the event: only what it claims about its pilot.
"""

from __future__ import annotations

from ._base import ClassVar, message


@message
class TokenRefused:
    NAME: ClassVar[str] = "token.refused"
    VERSION: ClassVar[int] = 1
    SENDERS: ClassVar[tuple[str, ...]] = ("service",)
    pilot_id: str  # as the token claims (unverified when the token is forged or malformed)
    entry: str
    reason: str  # one line: "token already used", "token expired", ...
    instance_id: str = ""  # the instance the caller said it is
    peer: str = ""  # the caller's address
    time: float = 0.0
