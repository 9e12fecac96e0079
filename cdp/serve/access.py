"""Who is calling `cdp serve`, and what they may do: named API keys with scopes, people's roles,
and the `Principal` every authenticated request carries in `request.state.principal`.

API keys live in the keys file the tenant config names (`profile_api.keys_file`, YAML, written
by `cdp key create/rotate/revoke`; `CDP_KEYS_FILE` overrides the path):

    keys:
      website:
        id: 3f9a1c2b7d                   # public: the token's prefix, so a lookup is one dict get
        sha256: <hex of SHA-256 of the whole token>
        scopes: [profiles:read]
        created: '2025-01-01T00:00:00+00:00'

A token is `cdp_<id>_<43 url-safe characters>` (32 random bytes): it is shown once, at create or
rotate, and only its SHA-256 is stored. A fast hash is the right one for a high-entropy random
token (nothing to brute-force); a verification is a dict lookup by id plus one constant-time
compare, and the file is re-read only when its mtime changes, checked at most once a second.

Scopes: `profiles:read` (the Profile API), `workspace` (the analyst workspace as an analyst),
`admin` (everything, as an admin). The old single key in `profile_api.api_key_env`
(`CDP_API_KEY`) is still accepted when strong, with `profiles:read` only: deprecated.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cdp.config import IDENTIFIER

SCOPES = ("profiles:read", "workspace", "admin")
ROLES = ("admin", "analyst", "marketer")
RECHECK_SECONDS = 1.0   # how often a cached keys/users file is stat'ed for a change
TOKEN_RE = re.compile(r"^cdp_([0-9a-f]{10})_[A-Za-z0-9_\-]{43}$")
LEGACY_KEY_NAME = "env"   # the name the old environment variable key is known by (audit, logs)

# what each role may do in the workspace (a key acts with the role its scopes give)
PERMISSIONS = {
    "view": {"admin", "analyst", "marketer"},     # customer 360 figures, profiles (masked), segment counts
    "pii": {"admin", "analyst"},                  # PII unmasked on profile pages and samples
    "query": {"admin", "analyst"},                # SQL editor, run, CSV export
    "save": {"admin", "analyst"},                 # save a new segment / query
    "replace": {"admin"},                         # change a saved segment / query (what destinations get)
    "admin": {"admin"},
}


class KeysFileError(ValueError):
    """The keys file is malformed, or a key operation was refused; the message names the entry."""


class WeakKeyError(ValueError):
    """A key that can be guessed: a placeholder, too short or of too few distinct characters."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: a person (`kind="user"`, a role) or a machine (`kind="key"`, scopes and
    the role they give in the workspace, None for a profiles:read-only key)."""
    name: str
    kind: str                       # "user" | "key"
    role: str | None
    scopes: frozenset = field(default_factory=frozenset)

    def may(self, permission: str) -> bool:
        return self.role is not None and self.role in PERMISSIONS[permission]

    @property
    def label(self) -> str:
        return self.name if self.kind == "user" else f"key:{self.name}"


def role_of_scopes(scopes) -> str | None:
    if "admin" in scopes:
        return "admin"
    if "workspace" in scopes:
        return "analyst"
    return None


# ---- weak keys ---------------------------------------------------------------------------------

PLACEHOLDERS = ("change-me", "changeme", "change_me", "secret", "password", "test", "example", "default",
                "api-key", "apikey", "bench-key", "dummy", "xxxx", "1234")
MIN_KEY_CHARS, MIN_KEY_BITS, MIN_DISTINCT = 32, 128, 8


def key_weakness(key: str) -> str | None:
    """Why `key` is too weak to guard PII, or None. Estimated bits: length x log2 of the alphabet
    of the character classes it uses (hex of 16 random bytes: 128)."""
    for word in PLACEHOLDERS:
        if _holds_placeholder(key, word):
            return f"it contains the placeholder {word!r}"
    return _entropy_weakness(key)


def _entropy_weakness(key: str) -> str | None:
    if len(key) < MIN_KEY_CHARS:
        return f"it has {len(key)} characters; at least {MIN_KEY_CHARS} are needed"
    if len(set(key)) < MIN_DISTINCT:
        return f"it uses only {len(set(key))} distinct characters"
    alphabet = (10 * any(c.isdigit() for c in key) + 26 * any(c.islower() for c in key)
                + 26 * any(c.isupper() for c in key) + 32 * any(not c.isalnum() for c in key))
    if set(key.lower()) <= set("0123456789abcdef"):   # hex: 16 symbols, not digits + letters
        alphabet = 16
    bits = len(key) * math.log2(max(alphabet, 2))
    if bits < MIN_KEY_BITS:
        return f"about {bits:.0f} bits of entropy; at least {MIN_KEY_BITS} are needed"
    return None


def _holds_placeholder(key: str, word: str) -> bool:
    """`word` stands in `key` as a word of its own (at an end or next to a non-alphanumeric), or,
    for a word with letters, what is left without it is a weak key ('mysupersecretkey...'). Inside
    a run of random characters it is chance: a random hex key holds '1234' about once in 2,000,
    a base64 key 'test' about once in 25,000; such keys are judged by their entropy alone."""
    if word not in key.lower():
        return False
    w = re.escape(word)
    if word.isdigit():        # digits only as a whole token: '1234-...', not '12340edd...'
        return re.search(rf"(?<![a-z0-9]){w}(?![a-z0-9])", key.lower()) is not None
    if re.search(rf"(?<![a-z0-9]){w}|{w}(?![a-z0-9])", key.lower()):
        return True
    return _entropy_weakness(re.sub(w, "", key, flags=re.I)) is not None


def check_strong(key: str, what: str) -> None:
    why = key_weakness(key)
    if why:
        raise WeakKeyError(f"{what}: refused, the key is weak ({why}); create named keys with "
                           "`cdp key create NAME --scope profiles:read`")


# ---- a file re-read only when it changes -------------------------------------------------------

class WatchedFile:
    """`load(path)`'s result, re-computed when the file's (inode, mtime, size) change; stat'ed at
    most once per RECHECK_SECONDS. A missing file loads as `loader`'s empty result."""

    def __init__(self, path: Path, loader):
        self.path, self._loader = Path(path), loader
        self._identity = ()
        self._value = None
        self._checked = -math.inf
        self._lock = threading.Lock()

    def _stat(self):
        try:
            st = os.stat(self.path)
            return st.st_ino, st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return None

    def get(self):
        now = time.monotonic()
        if now - self._checked < RECHECK_SECONDS:
            return self._value
        with self._lock:
            if now - self._checked >= RECHECK_SECONDS:
                identity = self._stat()
                if identity != self._identity:
                    self._value = self._loader(self.path)   # an error leaves the old value out
                    self._identity = identity
                self._checked = now
        return self._value


