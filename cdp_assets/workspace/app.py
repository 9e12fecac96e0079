"""The analyst workspace: server-rendered pages (Jinja2 + htmx, charts with Chart.js) mounted in
the same FastAPI app as the Profile API, so `cdp serve` serves both.

    /workspace/                customer 360: figures and charts per customer 360 database
    /workspace/people          profile viewer: search, then /workspace/people/{cdp_id}
    /workspace/sql             SQL editor (Presto SQL, read-only, row limit, CSV, save as query)
    /workspace/segments        segment builder (live count, compiled SQL, save to the tenant YAML)
    /workspace/login, /logout  people log in; machines send X-API-Key instead

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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote as url_quote

import duckdb
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from ..config import SEGMENT_OPS, TenantConfig
from ..queries import QueryError, run_query
from ..segments import UNIVERSE, Catalog
from . import builder, customer360, profiles
from .auth import UsersFileError, load_users, verify_password
from .reader import WarehouseBusy, read_warehouse

HERE = Path(__file__).parent
PREFIX = "/workspace"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
CSV_MAX_ROWS = 1_000_000
SAMPLE_MEMBERS = 5
QUERY_SECONDS = 60  # an ad hoc query running longer is interrupted (it holds a worker thread)
QUEUE_PER_SLOT = 8  # requests waiting for a query slot, per slot, before the workspace answers 503
WORKSPACE_NICE = 10  # the query threads' CPU priority (Linux nice): the Profile API's thread comes first
log = logging.getLogger("cdp.workspace")


class NotLoggedIn(Exception):
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


class LoginThrottle:
    """After FAILURES failed logins for a name within WINDOW seconds, refuse it until the oldest
    of them is WINDOW seconds old (password guessing; kept in memory, per server process)."""
    FAILURES, WINDOW = 5, 300.0

    def __init__(self):
        self._failed: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> list[float]:
        times = [t for t in self._failed.get(name, []) if now - t < self.WINDOW]
        self._failed[name] = times
        return times

    def wait(self, name: str) -> float:
        now = time.monotonic()
        with self._lock:
            times = self._recent(name, now)
            return self.WINDOW - (now - times[0]) if len(times) >= self.FAILURES else 0.0

    def failed(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(name, now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failed.pop(name, None)


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
    """Per-server state: the tenant config (reloaded after a save), the users, the Dagster instance."""

    def __init__(self, cfg: TenantConfig, api_key: str, instance=None):
        self.cfg, self.api_key, self.instance = cfg, api_key, instance
        self.figures = customer360.FigureCache()
        self.throttle = LoginThrottle()
        self.queries = QueryPool(cfg.workspace.max_queries)

    @property
    def users_path(self) -> Path:
        return self.cfg.resolve(self.cfg.workspace.users_file)

    def users(self) -> dict[str, str]:
        return load_users(self.users_path)

    @contextlib.contextmanager
    def read(self):
        """A read-only warehouse connection whose queries stop after workspace.query_seconds."""
        with read_warehouse(self.cfg.warehouse_path) as con, _time_limit(con, self.cfg.workspace.query_seconds):
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


def mount_workspace(app: FastAPI, cfg: TenantConfig, api_key: str, instance=None) -> Workspace:
    ws = Workspace(cfg, api_key, instance)
    app.state.workspace = ws
    secret = os.environ.get(cfg.workspace.session_secret_env)
    if not secret:
        log.warning(f"workspace.session_secret_env: {cfg.workspace.session_secret_env} is not set; "
                    "logins last until the server restarts")
        secret = secrets.token_urlsafe(32)
    app.add_middleware(WorkspaceOnly, middleware=SessionMiddleware, secret_key=secret, session_cookie="cdp_session",
                       max_age=12 * 3600, same_site="lax", path="/")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["fmt"] = _fmt
    templates.env.tests["null"] = _is_null
    templates.env.globals.update(prefix=PREFIX, tenant=cfg.tenant)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="workspace_static")

    app.add_middleware(WorkspaceOnly, middleware=ServerTiming)

    def who(request: Request) -> str:
        user = request.session.get("user")
        if user:
            return user
        given = request.headers.get("x-api-key")
        if given and secrets.compare_digest(given.encode(), ws.api_key.encode()):
            return "api-key"
        raise NotLoggedIn()

    @app.exception_handler(NotLoggedIn)
    async def _login_first(request: Request, _: NotLoggedIn):
        target = f"{PREFIX}/login?next={url_quote(request.url.path)}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

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
        return templates.TemplateResponse(request, template, {"user": request.session.get("user"), **context},
                                          status_code=status)

    def busy(request: Request, exc: WarehouseBusy, partial: bool = False) -> HTMLResponse:
        if partial:
            return page(request, "_error.html", status=503, message=str(exc))
        return page(request, "busy.html", status=503, message=str(exc))

    # ---- login ------------------------------------------------------------------------------
    @app.get(f"{PREFIX}/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = PREFIX + "/"):
        return page(request, "login.html", next=next, error=None)

    @app.post(f"{PREFIX}/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        target = str(form.get("next") or PREFIX + "/")
        if not target.startswith(PREFIX):
            target = PREFIX + "/"
        try:
            users = ws.users()
        except UsersFileError as exc:
            return page(request, "login.html", status=500, next=target, error=str(exc))
        wait = ws.throttle.wait(name)
        if wait:
            return page(request, "login.html", status=429, next=target,
                        error=f"too many failed logins for {name}; try again in {wait:.0f} s")
        # scrypt takes tens of milliseconds: off the event loop; an unknown name costs the same
        stored = users.get(name, next(iter(users.values()), "scrypt$16384$8$1$00$00"))
        if await run_in_threadpool(verify_password, password, stored) and name in users:
            ws.throttle.succeeded(name)
            request.session.clear()
            request.session["user"] = name
            return RedirectResponse(target, status_code=303)
        ws.throttle.failed(name)
        error = "wrong user name or password" if users else (
            f"nobody can log in yet: add a user with `cdp user add NAME` (writes {ws.users_path})")
        return page(request, "login.html", status=401, next=target, error=error)

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    def logout(request: Request):
        request.session.clear()
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    # ---- customer 360 -----------------------------------------------------------------------
    @app.get(f"{PREFIX}/", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def customer_360(request: Request):
        user = who(request)
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
        return page(request, "customer360.html", user=user, cards=cards, stitch=stitch, nav="c360")

    # ---- profile viewer ---------------------------------------------------------------------
    @app.get(f"{PREFIX}/people", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def people(request: Request, q: str = ""):
        who(request)
        try:
            with ws.read() as con:
                read_as, found = profiles.search(con, ws.cfg, q) if q.strip() else ("", None)
        except WarehouseBusy as exc:
            return busy(request, exc, partial=bool(request.headers.get("hx-request")))
        name = "_people_results.html" if request.headers.get("hx-request") else "people.html"
        return page(request, name, q=q, read_as=read_as, found=found, nav="people")

    @app.get(f"{PREFIX}/people/{{cdp_id}}", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def person(request: Request, cdp_id: str):
        who(request)
        try:
            with ws.read() as con:
                found = profiles.person(con, ws.cfg, cdp_id[:64])
        except WarehouseBusy as exc:
            return busy(request, exc)
        if found is None:
            return page(request, "people.html", status=404, q=cdp_id, read_as="id", found=None, nav="people",
                        error=f"no person with cdp_id {cdp_id} in c360.customer_360")
        return page(request, "person.html", person=found, nav="people")

    # ---- SQL editor -------------------------------------------------------------------------
    def catalog_tree(con) -> dict[str, dict[str, dict[str, str]]]:
        tree: dict = {}
        for (schema, table), cols in sorted(Catalog(con).columns.items()):
            tree.setdefault(schema, {})[table] = cols
        return tree

    @app.get(f"{PREFIX}/sql", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def sql_editor(request: Request, query: str = ""):
        who(request)
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

    @app.post(f"{PREFIX}/sql/run", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def sql_run(request: Request, form):
        who(request)
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
        return page(request, "_sql_results.html", columns=list(df.columns),
                    rows=df.itertuples(index=False, name=None), count=len(df), more=more, limit=limit, took=took)

    @app.post(f"{PREFIX}/sql/csv", include_in_schema=False)
    @off_loop
    def sql_csv(request: Request, form):
        who(request)
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
        return StreamingResponse(iter([buf.getvalue()]), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @app.post(f"{PREFIX}/sql/save", response_class=HTMLResponse, include_in_schema=False)
    async def sql_save(request: Request):
        who(request)
        form = await request.form()
        name = str(form.get("name", "")).strip()
        try:
            path = builder.save_query(ws.cfg, name, str(form.get("sql", "")), str(form.get("description", "")),
                                      overwrite=bool(form.get("overwrite")))
        except builder.BuilderError as exc:
            return page(request, "_error.html", status=422, message=str(exc))
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

    @app.post(f"{PREFIX}/segments/form", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def segments_form(request: Request, form):
        """Re-render the builder after a structural change (row added/removed, table changed)."""
        return builder_partial(request, form, "_segment_form.html", builder_context)

    @app.post(f"{PREFIX}/segments/preview", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def segments_preview(request: Request, form):
        """Live count, compiled SQL and YAML of the segment being built."""
        return builder_partial(request, form, "_segment_preview.html", preview_or_error)

    @app.post(f"{PREFIX}/segments/save", response_class=HTMLResponse, include_in_schema=False)
    @off_loop
    def segments_save(request: Request, form):
        who(request)
        form = builder.BuilderForm.parse(form)
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
        return page(request, "_saved.html",
                    message=f"saved segments.{form.name} to {ws.cfg.config_path}; the pipeline builds it as the "
                            f"asset activation/segment_{form.name} on its next run")

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
    from ..queries import saved_queries

    try:
        return saved_queries(cfg)
    except QueryError:
        return {}


def create_server(cfg: TenantConfig, api_key: str | None = None, instance=None) -> FastAPI:
    """The Profile API with the analyst workspace mounted beside it (what `cdp serve` runs)."""
    from ..api import create_app

    app = create_app(cfg, api_key=api_key)
    key = api_key if api_key is not None else os.environ[cfg.profile_api.api_key_env]
    if instance is None and os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        instance = dg.DagsterInstance.get()
    mount_workspace(app, cfg, key, instance)
    return app
