"""Passwords for the broker's users, and the definitions file the broker loads with them.

    python3 deploy/rabbitmq/passwords.py

- `.env` (next to compose.yaml, 0600): BURST_AMQP_PASSWORD_<USER>=... for every user of
  definitions.json. Passwords already there are kept (set your own before the first run if
  you like); missing ones are made (32 random bytes, URL-safe). Compose reads `.env` to
  fill each service's AMQP_URL.
- `deploy/rabbitmq/definitions.local.json`: definitions.json with each user's password
  hash (RabbitMQ's salted SHA-256), which the broker container loads at boot.

Run it again after changing a password, then `docker compose up -d --force-recreate
rabbitmq` (definitions are loaded at boot). Standard library only: it runs before anything
is installed. Never prints a password.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFINITIONS = HERE / "definitions.json"
RENDERED = HERE / "definitions.local.json"
ENV_FILE = HERE.parents[1] / ".env"


def variable(user: str) -> str:
    return f"BURST_AMQP_PASSWORD_{user.upper()}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def read_env(path: Path) -> dict[str, str]:
    found = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.lstrip().startswith("#"):
                found[name.strip()] = value.strip()
    return found


def render(definitions: dict, passwords: dict[str, str]) -> dict:
    """The definitions with a hash for every user (KeyError for one without a password)."""
    users = [{**user, "password_hash": password_hash(passwords[user["name"]])}
             for user in definitions["users"]]
    return {**definitions, "users": users}


def main() -> int:
    definitions = json.loads(DEFINITIONS.read_text())
    env = read_env(ENV_FILE)
    made = [user["name"] for user in definitions["users"] if variable(user["name"]) not in env]
    if made:
        fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            for name in made:
                env[variable(name)] = secrets.token_urlsafe(32)
                out.write(f"{variable(name)}={env[variable(name)]}\n")
    os.chmod(ENV_FILE, 0o600)
    passwords = {user["name"]: env[variable(user["name"])] for user in definitions["users"]}
    RENDERED.write_text(json.dumps(render(definitions, passwords), indent=2) + "\n")
    RENDERED.chmod(0o644)  # read by the broker's own user in its container; hashes only
    print(f"{ENV_FILE}: passwords of {len(passwords)} users"
          + (f" ({len(made)} new: {', '.join(made)})" if made else ""))
    print(f"{RENDERED}: written; now `docker compose up -d`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