# ---- the keys file -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiKey:
    name: str
    id: str
    sha256: str
    scopes: tuple[str, ...]
    created: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_section(path: Path, section: str, error: type[Exception], expected: str) -> dict:
    """The mapping under `section` of a small YAML file of the server's (the keys file, the users
    file); {} when the file or the section is missing. A file that is no YAML, or a section that
    is no mapping, raises `error` naming the file (and `expected`)."""
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    entries = raw.get(section) if isinstance(raw, dict) else None
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise error(f"{path}: {section}: expected {expected}")
    return entries


def load_keys(path: Path) -> dict[str, ApiKey]:
    """name -> key. A missing file: no keys yet."""
    path = Path(path)
    entries = read_section(path, "keys", KeysFileError, "a mapping of key name -> id, sha256, scopes")
    out = {}
    for name, e in entries.items():
        where = f"{path}: keys.{name}"
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise KeysFileError(f"{where}: key names must be lowercase identifiers")
        if not isinstance(e, dict) or not re.fullmatch(r"[0-9a-f]{10}", str(e.get("id", ""))) \
                or not re.fullmatch(r"[0-9a-f]{64}", str(e.get("sha256", ""))):
            raise KeysFileError(f"{where}: expected id and sha256 written by `cdp key create`")
        scopes = e.get("scopes") or []
        bad = [s for s in scopes if s not in SCOPES]
        if not isinstance(scopes, list) or not scopes or bad:
            raise KeysFileError(f"{where}.scopes: expected a list of {', '.join(SCOPES)}"
                                + (f"; got {bad}" if bad else ""))
        out[name] = ApiKey(name, e["id"], e["sha256"], tuple(scopes), str(e.get("created", "")))
    return out


