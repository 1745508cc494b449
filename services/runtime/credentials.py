"""Credentials per trust domain: the kinds entries need and the references groups hold.

    [[entry]] trust_domain = "aws-main", credential = "ec2-keypair"
    [[group]] credentials = { aws-main = "env:AWS_MAIN_CREDS", local = "none" }
                                          ▲ a reference, never the secret itself

A reference is `env:NAME` (the variable NAME of the frontend's environment), `file:PATH`
(a file the frontend reads; a relative PATH is relative to the configuration file), or
`none` (the domain's entries need no secret: local processes). The frontend reads the
secret when it asks for pilots, seals it to the factory's public key (sealing.py), and it
is opened only by the factory, for the entry's driver.

Kinds (GlideinWMS' credential types, the paper's "trust domains"):
    none          nothing to hand over (local pilots)
    ec2-keypair   an EC2 access key and secret key: `ACCESS_KEY_ID:SECRET_ACCESS_KEY`, or
                  JSON {"access_key_id": ..., "secret_access_key": ...}
    token, proxy  a bearer token or an X.509 proxy file, handed to a grid-like driver as is
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

NONE = "none"
KINDS = (NONE, "ec2-keypair", "token", "proxy")
MAX_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CredentialUnavailable(ValueError):
    """A reference that cannot be read now; str() names the reference, never a secret."""


def is_reference(value: str) -> bool:
    """Whether a group's credential value is a reference (the check that keeps secrets out
    of the TOML: anything else is refused when the configuration is read)."""
    if value == NONE:
        return True
    if value.startswith("env:"):
        return bool(_ENV_NAME.match(value[4:]))
    return value.startswith("file:") and len(value) > 5


def resolve(reference: str, base_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The secret a reference points at (b"" for none); CredentialUnavailable says why not."""
    env = os.environ if env is None else env
    if reference == NONE:
        return b""
    if reference.startswith("env:"):
        value = env.get(reference[4:], "")
        if not value.strip():
            raise CredentialUnavailable(f"{reference}: {reference[4:]} is not set")
        return value.strip().encode()
    if reference.startswith("file:"):
        path = Path(reference[5:]).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise CredentialUnavailable(f"{reference}: cannot read {path} ({exc.strerror})"
                                        ) from None
        if len(data) > MAX_BYTES or not data.strip():
            raise CredentialUnavailable(f"{reference}: {path} is empty or over 64 KiB")
        return data.strip()
    raise CredentialUnavailable("not a credential reference (env:NAME, file:PATH or none)")


def setting(value: str, base_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """A setting that may hold its value or name it by reference (env:NAME, file:PATH), so a
    secret such as a password in a URL stays out of the TOML; CredentialUnavailable."""
    if value.startswith(("env:", "file:")):
        return resolve(value, base_dir, env).decode()
    return value


def ec2_keys(secret: bytes) -> tuple[str, str]:
    """(access key id, secret access key) of an ec2-keypair credential; ValueError naming
    the expected shapes, never the content."""
    text = secret.decode("utf-8", errors="replace").strip()
    access = key = ""
    if text.startswith("{"):
        try:
            found = json.loads(text)
            access, key = str(found["access_key_id"]), str(found["secret_access_key"])
        except (ValueError, KeyError, TypeError):
            pass
    elif ":" in text:
        access, _, key = text.partition(":")
    if not access.strip() or not key.strip():
        raise ValueError("an ec2-keypair credential is ACCESS_KEY_ID:SECRET_ACCESS_KEY or JSON "
                         '{"access_key_id": ..., "secret_access_key": ...}')
    return access.strip(), key.strip()


def box_aad(client: str, entry: str, trust_domain: str, factory: str) -> str:
    """What a sealed credential is bound to: the group it belongs to, the entry and trust
    domain it is for, and the factory it was sealed to (frontend and factory agree on it)."""
    return f"burst-credential-v1\0{client}\0{entry}\0{trust_domain}\0{factory}"


def box_name(trust_domain: str, factory: str) -> str:
    """The key of a sealed credential in glidein.request's `credentials`."""
    return f"{trust_domain}@{factory}"
