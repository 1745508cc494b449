"""Sealed boxes: encrypt to a public key, so that only the holder of the private key opens it.

    sender:    fresh X25519 key pair ──┐
    recipient: public key ─────────────┴─ X25519 ─ HKDF-SHA256 ─▶ AES-256-GCM key
    box = sender's fresh public key (32) ‖ nonce (12) ‖ ciphertext and tag

Where a secret goes to one party that shares no key with the sender:
- a frontend group's cloud credential to a factory (each factory keeps a key pair under
  <state>/keys/ and advertises the public half in its entry ads);
- a booting pilot's configuration from the metadata service (the pilot sends a fresh public
  key with its boot token, so whoever read the token in the user data cannot read the answer).

Anyone may seal to a public key; a box does not say who sealed it. Who sent it comes from
the channel: a signed bus message (only services sign glidein requests), a single-use token.
`aad` (authenticated, not secret) binds a box to its place: a box sealed for one entry's
request does not open as another's.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .security import AuthError

KEY_BYTES = 32
NONCE_BYTES = 12
INFO = b"burst-sealed-box-v1"


def generate() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_hex(private: X25519PrivateKey) -> str:
    """The public half as 64 hex digits: what goes in an entry ad or a boot request."""
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _box_key(shared: bytes, sender_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES,
                salt=sender_public + recipient_public, info=INFO).derive(shared)


def parse_public(text: str) -> X25519PublicKey:
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise AuthError(f"not a public key ({KEY_BYTES * 2} hex digits expected)")
    return X25519PublicKey.from_public_bytes(raw)


def seal(recipient_public: str, plaintext: bytes, aad: str) -> bytes:
    """A box only the holder of `recipient_public`'s private key opens (AuthError: bad key)."""
    recipient = parse_public(recipient_public)
    sender = X25519PrivateKey.generate()
    sender_public = sender.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _box_key(sender.exchange(recipient), sender_public, bytes.fromhex(recipient_public))
    nonce = secrets.token_bytes(NONCE_BYTES)
    return sender_public + nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode())


def open_box(private: X25519PrivateKey, box: bytes, aad: str) -> bytes:
    """The plaintext; AuthError when the box was not sealed to this key, or for this aad."""
    if not isinstance(box, bytes) or len(box) < KEY_BYTES + NONCE_BYTES + 16:
        raise AuthError("sealed box is too short")
    sender_public, nonce = box[:KEY_BYTES], box[KEY_BYTES:KEY_BYTES + NONCE_BYTES]
    mine = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(sender_public))
        key = _box_key(shared, sender_public, mine)
        return AESGCM(key).decrypt(nonce, box[KEY_BYTES + NONCE_BYTES:], aad.encode())
    except (InvalidTag, ValueError):
        raise AuthError("sealed box does not open with this key") from None


# --- key files ----------------------------------------------------------------------------------


def load_key_pair(path: Path) -> X25519PrivateKey:
    """The private key in `path` (hex, 0600 in a 0700 directory), made on first use.

    Two processes starting at once agree on one key: the file is made under another name
    and linked into place, and the loser reads the winner's.
    """
    try:
        return _read_private(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(raw.hex() + "\n")
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return _read_private(path)


def _read_private(path: Path) -> X25519PrivateKey:
    text = path.read_text().strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise AuthError(f"{path}: not a private key ({KEY_BYTES * 2} hex digits expected)")
    return X25519PrivateKey.from_private_bytes(raw)
