"""Who sent a message, and who may read it: keys derived from one pool key.

    pool key  (<state>/keys/pool.key, 0600; only the services read it)
      ├── HMAC(pool, "service", name)              a service's key: it signs what it publishes
      ├── HMAC(pool, "pilot", pilot id)            a pilot's key: given to that pilot alone at
      │                                            launch; it signs what the pilot publishes and
      │                                            seals what is sent to the pilot
      └── HMAC(pool, "user", name, token id, ...)  a user's key: in the user's token file

A signed message carries two headers: `x-burst-principal` (who: `service:schedd`,
`pilot:<id>`, `user:<name>:<token id>:<admin|user>:<expiry>`) and `x-burst-sig`,
an HMAC-SHA256 with the principal's key over the schema name and version, the
message id, the timestamp, the principal and the body's digest. A verifier (a
service, holding the pool key) derives the key from the principal it names: a
message whose principal or any signed field was changed no longer verifies, and
nobody can sign as a pilot or user without that one's key. Every attribute of a
user principal (admin or not, expiry) is part of its key, so none can be edited.

Sealed messages (claim activations: a job's environment and input files) have
their body encrypted with AES-GCM under the recipient pilot's key; the pilot
opens it, and only the pool's services could have made it (it authenticates).

Why HMAC and not public keys: every message a pilot or user sends is verified
by a service, and every service is inside the pool's trust boundary; HMAC costs
about a microsecond where an Ed25519 signature costs tens, on the hot path of
every message. The pool key never leaves the services.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PRINCIPAL_HEADER = "x-burst-principal"
SIGNATURE_HEADER = "x-burst-sig"
SEALED_FOR_HEADER = "x-burst-sealed-for"
KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_MAGIC = "burst-token-v1"
KINDS = ("service", "pilot", "user")


class AuthError(ValueError):
    """A signature, token or sealed body that does not verify: the reason is safe to log."""


@dataclass(frozen=True)
class Principal:
    """The sender a signature proves."""

    kind: str  # service | pilot | user
    name: str
    token_id: str = ""  # users: which token, so one can be revoked alone
    admin: bool = False  # users: may act on other owners' jobs
    expires: int = 0  # users: epoch seconds after which the token is refused; 0 never

    def __str__(self) -> str:
        if self.kind != "user":
            return f"{self.kind}:{self.name}"
        role = "admin" if self.admin else "user"
        return f"user:{self.name}:{self.token_id}:{role}:{self.expires}"

    @classmethod
    def parse(cls, text: str | bytes) -> Principal:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        kind, _, rest = text.partition(":")
        if kind in ("service", "pilot"):
            if not _plain_name(rest):
                raise AuthError(f"malformed principal {text[:100]!r}")
            return cls(kind, rest)
        if kind == "user":
            parts = rest.split(":")
            if (len(parts) != 4 or not _plain_name(parts[0]) or not _plain_name(parts[1])
                    or parts[2] not in ("admin", "user") or not parts[3].isdigit()):
                raise AuthError(f"malformed principal {text[:100]!r}")
            return cls("user", parts[0], parts[1], parts[2] == "admin", int(parts[3]))
        raise AuthError(f"malformed principal {text[:100]!r}")

    def is_pilot(self, pilot_id: str) -> bool:
        """Whether this is that pilot (anyone, on a bus that checks nothing)."""
        return self.kind == "unchecked" or (self.kind == "pilot" and self.name == pilot_id)

    @property
    def is_service(self) -> bool:
        return self.kind in ("service", "unchecked")

    def may_act_for(self, owner: str) -> bool:
        """A user acting on `owner`'s jobs: that user, an administrator, or a service."""
        if self.kind in ("service", "unchecked"):
            return True
        return self.kind == "user" and (self.admin or self.name == owner)


def _plain_name(text: str) -> bool:
    return 0 < len(text) <= 200 and ":" not in text and text.isprintable()


# What a bus that checks nothing (unit tests) says of every sender; see bus.Bus.
UNCHECKED = Principal("unchecked", "*")


def service(name: str) -> Principal:
    return Principal("service", name)


def pilot(pilot_id: str) -> Principal:
    return Principal("pilot", pilot_id)


# --- keys ---------------------------------------------------------------------------------------