def _write_keys(path: Path, keys: dict[str, ApiKey]) -> None:
    doc = {"keys": {k.name: {"id": k.id, "sha256": k.sha256, "scopes": list(k.scopes), "created": k.created}
                    for k in sorted(keys.values(), key=lambda k: k.name)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.incoming")
    tmp.write_text("# cdp API keys: name -> id, SHA-256 of the token, scopes "
                   "(cdp key create/rotate/revoke; the tokens themselves are not stored)\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _new_token(taken: set[str]) -> tuple[str, str]:
    while True:
        key_id = secrets.token_hex(5)
        if key_id not in taken:
            return key_id, f"cdp_{key_id}_{secrets.token_urlsafe(32)}"


def _scopes(scopes) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(scopes))
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise KeysFileError(f"--scope: expected one or more of {', '.join(SCOPES)}" + (f"; got {bad}" if bad else ""))
    return scopes


def create_key(path: Path, name: str, scopes) -> str:
    """A new named key; returns the token (shown once, never stored)."""
    path = Path(path)
    if not IDENTIFIER.match(name):
        raise KeysFileError(f"{path}: keys.{name}: key names must be lowercase identifiers")
    keys = load_keys(path)
    if name in keys:
        raise KeysFileError(f"{path}: keys.{name}: a key of this name exists; `cdp key rotate {name}` "
                            "replaces its token")
    return _issue(path, keys, name, _scopes(scopes))


def rotate_key(path: Path, name: str) -> str:
    """A new token for an existing key (same scopes); the old token stops working."""
    path = Path(path)
    keys = load_keys(path)
    if name not in keys:
        raise KeysFileError(f"{path}: keys.{name}: no such key (cdp key list)")
    return _issue(path, keys, name, keys[name].scopes)


def _issue(path: Path, keys: dict[str, ApiKey], name: str, scopes) -> str:
    """A new token for key `name` with `scopes` (a new key, or a rotated one), written to the keys
    file; returns the token (only its digest is kept)."""
    key_id, token = _new_token({k.id for k in keys.values()})
    keys[name] = ApiKey(name, key_id, _digest(token), scopes,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_keys(path, keys)
    return token


def revoke_key(path: Path, name: str) -> None:
    path = Path(path)
    keys = load_keys(path)
    if keys.pop(name, None) is None:
        raise KeysFileError(f"{path}: keys.{name}: no such key (cdp key list)")
    _write_keys(path, keys)


class KeyRing:
    """Verifies X-API-Key values: the named keys of the keys file (cached, re-read on change) and
    the deprecated single key from the environment (profiles:read only)."""

    def __init__(self, keys_file: Path, legacy_key: str | None = None, legacy_what: str = "api key"):
        if legacy_key is not None:
            check_strong(legacy_key, legacy_what)
        self._legacy = legacy_key.encode() if legacy_key else None
        self._legacy_principal = Principal(LEGACY_KEY_NAME, "key", None, frozenset({"profiles:read"}))
        self._file = WatchedFile(Path(keys_file), self._index)

    @staticmethod
    def _index(path: Path) -> dict[str, tuple[bytes, Principal]]:
        return {k.id: (k.sha256.encode(), Principal(k.name, "key", role_of_scopes(k.scopes), frozenset(k.scopes)))
                for k in load_keys(path).values()}

    @property
    def has_legacy(self) -> bool:
        return self._legacy is not None

    @property
    def path(self) -> Path:
        return self._file.path

    def count(self) -> int:
        return len(self._file.get()) + (self._legacy is not None)

    def verify(self, token: str | None) -> Principal | None:
        if not token:
            return None
        m = TOKEN_RE.match(token)
        if m:
            entry = self._file.get().get(m.group(1))
            if entry is not None and hmac.compare_digest(_digest(token).encode(), entry[0]):
                return entry[1]
            return None
        if self._legacy is not None and hmac.compare_digest(token.encode(), self._legacy):
            return self._legacy_principal
        return None


def key_ring_for(cfg, api_key: str | None = None) -> KeyRing:
    """The tenant's keys file plus the deprecated environment key (or `api_key`, given by a caller)."""
    legacy = api_key if api_key is not None else cfg.secret(cfg.profile_api.api_key_env) or None
    what = "api_key" if api_key is not None else f"profile_api.api_key_env: {cfg.profile_api.api_key_env}"
    return KeyRing(cfg.resolve(cfg.profile_api.keys_file), legacy, what)
