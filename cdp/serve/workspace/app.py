"""The analyst workspace: server-rendered pages (Jinja2 + htmx, charts with Chart.js) mounted in
the same FastAPI app as the Profile API, so `cdp serve` serves both.

    /workspace/                customer 360: figures and charts per customer 360 database
    /workspace/people          profile viewer: search, then /workspace/people/{cdp_id}
    /workspace/sql             SQL editor (Presto SQL, read-only, row limit, CSV, save as query)
    /workspace/segments        segment builder (live count, compiled SQL, save to the tenant YAML)
    /workspace/audit           the audit log: who ran, exported, saved and viewed what (audit.py)
    /workspace/login, /logout  people log in; machines send X-API-Key instead

Who may do what: `access.PERMISSIONS` by role (admin, analyst, marketer; a key with the
`workspace` scope acts as an analyst, `admin` as an admin). The caller of every authenticated
request is `request.state.principal` (an `access.Principal`: name, kind user|key, role, scopes).
Sessions are server-side (sessions.py); every POST of a logged-in person carries the session's
CSRF token (header X-CSRF-Token, sent by htmx from the body's hx-headers, or a csrf_token form
field), else 403. A marketer's pages show PII masked (pii.py), masked here on the server.

Every page is rendered from one read-only warehouse connection opened for the request (see
reader.py); the `Server-Timing` header carries the server time of each response.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import io
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote as url_quote

import duckdb
import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from cdp import pii
from cdp.serve.access import KeyRing, Principal, WatchedFile, key_ring_for
from cdp.serve.audit import ACTIONS, AuditLog, may_read_audit, request_principal
from cdp.config import SEGMENT_OPS, TenantConfig
from cdp.stages.activation.queries import QueryError, run_query
from cdp.stages.activation.segments import UNIVERSE, Catalog
from cdp.serve.workspace import builder
from cdp.serve.workspace import customer360
from cdp.serve.workspace import profiles
from cdp.serve.workspace.auth import User, UsersFileError, load_users, verify_password
from cdp.serve.workspace.reader import WarehouseBusy, read_warehouse
from cdp.serve.workspace.sessions import LoginThrottle, SessionStore

HERE = Path(__file__).parent
PREFIX = "/workspace"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
CSV_MAX_ROWS = 1_000_000
SAMPLE_MEMBERS = 5
AUDIT_ROWS = 500  # newest events the audit page shows
QUERY_SECONDS = 60  # an ad hoc query running longer is interrupted (it holds a worker thread)
QUEUE_PER_SLOT = 8  # requests waiting for a query slot, per slot, before the workspace answers 503
WORKSPACE_NICE = 10  # the query threads' CPU priority (Linux nice): the Profile API's thread comes first
log = logging.getLogger("cdp.workspace")


SESSION_COOKIE = "cdp_session"
LOGIN_COOKIE = "cdp_login"   # double-submit token of the login form (no session yet)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class NotLoggedIn(Exception):
    pass


class CsrfRefused(Exception):
    pass


class WorkspaceOnly:
    """Runs an ASGI middleware for the workspace's requests only: a Profile API request passes
    straight to the app, without the workspace's session cookie parsing or timing (measured:
    they tripled the API's CPU per request). Use it for every middleware the workspace adds."""

    def __init__(self, app, middleware, **options):
        self.app = app
        self.wrapped = middleware(app, **options)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(PREFIX):
            await self.wrapped(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class ServerTiming:
    """The `Server-Timing` header: the server's time until the response starts (plain ASGI: a
    BaseHTTPMiddleware costs a task group and memory streams per request)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1000:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)


class Forbidden(Exception):
    def __init__(self, message: str):
        self.message = message


WHAT = {"view": "the workspace", "pii": "unmasked personal data", "query": "the SQL editor and CSV export",
        "save": "saving segments and queries", "replace": "changing a saved segment or query",
        "admin": "administration"}


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


def _fmt(value) -> str:
    if _is_null(value):
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _is_null(value) -> bool:
    return value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def mount_workspace(app: FastAPI, cfg: TenantConfig, keys: KeyRing | None = None, instance=None) -> Workspace:
    """`keys`: the Profile API's KeyRing (app.state.keys) unless given."""
    keys = keys or getattr(app.state, "keys", None) or key_ring_for(cfg)
    try:
        # the API's audit log, if mounted beside it
        ws = Workspace(cfg, keys, instance, getattr(app.state, "audit", None))
    except sqlite3.Error as exc:
        raise RuntimeError(f"workspace.sessions_file: cannot open {cfg.resolve(cfg.workspace.sessions_file)} "
                           f"({exc}); it must be writable (CDP_SESSIONS_FILE sets it)") from None
    app.state.workspace = ws
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["fmt"] = _fmt
    templates.env.tests["null"] = _is_null
    templates.env.globals.update(prefix=PREFIX, tenant=cfg.tenant)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="workspace_static")

    app.add_middleware(WorkspaceOnly, middleware=ServerTiming)

    # ---- who is calling, and may they ------------------------------------------------------
    def principal(request: Request) -> Principal:
        """The caller (cached in request.state.principal): the person of a live session, else the
        API key in X-API-Key. A session whose user was removed ends here; the role is the users
        file's current one."""
        found = getattr(request.state, "principal", None)
        if found is not None:
            return found
        sid = request.cookies.get(SESSION_COOKIE)
        session = ws.sessions.get(sid) if sid else None
        if session is not None:
            try:
                user = ws.users().get(session.user)
            except UsersFileError as exc:
                raise Forbidden(f"the users file is broken: {exc}") from None
            if user is None:   # removed from the users file: the session ends now
                ws.sessions.delete(sid)
            else:
                request.state.session = session
                request.state.principal = Principal(user.name, "user", user.role)
                return request.state.principal
        key = ws.keys.verify(request.headers.get("x-api-key"))
        if key is not None:
            request.state.principal = key
            return key
        raise NotLoggedIn()

    def audit(request: Request, user: Principal | None, action: str, what: str = "", rows: int | None = None,
              **detail):
        """Append to the audit log, as the principal who() found (request.state.principal)."""
        ws.audit.record(request_principal(request, user.name if user else None), action, what, rows,
                        client_ip(request), **detail)

    def who(request: Request, need: str = "view") -> Principal:
        p = principal(request)
        if p.role is None:
            raise Forbidden(f"the key {p.name} has no workspace scope (it has {', '.join(sorted(p.scopes))}); "
                            "a key needs the workspace or admin scope")
        if not p.may(need):
            raise Forbidden(f"{p.label} ({p.role}) may not use {WHAT[need]}")
        return p

    async def csrf_guard(request: Request) -> None:
        """A state-changing request of a logged-in person must carry the session's CSRF token (a
        key-authenticated call has no cookie a forged page could ride on)."""
        if request.method not in UNSAFE:
            return
        try:
            principal(request)
        except NotLoggedIn:
            return   # the endpoint answers 401 / the login page
        session = getattr(request.state, "session", None)
        if session is None:
            return
        given = request.headers.get("x-csrf-token")
        if given is None:
            form = await request.form()
            given = form.get("csrf_token")
        if not isinstance(given, str) or not secrets.compare_digest(given.encode(), session.csrf.encode()):
            raise CsrfRefused()

    post = functools.partial(app.post, include_in_schema=False, dependencies=[Depends(csrf_guard)])

    @app.exception_handler(NotLoggedIn)
    async def _login_first(request: Request, _: NotLoggedIn):
        target = f"{PREFIX}/login?next={url_quote(request.url.path)}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        if request.method in UNSAFE:
            return Response("not logged in", status_code=401, media_type="text/plain")
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden):
        if request.headers.get("hx-request") or request.method in UNSAFE:
            return page(request, "_error.html", status=403, message=exc.message)
        return page(request, "forbidden.html", status=403, message=exc.message)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused):
        return page(request, "_error.html", status=403,
                    message="refused: the request did not carry this session's CSRF token; reload the page")

    def off_loop(handler):
        """Run a blocking workspace handler in the query pool (ws.queries), off the event loop.
        A handler with a `form` parameter gets the request's parsed form (read on the loop)."""
        sig = inspect.signature(handler)
        wants_form = "form" in sig.parameters

        async def run(request: Request, **kwargs):
            if wants_form:
                kwargs["form"] = await request.form()
            return await ws.queries.run(handler, request, **kwargs)

        # FastAPI reads the parameters from the signature (not from __wrapped__: it would take
        # the handler for a sync one and run this coroutine function in its own thread pool)
        run.__name__, run.__doc__ = handler.__name__, handler.__doc__
        run.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "form"])
        return run

    @app.exception_handler(QueriesBusy)
    async def _queries_busy(request: Request, exc: QueriesBusy):
        return page(request, "_error.html", status=503, message=str(exc))

    @app.exception_handler(QueryTimeout)
    async def _query_timeout(request: Request, exc: QueryTimeout):
        return page(request, "_error.html", status=503, message=str(exc))

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        p = getattr(request.state, "principal", None)
        session = getattr(request.state, "session", None)
        can = {need: bool(p and p.role and p.may(need)) for need in WHAT}
        result = context.get("result")
        if not can["pii"] and isinstance(result, dict) and result.get("sample") is not None:
            # the segment builder's sample members: masked on the server for a marketer
            context["result"] = {**result, "sample": pii.mask_frame(result["sample"])}
        return templates.TemplateResponse(
            request, template, {"user": p.label if p else None, "principal": p, "can": can,
                                "csrf": session.csrf if session else "", **context}, status_code=status)

    def busy(request: Request, exc: WarehouseBusy, partial: bool = False) -> HTMLResponse:
        if partial:
            return page(request, "_error.html", status=503, message=str(exc))
        return page(request, "busy.html", status=503, message=str(exc))

    def client_ip(request: Request) -> str:
        # uvicorn sets the client from X-Forwarded-For only for --forwarded-allow-ips proxies
        return request.client.host if request.client else "unknown"

    # ---- login ------------------------------------------------------------------------------
    def login_page(request: Request, next: str, error: str | None, status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", status=status, next=next, error=error, login_token=token)
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path=f"{PREFIX}/login")
        return response

    @app.get(f"{PREFIX}/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = PREFIX + "/"):
        return login_page(request, next, None)

    @app.post(f"{PREFIX}/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        name, password = str(form.get("username", "")).strip()[:100], str(form.get("password", ""))
        target = str(form.get("next") or PREFIX + "/")
        if not target.startswith(PREFIX + "/") and target != PREFIX:
            target = PREFIX + "/"
        given, expected = str(form.get("login_token", "")), request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
            # login CSRF: a forged page logging the browser in as someone else
            return login_page(request, target, "the login form expired; log in again", status=403)
        try:
            users = ws.users()
        except UsersFileError as exc:
            return login_page(request, target, str(exc), status=500)
        ip = client_ip(request)
        wait = ws.throttle.wait(ip, name)
        if wait:
            return login_page(request, target, f"too many failed logins from this address; try again in "
                                               f"{wait:.0f} s", status=429)
        # scrypt takes tens of milliseconds: off the event loop; an unknown name costs the same
        user = users.get(name)
        stored = user.password if user else next((u.password for u in users.values()), "scrypt$16384$8$1$00$00")
        if await run_in_threadpool(verify_password, password, stored) and user is not None:
            ws.throttle.succeeded(ip, name)
            ws.sessions.delete(request.cookies.get(SESSION_COOKIE))   # no session fixation
            session = ws.sessions.create(name)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(SESSION_COOKIE, session.sid, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/",
                                max_age=int(ws.sessions.absolute))
            response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
            return response
        ws.throttle.failed(ip, name)
        error = "wrong user name or password" if users else (
            f"nobody can log in yet: add a user with `cdp user add NAME --role R` (writes {ws.users_path})")
        return login_page(request, target, error, status=401)

    @post(f"{PREFIX}/logout")
    def logout(request: Request):
        ws.sessions.delete(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    # ---- customer 360 -----------------------------------------------------------------------
    @app.get(f"{PREFIX}/", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def customer_360(request: Request):
        who(request)
        def figures():
            with ws.read() as con:
                return ([customer360.database_card(con, ws.cfg, name) for name in ws.cfg.customer_databases],
                        customer360.stitch_figures(con, ws.cfg))

        try:
            cards, stitch = ws.figures.get(ws.cfg.warehouse_path, figures)
        except WarehouseBusy as exc:
            return busy(request, exc)
        rebuilds = {card.name: customer360.last_rebuild(ws.instance, card.name, ws.cfg.warehouse_path)
                    for card in cards}
        cards = [dataclasses.replace(card, rebuild=rebuilds[card.name]) for card in cards]
        return page(request, "customer360.html", cards=cards, stitch=stitch, nav="c360")

    # ---- profile viewer ---------------------------------------------------------------------
    @app.get(f"{PREFIX}/people", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def people(request: Request, q: str = ""):
        p = who(request)
        try:
            with ws.read() as con:
                read_as, found = profiles.search(con, ws.cfg, q) if q.strip() else ("", None)
        except WarehouseBusy as exc:
            return busy(request, exc, partial=bool(request.headers.get("hx-request")))
        if found is not None and not p.may("pii"):
            found = profiles.Table(found.columns, pii.mask_rows(found.columns, found.rows))
        name = "_people_results.html" if request.headers.get("hx-request") else "people.html"
        return page(request, name, q=q, read_as=read_as, found=found, nav="people")

    @app.get(f"{PREFIX}/people/{{cdp_id}}", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def person(request: Request, cdp_id: str):
        user = who(request)
        try:
            with ws.read() as con:
                found = profiles.person(con, ws.cfg, cdp_id[:64])
        except WarehouseBusy as exc:
            return busy(request, exc)
        if found is None:
            return page(request, "people.html", status=404, q=cdp_id, read_as="id", found=None, nav="people",
                        error=f"no person with cdp_id {cdp_id} in c360.customer_360")
        audit(request, user, "person.view", cdp_id[:64], 1)
        if not user.may("pii"):
            found = profiles.masked(found)
        return page(request, "person.html", person=found, nav="people", masked=not user.may("pii"))

    # ---- SQL editor -------------------------------------------------------------------------
    def catalog_tree(con) -> dict[str, dict[str, dict[str, str]]]:
        tree: dict = {}
        for (schema, table), cols in sorted(Catalog(con).columns.items()):
            tree.setdefault(schema, {})[table] = cols
        return tree

    @app.get(f"{PREFIX}/sql", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def sql_editor(request: Request, query: str = ""):
        who(request, "query")
        sql, name = "select * from c360.customer_360", ""
        saved = _saved_queries(ws.cfg)
        if query in saved:
            sql, name = saved[query].read_text(), query
        try:
            with ws.read() as con:
                tree = catalog_tree(con)
        except WarehouseBusy as exc:
            return busy(request, exc)
        return page(request, "sql.html", tree=tree, sql=sql, name=name, saved=sorted(saved),
                    limit=DEFAULT_LIMIT, nav="sql")

    @post(f"{PREFIX}/sql/run", response_class=HTMLResponse)
    @off_loop
    def sql_run(request: Request, form):
        user = who(request, "query")
        sql = str(form.get("sql", ""))
        try:
            limit = max(1, min(int(form.get("limit") or DEFAULT_LIMIT), MAX_LIMIT))
        except ValueError:
            return page(request, "_error.html", status=422, message="limit: a whole number of rows, please")
        t0 = time.perf_counter()
        try:
            with ws.read() as con:
                df = run_query(con, sql, source="query", limit=limit + 1)
        except WarehouseBusy as exc:
            return busy(request, exc, partial=True)
        except QueryError as exc:
            return page(request, "_error.html", status=422, message=str(exc))
        except duckdb.Error as exc:
            return page(request, "_error.html", status=422, message=f"the warehouse refused the query: {exc}")
        took = (time.perf_counter() - t0) * 1000
        more = len(df) > limit
        df = df.head(limit)
        audit(request, user, "query.run", sql, len(df), more_rows=more, ms=round(took))
        return page(request, "_sql_results.html", columns=list(df.columns),
                    rows=df.itertuples(index=False, name=None), count=len(df), more=more, limit=limit, took=took)

    @post(f"{PREFIX}/sql/csv")
    @off_loop
    def sql_csv(request: Request, form):
        user = who(request, "query")
        try:
            with ws.read() as con:
                df = run_query(con, str(form.get("sql", "")), source="query", limit=CSV_MAX_ROWS)
        except WarehouseBusy as exc:
            return Response(str(exc), status_code=503, media_type="text/plain")
        except (QueryError, duckdb.Error) as exc:
            return Response(str(exc), status_code=422, media_type="text/plain")
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        name = str(form.get("name") or "query").strip() or "query"
        name = "".join(c for c in name if c.isalnum() or c in "_-") or "query"
        audit(request, user, "query.export", str(form.get("sql", "")), len(df), file=f"{name}.csv")
        return StreamingResponse(iter([buf.getvalue()]), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @post(f"{PREFIX}/sql/save", response_class=HTMLResponse)
    async def sql_save(request: Request):
        user = who(request, "save")
        form = await request.form()
        name = str(form.get("name", "")).strip()
        if form.get("overwrite") and name in _saved_queries(ws.cfg):
            who(request, "replace")
        try:
            path = builder.save_query(ws.cfg, name, str(form.get("sql", "")), str(form.get("description", "")),
                                      overwrite=bool(form.get("overwrite")))
        except builder.BuilderError as exc:
            return page(request, "_error.html", status=422, message=str(exc))
        audit(request, user, "query.save", name, path=path, sql=str(form.get("sql", "")))
        return page(request, "_saved.html", message=f"saved as {path} - the pipeline builds it as "
                                                    f"the asset queries/{name} (table queries.{name})")

    # ---- segment builder --------------------------------------------------------------------
    def builder_context(con, form: builder.BuilderForm) -> dict:
        catalog = Catalog(con)
        tables = sorted(f"{s}.{t}" for (s, t), cols in catalog.columns.items() if "cdp_id" in cols)
        columns = {}
        for row in form.rows:
            if row.kind == "condition" and row.table in tables:
                columns[row.table] = dict(sorted(catalog.columns[tuple(row.table.split("."))].items()))
        return {"form": form, "tables": tables, "columns": columns, "ops": SEGMENT_OPS,
                "segments": sorted(n for n in ws.cfg.segments if n != form.name) if form.name in ws.cfg.segments
                else sorted(ws.cfg.segments)}

    def preview(con, form: builder.BuilderForm) -> dict:
        """The live count, a few members, the SQL (the segments module's compiler) and the YAML."""
        defn, compiled = builder.validated_segment(ws.cfg, form, con)
        count = con.execute(f"select count(*) from ({compiled.sql})", compiled.params).fetchone()[0]
        # any 5 members: without the compiled query's order by, the scan stops early
        sample = con.execute(f"""select c.* from {UNIVERSE[0]}.{UNIVERSE[1]} c where c.cdp_id in
                                 (select cdp_id from ({compiled.sql}) limit {SAMPLE_MEMBERS})
                                 order by c.cdp_id""", compiled.params).df()
        total = con.execute(f"select count(*) from {UNIVERSE[0]}.{UNIVERSE[1]}").fetchone()[0]
        return {"count": count, "total": total, "sql": compiled.sql, "params": compiled.params,
                "yaml": builder.yaml_text(form.name or "draft", defn), "sample": sample}

    @app.get(f"{PREFIX}/segments", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def segments_page(request: Request, segment: str = ""):
        who(request)
        form = builder.BuilderForm()
        note = None
        if segment in ws.cfg.segments:
            form = builder.BuilderForm.from_segment(segment, ws.cfg.segments[segment]) or form
            if not form.name:
                note = f"segment {segment} is nested deeper than the builder shows; edit it in the tenant YAML"
        try:
            with ws.read() as con:
                ctx = builder_context(con, form)
                try:
                    result = preview(con, form) if form.name else None
                except builder.BuilderError as exc:
                    result = {"error": str(exc)}
        except WarehouseBusy as exc:
            return busy(request, exc)
        return page(request, "segments.html", nav="segments", result=result, note=note,
                    saved=sorted(ws.cfg.segments), **ctx)

    def builder_partial(request: Request, form, template: str, build) -> HTMLResponse:
        """A builder fragment: the posted form, read against the warehouse by `build`."""
        who(request)
        form = builder.BuilderForm.parse(form)
        try:
            with ws.read() as con:
                ctx = build(con, form)
        except WarehouseBusy as exc:
            return busy(request, exc, partial=True)
        return page(request, template, **ctx)

    def preview_or_error(con, form) -> dict:
        try:
            return {"result": preview(con, form)}
        except builder.BuilderError as exc:
            return {"result": {"error": str(exc)}}

    @post(f"{PREFIX}/segments/form", response_class=HTMLResponse)
    @off_loop
    def segments_form(request: Request, form):
        """Re-render the builder after a structural change (row added/removed, table changed)."""
        return builder_partial(request, form, "_segment_form.html", builder_context)

    @post(f"{PREFIX}/segments/preview", response_class=HTMLResponse)
    @off_loop
    def segments_preview(request: Request, form):
        """Live count, compiled SQL and YAML of the segment being built."""
        return builder_partial(request, form, "_segment_preview.html", preview_or_error)

    @post(f"{PREFIX}/segments/save", response_class=HTMLResponse)
    @off_loop
    def segments_save(request: Request, form):
        user = who(request, "save")
        form = builder.BuilderForm.parse(form)
        if form.name and form.name in ws.cfg.segments:
            who(request, "replace")   # changes what the destinations of that segment get
        try:
            if not form.name:
                raise builder.BuilderError("segments: give the segment a name before saving")
            builder.check_not_overwriting(ws.cfg, form)
            with ws.read() as con:
                defn, _ = builder.validated_segment(ws.cfg, form, con)
            ws.cfg = builder.save_segment(ws.cfg, form.name, defn)
        except WarehouseBusy as exc:
            return busy(request, exc, partial=True)
        except builder.BuilderError as exc:
            return page(request, "_error.html", status=422, message=str(exc))
        audit(request, user, "segment.save", form.name, config=ws.cfg.config_path)
        return page(request, "_saved.html",
                    message=f"saved segments.{form.name} to {ws.cfg.config_path}; the next pipeline run builds it "
                            f"(asset activation/segments reads the segments when it runs: no reload needed) "
                            f"into table activation.segment_{form.name}")

    # ---- audit log --------------------------------------------------------------------------
    @app.get(f"{PREFIX}/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request, user: str = "", action: str = "", since: str = "", until: str = ""):
        viewer = who(request)
        if not may_read_audit(request, request_principal(request, viewer.name)):
            return page(request, "_error.html", status=403, message="the audit log is for administrators")
        filters = {"user": user.strip(), "action": action.strip(), "since": since.strip(), "until": until.strip()}
        try:
            events = ws.audit.read(**filters, limit=AUDIT_ROWS)
            error = None
        except ValueError as exc:
            events, error = [], str(exc)
        audit(request, viewer, "audit.view", " ".join(f"{k}={v}" for k, v in filters.items() if v))
        return page(request, "audit.html", nav="audit", events=events, filters=filters, actions=ACTIONS,
                    error=error, limit=AUDIT_ROWS, path=ws.audit.path)

    return ws


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


def _saved_queries(cfg: TenantConfig) -> dict[str, Path]:
    from cdp.stages.activation.queries import saved_queries

    try:
        return saved_queries(cfg)
    except QueryError:
        return {}


def create_server(cfg: TenantConfig, api_key: str | None = None, instance=None) -> FastAPI:
    """The Profile API with the analyst workspace mounted beside it (what `cdp serve` runs)."""
    from cdp.serve.api import create_app

    app = create_app(cfg, api_key=api_key)
    if instance is None and os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        instance = dg.DagsterInstance.get()
    mount_workspace(app, cfg, app.state.keys, instance)
    return app
