"""Who may use the analyst workspace: people log in with a password, machines send an API key
with the `workspace` or `admin` scope (cdp/serve/access.py).

People are listed in the users file the tenant config names (`workspace.users_file`, YAML):

    users:
      ana:
        role: analyst            # admin | analyst | marketer
        password: scrypt$16384$8$1$<salt hex>$<hash hex>

Passwords are hashed with the standard library's `hashlib.scrypt` (memory-hard, salted); write
entries with `cdp user add NAME --role R`, `cdp user role NAME R`, `cdp user remove NAME`. A
logged-in person carries a session id cookie; the session itself is server-side (sessions.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from cdp.serve.access import ROLES, read_section
from cdp.config import IDENTIFIER

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


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str   # the scrypt hash


def load_users(path: Path) -> dict[str, User]:
    """name -> user. A missing file means nobody can log in yet (not an error). An entry of the
    old form (`name: <hash>`, before roles) is an analyst."""
    path = Path(path)
    users = read_section(path, "users", UsersFileError, "a mapping of user name -> role and password hash")
    out = {}
    for name, entry in users.items():
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise UsersFileError(f"{path}: users.{name}: user names must be lowercase identifiers")
        role, stored = ("analyst", entry) if isinstance(entry, str) else (
            (entry.get("role"), entry.get("password")) if isinstance(entry, dict) else (None, None))
        if role not in ROLES:
            raise UsersFileError(f"{path}: users.{name}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(stored, str) or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise UsersFileError(f"{path}: users.{name}: expected an scrypt hash written by `cdp user add`")
        out[name] = User(name, role, stored)
    return out


def _write_users(path: Path, users: dict[str, User]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.incoming")
    doc = {"users": {u.name: {"role": u.role, "password": u.password} for u in sorted(users.values(), key=lambda u: u.name)}}
    tmp.write_text("# analyst workspace users: name -> role (admin, analyst, marketer) and scrypt hash "
                   "(cdp user add/remove/role)\n" + yaml.safe_dump(doc, sort_keys=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def add_user(path: Path, name: str, password: str, role: str | None = None) -> User:
    """Add a person, or give an existing one a new password (and role, when given); written
    atomically. A new person without a role is an analyst."""
    path = Path(path)
    if not IDENTIFIER.match(name):
        raise UsersFileError(f"{path}: users.{name}: user names must be lowercase identifiers")
    if len(password) < 8:
        raise UsersFileError(f"{path}: users.{name}: the password must have at least 8 characters")
    if role is not None and role not in ROLES:
        raise UsersFileError(f"{path}: users.{name}.role: expected one of {', '.join(ROLES)}, got {role!r}")
    users = load_users(path)
    old = users.get(name)
    users[name] = User(name, role or (old.role if old else "analyst"), hash_password(password))
    _write_users(path, users)
    return users[name]


def set_role(path: Path, name: str, role: str) -> User:
    path = Path(path)
    if role not in ROLES:
        raise UsersFileError(f"{path}: users.{name}.role: expected one of {', '.join(ROLES)}, got {role!r}")
    users = load_users(path)
    if name not in users:
        raise UsersFileError(f"{path}: users.{name}: no such user (cdp user list)")
    users[name] = User(name, role, users[name].password)
    _write_users(path, users)
    return users[name]


def remove_user(path: Path, name: str) -> None:
    path = Path(path)
    users = load_users(path)
    if users.pop(name, None) is None:
        raise UsersFileError(f"{path}: users.{name}: no such user (cdp user list)")
    _write_users(path, users)
