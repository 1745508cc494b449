"""Signatures, sealing and tokens: what a forger can and cannot do."""

from __future__ import annotations

import os
import stat

import pytest

from services.runtime import security
from services.runtime.security import AuthError, Principal, Signer, Verifier

POOL = bytes(range(32))
OTHER_POOL = bytes(range(1, 33))


def signed(signer: Signer, body: bytes = b"\x81\xa1a\x01", *, schema: str = "job.report",
           message_id: str = "m1", timestamp: int = 1000) -> dict:
    return {"schema": schema, "version": 1, "message_id": message_id, "timestamp": timestamp,
                "body": body, "headers": signer.headers(schema, 1, message_id, timestamp, body)}


def verify(verifier: Verifier, msg: dict) -> Principal | None:
    return verifier.verify(msg["headers"], msg["schema"], msg["version"], msg["message_id"],
                           msg["timestamp"], msg["body"])


def test_a_pilot_signature_verifies_as_that_pilot():
    verifier = Verifier(POOL)
    pilot = verifier.signer_for(security.pilot("p-1"))
    assert verify(verifier, signed(pilot)) == Principal("pilot", "p-1")


def test_an_unsigned_message_has_no_principal():
    assert Verifier(POOL).verify({}, "job.report", 1, "m1", 0, b"") is None


@pytest.mark.parametrize("field,value", [
    ("body", b"\x81\xa1a\x02"), ("message_id", "m2"), ("timestamp", 1001),
    ("schema", "pilot.lost"),
])
def test_changing_any_signed_field_breaks_the_signature(field, value):
    verifier = Verifier(POOL)
    msg = signed(verifier.signer_for(security.pilot("p-1")))
    msg[field] = value
    with pytest.raises(AuthError, match="does not verify"):
        verify(verifier, msg)


def test_a_pilot_cannot_sign_as_another_pilot():
    verifier = Verifier(POOL)
    mine = verifier.signer_for(security.pilot("p-1"))
    msg = signed(mine)
    msg["headers"][security.PRINCIPAL_HEADER] = "pilot:p-2"
    with pytest.raises(AuthError):
        verify(verifier, msg)
    forged = Signer(security.pilot("p-2"), mine.key)  # its own key, another name
    with pytest.raises(AuthError):
        verify(verifier, signed(forged))


def test_keys_of_another_pool_do_not_verify():
    theirs = Verifier(OTHER_POOL).signer_for(security.service("schedd"))
    with pytest.raises(AuthError):
        verify(Verifier(POOL), signed(theirs))


def test_tokens_name_their_user_and_role(tmp_path):
    path = tmp_path / "alice.token"
    path.write_text(security.issue_token(POOL, "alice"))
    alice = security.read_token(path)
    assert verify(Verifier(POOL), signed(alice)) == alice.principal
    assert alice.principal.name == "alice" and not alice.principal.admin
    promoted = Signer(Principal("user", "alice", alice.principal.token_id, admin=True),
                      alice.key)
    with pytest.raises(AuthError):
        verify(Verifier(POOL), signed(promoted))


def test_an_expired_token_is_refused(tmp_path):
    now = [1_000_000.0]
    path = tmp_path / "bob.token"
    path.write_text(security.issue_token(POOL, "bob", lifetime_s=60, clock=lambda: now[0]))
    bob = security.read_token(path)
    verifier = Verifier(POOL, clock=lambda: now[0])
    assert verify(verifier, signed(bob)).name == "bob"
    now[0] += 61
    with pytest.raises(AuthError, match="expired"):
        verify(verifier, signed(bob))


@pytest.mark.parametrize("text", ["", "burst-token-v1 pilot:p1 00", "hello world !",
                                  "burst-token-v1 user:a:b:root:0 00"])
def test_a_bad_token_file_is_named(tmp_path, text):
    path = tmp_path / "t.token"
    path.write_text(text)
    with pytest.raises(AuthError, match=str(path)):
        security.read_token(path)


@pytest.mark.parametrize("header", ["", "root", "pilot:", "user:a", "user:a:b:c:d",
                                    "service:a:b", "x" * 5000])
def test_malformed_principals_are_refused_not_crashing(header):
    headers = {security.PRINCIPAL_HEADER: header, security.SIGNATURE_HEADER: "00"}
    with pytest.raises(AuthError):
        Verifier(POOL).verify(headers, "job.report", 1, "m", 0, b"")


def test_sealed_bodies_open_only_with_the_recipients_key_and_context():
    verifier = Verifier(POOL)
    pilot = verifier.signer_for(security.pilot("p-1"))
    sealed = verifier.signer_for(security.pilot("p-1")).seal(b"secret env", "claim.activate/m1")
    assert b"secret" not in sealed
    assert pilot.open(sealed, "claim.activate/m1") == b"secret env"
    with pytest.raises(AuthError):
        pilot.open(sealed, "claim.activate/m2")  # replayed under another message id
    other = verifier.signer_for(security.pilot("p-2"))
    with pytest.raises(AuthError):
        other.open(sealed, "claim.activate/m1")
    with pytest.raises(AuthError):
        pilot.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "claim.activate/m1")


def test_the_pool_key_is_made_once_and_private(tmp_path):
    path = tmp_path / "keys" / "pool.key"
    with pytest.raises(AuthError, match="no pool key"):
        security.load_pool_key(path)
    key = security.load_pool_key(path, create=True)
    assert len(key) == 32
    assert security.load_pool_key(path, create=True) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    path.write_text("nope")
    with pytest.raises(AuthError, match="not a pool key"):
        security.load_pool_key(path)
