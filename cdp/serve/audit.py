"""The audit log: who ran which workspace query, exported what, saved a segment or query, opened
whose profile, and which API key called which endpoint - with when, how many rows and from
which client address.

It is a SQLite file of its own (`audit.path` in the tenant config, `$CDP_AUDIT_LOG` overrides;
default `audit.sqlite3` beside the config file), never the warehouse, so a rebuild does not erase
it. The table is append-only (triggers refuse UPDATE and DELETE). SQLite in WAL mode with one
short transaction per write is safe across the processes of `cdp serve --workers N` and the
`cdp audit` reader.

Workspace actions are written as they happen (a few a minute). The Profile API's hot path does
not write per request: `note_key_use` adds one to an in-memory counter per (key, endpoint,
client, minute), and a background thread appends one row per counter once its minute is over
(and at shutdown); such a row's `rows` is the number of requests.

    cdp audit [--user U] [--action A] [--since DATE] [--until DATE] [--limit N] [--json]
    /workspace/audit   (the same filters)
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

API_KEY_PRINCIPAL = "api-key"   # the tenant's one Profile API key, until keys have names
FLUSH_SECONDS = 5.0
KINDS = ("user", "key")
# what is recorded (action -> what `what` holds)
ACTIONS = {
    "query.run": "the SQL text",
    "query.export": "the SQL text (CSV download)",
    "query.save": "the saved query's name",
    "segment.save": "the segment's name",
    "person.view": "the cdp_id of the profile opened",
    "audit.view": "the filters of the audit log read",
    "api.key_use": "the endpoint (rows: requests in that minute)",
    "api.key_denied": "the endpoint (rows: refused requests in that minute)",
}

SCHEMA = """
create table if not exists audit_events (
    id integer primary key autoincrement,
    at text not null,                  -- UTC, 'YYYY-MM-DD HH:MM:SS.mmm'
    principal text not null,           -- user name or key name
    kind text not null,                -- user | key
    action text not null,
    what text not null default '',
    rows integer,
    client_ip text,
    detail text                        -- JSON: outcome, error, file name, ...
);
create index if not exists audit_events_at on audit_events (at);
create index if not exists audit_events_principal on audit_events (principal, at);
create trigger if not exists audit_events_no_update before update on audit_events
begin select raise(abort, 'the audit log is append-only'); end;
create trigger if not exists audit_events_no_delete before delete on audit_events
begin select raise(abort, 'the audit log is append-only'); end;
"""


@dataclass(frozen=True)
class Principal:
    """Who did something: a person (kind user) or a machine with an API key (kind key)."""
    name: str
    kind: str = "user"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"principal kind {self.kind!r}: expected one of {', '.join(KINDS)}")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def parse_when(value: str | date | None, end: bool = False) -> str | None:
    """A DATE (YYYY-MM-DD) or ISO datetime as the log's UTC text; a date given as `end` (until)
    includes that whole day."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO date and time") from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (value + timedelta(days=1) if end else value).strftime("%Y-%m-%d 00:00:00.000")


