"""Boot tokens: what a cloud pilot's user data holds instead of its configuration.

    factory (pool key) ──issue()──▶ token in user data, beside the metadata service's URL
    VM ──POST token, instance id, fresh public key──▶ metadata service (pool key)
                                   read() checks the MAC ─▶ pool, entry, expiry, instance,
                                   used before? (SQLite) ─▶ the context, sealed to that key

A token is `burst-boot-v1.<claims>.<mac>`: the claims (pool, entry, pilot id, factory,
group, the idle lifetime asked for, issue and expiry times, a random token id, and the
W3C traceparent of the launch, so that the VM's boot joins the trace that asked for it;
a token without one is as good) in base64url
JSON, readable by anyone and secret to no one, and an HMAC-SHA256 over them with a key
derived from the pool key for this purpose alone. Only services hold the pool key, so only a
service can make a token that verifies; the metadata service consumes each token id once.

Why the factory mints tokens itself instead of asking the metadata service over the bus:
a launch then needs no round trip and no metadata service up at that moment (a VM takes
longer to boot than the service to restart), several factories need no coordination, and
nothing is lost: the MAC proves a service made the token, the expiry bounds its life, and
the metadata service's table of used ids (which survives its restarts) makes it single-use.

Also here: where the metadata service listens (<state>/run/metadata.json), for the
factory that puts the URL in user data and `burst status`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import ServiceTimers, Settings

PREFIX = "burst-boot-v1"
LABEL = b"burst-boot-token-v1"  # the MAC key is HMAC(pool key, LABEL): no other key's twin
MAX_TOKEN_CHARS = 4096


class TokenInvalid(ValueError):
    """A token that is not one, or whose MAC does not verify; str() is safe to log."""


@dataclass(frozen=True)
class BootClaims:
    pool: str  # the namespace
    entry: str
    pilot_id: str
    factory: str
    group: str  # the client (frontend.group) the pilot is for
    idle_lifetime_s: float  # 0: the entry's own idle timeout
    issued: float
    expires: float
    token_id: str
    traceparent: str = ""  # the factory's launch span: the VM's boot is its child

    def expired(self, now: float) -> bool:
        return now >= self.expires


def _mac_key(pool_key: bytes) -> bytes:
    return hmac.digest(pool_key, LABEL, "sha256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(pool_key: bytes, *, pool: str, entry: str, pilot_id: str, factory: str, group: str,
          idle_lifetime_s: float = 0.0, lifetime_s: float = 600.0, traceparent: str = "",
          clock=time.time) -> str:
    now = clock()
    claims = BootClaims(pool, entry, pilot_id, factory, group, float(idle_lifetime_s), now,
                        now + lifetime_s, secrets.token_hex(16), traceparent)
    body = _b64(json.dumps(asdict(claims), sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.digest(_mac_key(pool_key), f"{PREFIX}.{body}".encode(), "sha256")
    return f"{PREFIX}.{body}.{_b64(mac)}"


def peek(token: str) -> dict[str, Any]:
    """The claims as written, unverified: for naming a refused token's pilot in an event."""
    try:
        _prefix, body, _mac = token.split(".")
        claims = json.loads(_unb64(body))
    except (AttributeError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def read(pool_key: bytes, token: str) -> BootClaims:
    """The claims of a token a service made; TokenInvalid for anything else.

    Expiry, pool and use are the metadata service's checks (services/metadata/logic.py).
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenInvalid("malformed token")
    prefix, body, mac = token.split(".")
    if prefix != PREFIX:
        raise TokenInvalid("malformed token")
    try:
        given = _unb64(mac)
    except (ValueError, binascii.Error):
        raise TokenInvalid("malformed token") from None
    expected = hmac.digest(_mac_key(pool_key), f"{prefix}.{body}".encode(), "sha256")
    if not hmac.compare_digest(expected, given):
        raise TokenInvalid("forged token: its signature does not verify")
    try:
        return BootClaims(**json.loads(_unb64(body)))
    except (ValueError, TypeError, binascii.Error):
        raise TokenInvalid("malformed token") from None


def digest(token: str) -> str:
    """What binds a boot answer to its token (the aad of the sealed answer)."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- where the metadata service listens ---------------------------------------------------------


def location_path(settings: Settings) -> Path:
    return settings.path("run", "metadata.json")


def write_location(settings: Settings, url: str) -> None:
    path = location_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    partial.replace(path)


def remove_location(settings: Settings) -> None:
    try:
        if json.loads(location_path(settings).read_text()).get("pid") == os.getpid():
            location_path(settings).unlink()
    except (OSError, ValueError):
        pass


def metadata_url(settings: Settings, timers: ServiceTimers) -> str | None:
    """The URL VMs are told: [services] metadata_url if set (an address VMs can reach),
    else where the metadata service on this state dir listens; None when neither is known."""
    if timers.metadata_url:
        return timers.metadata_url.rstrip("/")
    try:
        return json.loads(location_path(settings).read_text())["url"].rstrip("/")
    except (OSError, ValueError, KeyError, AttributeError):
        return None
