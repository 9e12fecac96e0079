"""Server-side login sessions and the login throttle, in one SQLite file (`workspace.sessions_file`)
shared by every server process (`cdp serve --workers N`) and by `cdp user remove`.

A session is a random 32-byte id in the `cdp_session` cookie (HttpOnly, SameSite=Strict, Secure
over HTTPS); the file keeps only its SHA-256, so a copy of the file opens no session. Each
session has a CSRF token (the synchronizer token every state-changing request must carry), its
login time and its last use: it ends at logout, after `idle` seconds unused or `absolute` seconds
after the login, and when its user is removed (or gets a new role: the role is read from the users
file at every request, so the change applies at once).

The throttle counts failed logins per (client IP, user name) and per client IP: a name hammered
from one address does not lock the real user out from another.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TOUCH_SECONDS = 15   # last use is written at most this often per session (fewer writes)
SCHEMA = """
create table if not exists sessions (
    sid_sha256 text primary key, user text not null, csrf text not null,
    created real not null, last_seen real not null);
create index if not exists sessions_user on sessions(user);
create table if not exists failed_logins (ip text not null, user text not null, at real not null);
create index if not exists failed_logins_ip on failed_logins(ip, at);
"""


def _sha(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    sid: str
    user: str
    csrf: str
    created: float
    last_seen: float


class SessionStore:
    def __init__(self, path: Path, idle: float = 30 * 60, absolute: float = 12 * 3600):
        self.path, self.idle, self.absolute = Path(path), idle, absolute
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._con()
        con.executescript(SCHEMA)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            con.execute("pragma journal_mode=wal")
            con.execute("pragma synchronous=normal")
            self._local.con = con
        return con

    # ---- sessions -----------------------------------------------------------------------------
    def create(self, user: str) -> Session:
        now = time.time()
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        con = self._con()
        con.execute("insert into sessions values (?, ?, ?, ?, ?)", [_sha(sid), user, csrf, now, now])
        con.execute("delete from sessions where last_seen < ? or created < ?", [now - self.idle, now - self.absolute])
        return Session(sid, user, csrf, now, now)

    def get(self, sid: str | None) -> Session | None:
        """The live session of this id (its last use updated), or None: unknown, logged out or expired."""
        if not sid or len(sid) > 100:
            return None
        con = self._con()
        key = _sha(sid)
        row = con.execute("select user, csrf, created, last_seen from sessions where sid_sha256 = ?", [key]).fetchone()
        if row is None:
            return None
        user, csrf, created, last_seen = row
        now = time.time()
        if now - last_seen > self.idle or now - created > self.absolute:
            con.execute("delete from sessions where sid_sha256 = ?", [key])
            return None
        if now - last_seen > TOUCH_SECONDS:
            con.execute("update sessions set last_seen = ? where sid_sha256 = ?", [now, key])
            last_seen = now
        return Session(sid, user, csrf, created, last_seen)

    def delete(self, sid: str | None) -> None:
        if sid:
            self._con().execute("delete from sessions where sid_sha256 = ?", [_sha(sid)])

    def end_user(self, user: str) -> int:
        """End every session of `user` (removed, or locked out by an admin); returns how many."""
        return self._con().execute("delete from sessions where user = ?", [user]).rowcount

    def count(self, user: str | None = None) -> int:
        now = time.time()
        sql = "select count(*) from sessions where last_seen >= ? and created >= ?"
        params = [now - self.idle, now - self.absolute]
        if user is not None:
            sql, params = sql + " and user = ?", [*params, user]
        return self._con().execute(sql, params).fetchone()[0]


class LoginThrottle:
    """Failed logins within WINDOW seconds: PER_NAME from one client IP for one user name, or
    PER_IP from one client IP over all names, and that client waits until the oldest of them is
    WINDOW seconds old. The same name from another IP is not affected: an attacker cannot lock
    the real user out, and guesses cost them the window per (IP, name)."""
    PER_NAME, PER_IP, WINDOW = 5, 30, 300.0

    def __init__(self, store: SessionStore):
        self._store = store

    def wait(self, ip: str, name: str) -> float:
        now = time.time()
        con = self._store._con()
        since = now - self.WINDOW
        for sql, params, limit in (
                ("select at from failed_logins where ip = ? and user = ? and at > ? order by at desc limit ?",
                 [ip, name, since, self.PER_NAME], self.PER_NAME),
                ("select at from failed_logins where ip = ? and at > ? order by at desc limit ?",
                 [ip, since, self.PER_IP], self.PER_IP)):
            times = [r[0] for r in con.execute(sql, params).fetchall()]
            if len(times) >= limit:
                return max(1.0, self.WINDOW - (now - min(times)))
        return 0.0

    def failed(self, ip: str, name: str) -> None:
        now = time.time()
        con = self._store._con()
        con.execute("insert into failed_logins values (?, ?, ?)", [ip, name[:100], now])
        con.execute("delete from failed_logins where at < ?", [now - self.WINDOW])

    def succeeded(self, ip: str, name: str) -> None:
        self._store._con().execute("delete from failed_logins where ip = ? and user = ?", [ip, name])