def pool_key_path(state_dir: Path, env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("BURST_POOL_KEY_FILE")
    return Path(configured) if configured else state_dir / "keys" / "pool.key"


def load_pool_key(path: Path, *, create: bool = False) -> bytes:
    """The pool key from its file (hex); made (0600, directory 0700) when asked to."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        if not create:
            raise AuthError(f"{path}: no pool key (it is made by `burst up`, or set "
                            "BURST_POOL_KEY_FILE)") from None
        return _create_key(path)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AuthError(f"{path}: not a pool key (expected {KEY_BYTES * 2} hex digits)") from None
    if len(key) != KEY_BYTES:
        raise AuthError(f"{path}: not a pool key (expected {KEY_BYTES * 2} hex digits)")
    return key


def _create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # Random, not the pid: containers sharing a keys volume all run as pid 1.
    partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    try:
        os.link(partial, path)  # never replaces a key another process made first
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return load_pool_key(path)


def derive_key(pool_key: bytes, principal: Principal) -> bytes:
    label = "\0".join(("burst-key-v1", principal.kind, str(principal)))
    return hmac.digest(pool_key, label.encode(), "sha256")


# --- signatures ---------------------------------------------------------------------------------


def _signed_bytes(schema: str, version: int, message_id: str, timestamp: int, principal: str,
                  body: bytes) -> bytes:
    head = f"{schema}\0{version}\0{message_id}\0{timestamp}\0{principal}\0".encode()
    return head + hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Signer:
    """Signs as one principal with its key."""

    principal: Principal
    key: bytes

    def headers(self, schema: str, version: int, message_id: str, timestamp: int,
                body: bytes) -> dict[str, str]:
        who = str(self.principal)
        mac = hmac.digest(self.key, _signed_bytes(schema, version, message_id, timestamp, who,
                                                  body), "sha256")
        return {PRINCIPAL_HEADER: who, SIGNATURE_HEADER: mac.hex()}

    def seal(self, body: bytes, aad: str) -> bytes:
        return seal(self.key, body, aad)

    def open(self, sealed: bytes, aad: str) -> bytes:
        return open_sealed(self.key, sealed, aad)


class Verifier:
    """Checks signatures with keys derived from the pool key (services only)."""

    def __init__(self, pool_key: bytes, clock=time.time):
        self.pool_key = pool_key
        self.clock = clock
        self._keys: dict[str, bytes] = {}  # principal text -> derived key

    def key_for(self, principal: Principal) -> bytes:
        text = str(principal)
        key = self._keys.get(text)
        if key is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            key = self._keys[text] = derive_key(self.pool_key, principal)
        return key

    def signer_for(self, principal: Principal) -> Signer:
        return Signer(principal, self.key_for(principal))

    def verify(self, headers: dict, schema: str, version: int, message_id: str, timestamp: int,
               body: bytes) -> Principal | None:
        """The principal that signed the message; None when it is unsigned; AuthError when
        the signature is wrong, malformed or from an expired token."""
        who, mac = headers.get(PRINCIPAL_HEADER), headers.get(SIGNATURE_HEADER)
        if who is None and mac is None:
            return None
        if not isinstance(who, (str, bytes)) or not isinstance(mac, (str, bytes)):
            raise AuthError("signature headers are malformed")
        principal = Principal.parse(who)
        if isinstance(mac, bytes):
            mac = mac.decode(errors="replace")
        expected = hmac.digest(self.key_for(principal),
                               _signed_bytes(schema, version, message_id, timestamp,
                                             str(principal), body), "sha256")
        if not hmac.compare_digest(expected.hex(), mac):
            raise AuthError(f"signature of {principal} does not verify")
        if principal.expires and principal.expires < self.clock():
            raise AuthError(f"token {principal.token_id} of {principal.name} has expired")
        return principal


# --- sealing ------------------------------------------------------------------------------------


def seal(key: bytes, body: bytes, aad: str) -> bytes:
    """AES-GCM: nonce + ciphertext; `aad` (e.g. the schema and message id) is bound to it."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, body, aad.encode())


def open_sealed(key: bytes, sealed: bytes, aad: str) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise AuthError("sealed body is too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad.encode())
    except InvalidTag:
        raise AuthError("sealed body does not open with this key") from None


# --- user tokens --------------------------------------------------------------------------------


def issue_token(pool_key: bytes, user: str, *, admin: bool = False,
                lifetime_s: float = 0.0, clock=time.time) -> str:
    """The text of a token file for `user` (keep it 0600: whoever holds it is that user)."""
    expires = int(clock() + lifetime_s) if lifetime_s > 0 else 0
    principal = Principal("user", user, secrets.token_hex(8), admin, expires)
    if not _plain_name(user):
        raise AuthError(f"user name {user!r} may not contain ':' or control characters")
    key = derive_key(pool_key, principal)
    return f"{TOKEN_MAGIC} {principal} {key.hex()}\n"


def read_token(path: Path) -> Signer:
    """The signer a token file holds; AuthError naming the file when it is not one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AuthError(f"{path}: no token file") from None
    except OSError as exc:
        raise AuthError(f"{path}: cannot read the token file ({exc.strerror})") from None
    parts = text.split()
    if len(parts) != 3 or parts[0] != TOKEN_MAGIC:
        raise AuthError(f"{path}: not a burst token file")
    try:
        principal = Principal.parse(parts[1])
    except AuthError as exc:
        raise AuthError(f"{path}: {exc}") from None
    if principal.kind != "user":
        raise AuthError(f"{path}: not a user token")
    try:
        key = bytes.fromhex(parts[2])
    except ValueError:
        raise AuthError(f"{path}: not a burst token file") from None
    return Signer(principal, key)


def write_private(path: Path, text: str, *, uid: int | None = None) -> None:
    """Write a secret file readable by its owner only (chowned to `uid` when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Random, not the pid: containers sharing a keys volume all run as pid 1.
    partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if uid is not None:
        os.chown(partial, uid, -1)
    os.replace(partial, path)