class AuditLog:
    """Append to and read the audit log file. One connection per process (opened again after a
    fork), used under a lock; each write is one short transaction."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._buckets: dict[tuple, int] = {}
        self._bucket_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._exit_hook = False

    # ---- storage ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            con.execute("pragma journal_mode=wal")
            con.execute("pragma synchronous=normal")
            con.execute("pragma busy_timeout=10000")
            con.executescript(SCHEMA)
            if new:
                os.chmod(self.path, 0o600)
            self._con, self._pid = con, os.getpid()
        return self._con

    def _append(self, rows: list[tuple]) -> None:
        with self._lock:
            con = self._connection()
            con.execute("begin immediate")
            try:
                con.executemany("insert into audit_events (at, principal, kind, action, what, rows, "
                                "client_ip, detail) values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")

    def record(self, principal: Principal, action: str, what: str = "", rows: int | None = None,
               client_ip: str | None = None, **detail) -> None:
        """Append one event now (workspace actions: a handful a minute)."""
        self._append([(_now(), principal.name, principal.kind, action, what, rows, client_ip,
                       json.dumps(detail, default=str, sort_keys=True) if detail else None)])

    # ---- the API's hot path: counted in memory, appended per minute ------------------------------
    def count(self, principal: Principal, action: str, what: str, client_ip: str | None) -> None:
        """One more request of `principal` on `what` this minute; no I/O."""
        minute = int(time.time() // 60)
        key = (minute, principal.name, principal.kind, action, what, client_ip)
        with self._bucket_lock:
            self._buckets[key] = self._buckets.get(key, 0) + 1
        if self._flusher is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._bucket_lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_loop, name="cdp-audit-flush", daemon=True)
            self._flusher.start()
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(self.close)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except sqlite3.Error:   # the file is busy or gone for a moment: the counts stay for the next try
                pass

    def flush(self, everything: bool = False) -> int:
        """Append a row per counter whose minute is over (every counter with `everything`)."""
        current = int(time.time() // 60)
        with self._bucket_lock:
            done = {k: n for k, n in self._buckets.items() if everything or k[0] < current}
            for k in done:
                del self._buckets[k]
        if not done:
            return 0
        rows = [(datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.000"),
                 name, kind, action, what, n, ip, json.dumps({"aggregated": "per minute"}))
                for (minute, name, kind, action, what, ip), n in sorted(done.items())]
        try:
            self._append(rows)
        except sqlite3.Error:
            with self._bucket_lock:   # keep them for the next flush
                for k, n in done.items():
                    self._buckets[k] = self._buckets.get(k, 0) + n
            raise
        return len(rows)

    def close(self) -> None:
        """Append what is counted and close the file (server shutdown; a later write reopens it)."""
        self._stop.set()
        flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(FLUSH_SECONDS)
        self._stop = threading.Event()
        try:
            self.flush(everything=True)
        except sqlite3.Error:
            pass
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    # ---- reading ----------------------------------------------------------------------------
    def read(self, user: str | None = None, action: str | None = None, since: str | date | None = None,
             until: str | date | None = None, limit: int = 500) -> list[dict]:
        """Events, newest first. `user` matches the principal's name, `action` a whole action or
        its prefix (`query` for query.run/export/save); since/until are dates or ISO times (UTC)."""
        if not self.path.exists():
            return []
        where, params = [], []
        if user:
            where.append("principal = ?")
            params.append(user)
        if action:
            where.append("(action = ? or action like ?)")
            params += [action, action.rstrip(".") + ".%"]
        if since:
            where.append("at >= ?")
            params.append(parse_when(since))
        if until:
            where.append("at < ?")
            params.append(parse_when(until, end=True))
        sql = ("select id, at, principal, kind, action, what, rows, client_ip, detail from audit_events"
               + (" where " + " and ".join(where) if where else "") + " order by at desc, id desc limit ?")
        with self._lock:
            cur = self._connection().execute(sql, [*params, int(limit)])
            names = [c[0] for c in cur.description]
            out = [dict(zip(names, r)) for r in cur.fetchall()]
        for row in out:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        return out


# ---- who made a request -------------------------------------------------------------------------

def request_principal(request, name: str | None = None) -> Principal | None:
    """Who made `request`. The auth layer's `request.state.principal` when it set one (an object
    or mapping with `name` and `kind`: user | key); else what today's checks found: `name` from
    the workspace's who() (a user name, or API_KEY_PRINCIPAL for the key) or the login session."""
    given = getattr(request.state, "principal", None)
    if given is not None:
        if isinstance(given, Principal):
            return given
        get = given.get if isinstance(given, dict) else lambda k, d=None: getattr(given, k, d)
        kind = str(get("kind", "user"))
        return Principal(str(get("name")), "key" if kind in ("key", "api_key", "api-key") else "user")
    if name == API_KEY_PRINCIPAL:
        return Principal(API_KEY_PRINCIPAL, "key")
    if name:
        return Principal(name, "user")
    user = request.session.get("user") if "session" in request.scope else None
    return Principal(user, "user") if user else None


def may_read_audit(request, principal: Principal | None) -> bool:
    """Whether `principal` may read the audit log: an admin where the auth layer gives roles
    (`request.state.principal.role`), else any logged-in person (not a machine's key)."""
    given = getattr(request.state, "principal", None)
    role = (given.get("role") if isinstance(given, dict) else getattr(given, "role", None)) if given else None
    if role is not None:
        return str(getattr(role, "value", role)) == "admin"
    return principal is not None and principal.kind == "user"


def client_ip(request) -> str | None:
    return request.client.host if request.client else None


def _endpoint(request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    if path == "/profiles/lookup":   # which identifier, never its value
        path += "?" + ("email" if "email" in request.query_params else "phone"
                       if "phone" in request.query_params else "source")
    return path


def note_key_use(request, principal: Principal | None = None) -> None:
    """The Profile API accepted a key: counted for this minute (no I/O on the request's path)."""
    audit = getattr(request.app.state, "audit", None)
    if audit is not None:
        who = principal or request_principal(request, API_KEY_PRINCIPAL)
        audit.count(who, "api.key_use", _endpoint(request), client_ip(request))


def note_key_denied(request) -> None:
    """The Profile API refused a request for a missing or wrong key: counted for this minute."""
    audit = getattr(request.app.state, "audit", None)
    if audit is not None:
        given = "no key" if not request.headers.get("x-api-key") else "wrong key"
        audit.count(Principal(given, "key"), "api.key_denied", _endpoint(request), client_ip(request))
