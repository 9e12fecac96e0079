"""The workspace's per-server state: the tenant config (reloaded after a save), the users, the
API keys, the sessions, the audit log, the Dagster instance and the query pool, in which every
blocking piece of a page (warehouse queries, CSV export, rendering) runs off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from cdp.config import TenantConfig
from cdp.serve.access import KeyRing, WatchedFile
from cdp.serve.audit import AuditLog
from cdp.serve.workspace import customer360
from cdp.serve.workspace.auth import User, load_users
from cdp.serve.workspace.reader import read_warehouse
from cdp.serve.workspace.sessions import LoginThrottle, SessionStore

QUERY_SECONDS = 60  # an ad hoc query running longer is interrupted (it holds a worker thread)
QUEUE_PER_SLOT = 8  # requests waiting for a query slot, per slot, before the workspace answers 503
WORKSPACE_NICE = 10  # the query threads' CPU priority (Linux nice): the Profile API's thread comes first


class QueriesBusy(Exception):
    pass


class QueryPool:
    """The workspace's blocking work (warehouse queries, CSV export, page rendering) runs here, in
    `size` threads of its own, never on the event loop: a long query cannot delay a Profile API
    lookup, and the API keeps its CPU (the threads run at nice WORKSPACE_NICE, and each
    warehouse connection uses one DuckDB thread). At most `size` run at once; past
    size * (1 + QUEUE_PER_SLOT) waiting or running, a request is answered 503."""

    def __init__(self, size: int):
        self.size = size
        self.limit = size * (1 + QUEUE_PER_SLOT)
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="cdp-workspace", initializer=_lower_priority)
        self._inflight = 0
        self._lock = threading.Lock()

    async def run(self, fn, *args, **kwargs):
        with self._lock:
            if self._inflight >= self.limit:
                raise QueriesBusy(f"{self._inflight} workspace requests are running or waiting "
                                  f"(at most {self.size} run at once); retry in a moment")
            self._inflight += 1
        try:
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            with self._lock:
                self._inflight -= 1


def _lower_priority() -> None:
    try:  # on Linux a thread is a task with its own nice value
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKSPACE_NICE)
    except (AttributeError, OSError):
        pass


class Workspace:
    """Per-server state: the tenant config (reloaded after a save), the users (re-read when the
    file changes), the API keys, the sessions, the Dagster instance."""

    def __init__(self, cfg: TenantConfig, keys: KeyRing, instance=None, audit: AuditLog | None = None):
        self.cfg, self.keys, self.instance = cfg, keys, instance
        self.audit = audit or AuditLog(cfg.resolve(cfg.audit.path))
        self.figures = customer360.FigureCache()
        self._users = WatchedFile(self.users_path, load_users)
        ws = cfg.workspace
        self.sessions = SessionStore(cfg.resolve(ws.sessions_file), idle=ws.session_idle_minutes * 60,
                                     absolute=ws.session_max_hours * 3600)
        self.throttle = LoginThrottle(self.sessions)
        self.queries = QueryPool(cfg.workspace.max_queries)

    @property
    def users_path(self) -> Path:
        return self.cfg.resolve(self.cfg.workspace.users_file)

    def users(self) -> dict[str, User]:
        return self._users.get()

    @contextlib.contextmanager
    def read(self):
        """A read-only warehouse connection whose queries stop after workspace.query_seconds."""
        with read_warehouse(self.cfg) as con, _time_limit(con, self.cfg.workspace.query_seconds):
            yield con


class QueryTimeout(duckdb.Error):
    """A workspace query ran past its time limit and was interrupted."""


@contextlib.contextmanager
def _time_limit(con, seconds: float = QUERY_SECONDS):
    """Interrupt the connection's query after `seconds` (DuckDB raises InterruptException)."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        raise QueryTimeout(f"the query ran longer than {seconds:.0f} s and was stopped; "
                           "add filters or save it as a query for the pipeline to build") from None
    finally:
        timer.cancel()
