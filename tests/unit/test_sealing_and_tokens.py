"""The cryptography under credentials and boot: sealed boxes to X25519 keys, the key files
they live in, boot tokens only a holder of the pool key can make, credential references."""

from __future__ import annotations

import stat

import pytest

from services.runtime import bootstrap, credentials, sealing
from services.runtime.security import AuthError

POOL_KEY = bytes(range(32))


def test_a_box_opens_only_with_its_key_and_its_aad():
    mine, other = sealing.generate(), sealing.generate()
    box = sealing.seal(sealing.public_hex(mine), b"AKIA:secret", "entry-a")
    assert b"secret" not in box and len(box) == 32 + 12 + len(b"AKIA:secret") + 16
    assert sealing.open_box(mine, box, "entry-a") == b"AKIA:secret"
    for key, aad, data in ((other, "entry-a", box), (mine, "entry-b", box),
                           (mine, "entry-a", box[:-1] + bytes([box[-1] ^ 1])),
                           (mine, "entry-a", box[:20])):
        with pytest.raises(AuthError):
            sealing.open_box(key, data, aad)
    assert sealing.seal(sealing.public_hex(mine), b"x", "a") != \
        sealing.seal(sealing.public_hex(mine), b"x", "a")  # a fresh sender key each time
    with pytest.raises(AuthError, match="not a public key"):
        sealing.seal("abcd", b"x", "a")


def test_a_key_pair_file_is_private_and_stable(tmp_path):
    path = tmp_path / "keys" / "factory-a.x25519"
    first = sealing.load_key_pair(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sealing.public_hex(sealing.load_key_pair(path)) == sealing.public_hex(first)
    path.write_text("not hex\n")
    with pytest.raises(AuthError, match="not a private key"):
        sealing.load_key_pair(path)


def test_a_boot_token_carries_its_claims_and_verifies_only_with_the_pool_key():
    token = bootstrap.issue(POOL_KEY, pool="p", entry="e", pilot_id="e-1", factory="f",
                            group="fe.g", idle_lifetime_s=30.0, lifetime_s=600.0,
                            clock=lambda: 1000.0)
    claims = bootstrap.read(POOL_KEY, token)
    assert (claims.pool, claims.entry, claims.pilot_id, claims.group, claims.issued,
            claims.expires) == ("p", "e", "e-1", "fe.g", 1000.0, 1600.0)
    assert not claims.expired(1599.9) and claims.expired(1600.0)
    assert bootstrap.peek(token)["pilot_id"] == "e-1" and len(token) < 400
    with pytest.raises(bootstrap.TokenInvalid, match="forged"):
        bootstrap.read(bytes(32), token)
    prefix, body, mac = token.split(".")
    edited = bootstrap.issue(bytes(32), pool="p", entry="e", pilot_id="e-2", factory="f",
                             group="g").split(".")[1]
    with pytest.raises(bootstrap.TokenInvalid, match="forged"):
        bootstrap.read(POOL_KEY, f"{prefix}.{edited}.{mac}")  # claims of another pilot
    for bad in ("", "burst-boot-v1.a", "other-v1.a.b", "burst-boot-v1.a.b!", None, "x" * 5000):
        with pytest.raises(bootstrap.TokenInvalid, match="malformed"):
            bootstrap.read(POOL_KEY, bad)
    assert bootstrap.issue(POOL_KEY, pool="p", entry="e", pilot_id="e-1", factory="f",
                           group="g") != bootstrap.issue(POOL_KEY, pool="p", entry="e",
                                                         pilot_id="e-1", factory="f", group="g")


def test_credential_references_resolve_from_the_environment_or_a_file(tmp_path):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "os.keys").write_text("AKIA:secret\n")
    assert credentials.resolve("env:CREDS", tmp_path, {"CREDS": " a:b \n"}) == b"a:b"
    assert credentials.resolve("file:creds/os.keys", tmp_path) == b"AKIA:secret"
    assert credentials.resolve(f"file:{tmp_path}/creds/os.keys", tmp_path / "x") == \
        b"AKIA:secret"
    assert credentials.resolve("none", tmp_path) == b""
    with pytest.raises(credentials.CredentialUnavailable, match="^env:CREDS: CREDS is not set$"):
        credentials.resolve("env:CREDS", tmp_path, {})
    with pytest.raises(credentials.CredentialUnavailable, match="cannot read .*No such file"):
        credentials.resolve("file:creds/gone", tmp_path)


@pytest.mark.parametrize("text", [b"AKIA1:s3cr:et", b'{"access_key_id": "AKIA1", '
                                                    b'"secret_access_key": "s3cr:et"}'])
def test_an_ec2_key_pair_is_read_in_either_shape(text):
    assert credentials.ec2_keys(text) == ("AKIA1", "s3cr:et")


def test_a_bad_ec2_key_pair_never_shows_its_content():
    with pytest.raises(ValueError) as err:
        credentials.ec2_keys(b"only-the-secret-xyz")
    assert "xyz" not in str(err.value)
