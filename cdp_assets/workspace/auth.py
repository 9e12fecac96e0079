"""Who may use the analyst workspace: people log in with a password, machines send the API key.

People are listed in the users file the tenant config names (`workspace.users_file`, YAML):

    users:
      ana: scrypt$16384$8$1$<salt hex>$<hash hex>

Passwords are hashed with the standard library's `hashlib.scrypt` (memory-hard, salted); write
entries with `cdp user add NAME`. A logged-in person carries a signed session cookie (Starlette's
SessionMiddleware, signed with itsdangerous, key from the environment variable
`workspace.session_secret_env`). A machine sends the Profile API's key in `X-API-Key` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import yaml

from ..config import IDENTIFIER

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class UsersFileError(ValueError):
    """The users file is missing or malformed; the message names the file and the entry."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        given = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                               dklen=len(bytes.fromhex(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given.hex(), digest)


def load_users(path: Path) -> dict[str, str]:
    """name -> password hash. A missing file means nobody can log in yet (not an error)."""
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{path}: not valid YAML: {exc}") from None
    users = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(users, dict):
        raise UsersFileError(f"{path}: users: expected a mapping of user name -> password hash")
    for name, stored in users.items():
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise UsersFileError(f"{path}: users.{name}: user names must be lowercase identifiers")
        if not isinstance(stored, str) or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise UsersFileError(f"{path}: users.{name}: expected an scrypt hash written by `cdp user add`")
    return dict(users)


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace one person's password hash in the users file (written atomically)."""
    if not IDENTIFIER.match(name):
        raise UsersFileError(f"{path}: users.{name}: user names must be lowercase identifiers")
    if len(password) < 8:
        raise UsersFileError(f"{path}: users.{name}: the password must have at least 8 characters")
    users = load_users(path)
    users[name] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.incoming")
    tmp.write_text("# analyst workspace users: name -> scrypt hash (cdp user add NAME)\n"
                   + yaml.safe_dump({"users": users}, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
