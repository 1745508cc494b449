"""Claim ids: capabilities that never appear on the public event stream.

A claim id names one job's lease on a slot. It travels only in commands (the
negotiator's match offer to the schedd, the schedd's sealed activation to the
pilot, the pilot's signed report back). What is public (slot ads, events)
carries its digest: enough to tell claims apart, useless to act on one.
"""

from __future__ import annotations

import hashlib
import secrets


def new_claim_id(prefix: str) -> str:
    """`prefix` (for logs: which negotiation made it) plus 128 random bits."""
    return f"{prefix}.{secrets.token_hex(16)}"


def claim_digest(claim_id: str) -> str:
    return hashlib.sha256(claim_id.encode()).hexdigest()[:24]
