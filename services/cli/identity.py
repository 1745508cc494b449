"""Who the CLI acts as: the user token it signs commands with (security.py).

    BURST_TOKEN_FILE, or <state>/tokens/<os user>.token  ──▶ Signer(user principal, key)

A token file is made by `burst token issue USER` (an administrator: it needs
the pool key) and by `burst up` for the user who starts the pool (admin). The
schedd takes the owner of a submission, and the right to act on a job, from
the signature; no environment variable can change who you are.
"""

from __future__ import annotations

import getpass
import os
import pwd
from pathlib import Path

from services.runtime import security
from services.runtime.config import Settings


class NoIdentity(Exception):
    """The CLI has no usable token; str() says how to get one."""


def token_path(settings: Settings, user: str | None = None) -> Path:
    configured = os.environ.get("BURST_TOKEN_FILE")
    if configured and user is None:
        return Path(configured)
    return settings.path("tokens", f"{user or getpass.getuser()}.token")


def signer(settings: Settings) -> security.Signer:
    path = token_path(settings)
    try:
        return security.read_token(path)
    except security.AuthError as exc:
        user = getpass.getuser()
        raise NoIdentity(f"{exc}: you need a token to talk to the pool; an administrator "
                         f"makes one with `burst token issue {user}` (or set "
                         "BURST_TOKEN_FILE)") from None


def pool_key(settings: Settings, *, create: bool = False) -> bytes:
    return security.load_pool_key(security.pool_key_path(settings.state_dir), create=create)


def issue(settings: Settings, user: str, *, admin: bool = False, lifetime_s: float = 0.0,
          out: Path | None = None) -> Path:
    """Write a token file for `user` (0600, owned by that user when it is an OS account)."""
    text = security.issue_token(pool_key(settings), user, admin=admin, lifetime_s=lifetime_s)
    path = out or token_path(settings, user)
    security.write_private(path, text, uid=_uid_of(user) if os.geteuid() == 0 else None)
    return path


def ensure_own_token(settings: Settings) -> Path | None:
    """At `burst up`: the pool key, and an admin token for whoever starts the pool."""
    pool_key(settings, create=True)
    path = token_path(settings, getpass.getuser())
    if path.exists():
        return None
    return issue(settings, getpass.getuser(), admin=True, out=path)


def _uid_of(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
