"""The metadata service's decisions, pure: whether a boot token may be exchanged, and for what.

    claims (MAC checked) ─┐
    pool, entries, now ───┼─▶ refusal() ─▶ None, or the one-line reason a 403 carries
    instance launched ────┘
    entry, claims, keys ────▶ boot_context() ─▶ the BURST_* variables the pilot gets

What is checked, in order: the pool (a token of another namespace), the entry (one this
pool configures), the expiry, and the instance: the caller says which instance it is (from
its IMDS, config drive or context disk); where the factory's pilot.launched told us which
instance was launched with this token, another instance is refused. None of these consume
the token, so a thief with the wrong instance id cannot burn the real pilot's token. Use
is checked last, atomically, by the store (store.py).
"""

from __future__ import annotations

from services.condor.pilot import pilot_environment
from services.runtime.bootstrap import BootClaims
from services.runtime.config import EntryConfig, Settings

ALREADY_USED = "token already used"


def refusal(claims: BootClaims, *, pool: str, entries: set[str], now: float, instance_id: str,
            launched_instance: str | None) -> str | None:
    if claims.pool != pool:
        return "token of another pool"
    if claims.entry not in entries:
        return f"token for an entry this pool does not have ({claims.entry})"
    if claims.expired(now):
        return f"token expired {now - claims.expires:.0f} s ago"
    if launched_instance and instance_id != launched_instance:
        return "instance id does not match the instance launched with this token"
    return None


def boot_context(entry: EntryConfig, claims: BootClaims, *, settings: Settings,
                 pilot_amqp_url: str, pilot_key: bytes) -> dict[str, str]:
    """What the pilot would have had in its environment as a local process, and its key."""
    context = pilot_environment(entry, claims.pilot_id, factory=claims.factory,
                                group=claims.group, idle_lifetime_s=claims.idle_lifetime_s,
                                settings=settings, amqp_url=pilot_amqp_url)
    context["BURST_PILOT_KEY"] = pilot_key.hex()
    return context
