"""What every workspace page shares: who is calling and whether they may (sessions, API keys,
roles), the CSRF guard of state-changing requests, rendering a template, the error pages, the
query pool hand-off (`off_loop`) and the audit trail. One `Web` per server, handed to each
route module (routes/).

The caller of every authenticated request is `request.state.principal` (an `access.Principal`:
name, kind user|key, role, scopes). Sessions are server-side (sessions.py); every POST of a
logged-in person carries the session's CSRF token (header X-CSRF-Token, sent by htmx from the
body's hx-headers, or a csrf_token form field), else 403. A marketer's pages show PII masked
(pii.py), masked here on the server.
"""

from __future__ import annotations

import inspect
import math
import secrets
import time
from urllib.parse import quote as url_quote

import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cdp import pii
from cdp.serve.access import Principal
from cdp.serve.audit import request_principal
from cdp.serve.workspace.auth import UsersFileError
from cdp.serve.workspace.reader import WarehouseBusy
from cdp.serve.workspace.state import QueriesBusy, QueryTimeout, Workspace

PREFIX = "/workspace"
SESSION_COOKIE = "cdp_session"
LOGIN_COOKIE = "cdp_login"   # double-submit token of the login form (no session yet)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
WHAT = {"view": "the workspace", "pii": "unmasked personal data", "query": "the SQL editor and CSV export",
        "save": "saving segments and queries", "replace": "changing a saved segment or query",
        "admin": "administration"}


class NotLoggedIn(Exception):
    pass


class CsrfRefused(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, message: str):
        self.message = message


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


def workspace_templates(tenant: str, directory: str) -> Jinja2Templates:
    templates = Jinja2Templates(directory=directory)
    templates.env.filters["fmt"] = _fmt
    templates.env.tests["null"] = _is_null
    templates.env.globals.update(prefix=PREFIX, tenant=tenant)
    return templates


class Web:
    """The request helpers of one workspace server (its state `ws`, its templates)."""

    def __init__(self, app: FastAPI, ws: Workspace, templates: Jinja2Templates):
        self.app, self.ws, self.templates = app, ws, templates

    # ---- who is calling, and may they ------------------------------------------------------
    def principal(self, request: Request) -> Principal:
        """The caller (cached in request.state.principal): the person of a live session, else the
        API key in X-API-Key. A session whose user was removed ends here; the role is the users
        file's current one."""
        ws = self.ws
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

    def audit(self, request: Request, user: Principal | None, action: str, what: str = "",
              rows: int | None = None, **detail):
        """Append to the audit log, as the principal who() found (request.state.principal)."""
        self.ws.audit.record(request_principal(request, user.name if user else None), action, what, rows,
                             self.client_ip(request), **detail)

    def who(self, request: Request, need: str = "view") -> Principal:
        p = self.principal(request)
        if p.role is None:
            raise Forbidden(f"the key {p.name} has no workspace scope (it has {', '.join(sorted(p.scopes))}); "
                            "a key needs the workspace or admin scope")
        if not p.may(need):
            raise Forbidden(f"{p.label} ({p.role}) may not use {WHAT[need]}")
        return p

    async def csrf_guard(self, request: Request) -> None:
        """A state-changing request of a logged-in person must carry the session's CSRF token (a
        key-authenticated call has no cookie a forged page could ride on)."""
        if request.method not in UNSAFE:
            return
        try:
            self.principal(request)
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

    @staticmethod
    def client_ip(request: Request) -> str:
        # uvicorn sets the client from X-Forwarded-For only for --forwarded-allow-ips proxies
        return request.client.host if request.client else "unknown"

    # ---- routes -------------------------------------------------------------------------------
    def post(self, path: str, **options):
        """A state-changing route: CSRF-guarded, not in the API's OpenAPI schema."""
        return self.app.post(path, include_in_schema=False, dependencies=[Depends(self.csrf_guard)], **options)

    def off_loop(self, handler):
        """Run a blocking workspace handler in the query pool (ws.queries), off the event loop.
        A handler with a `form` parameter gets the request's parsed form (read on the loop)."""
        sig = inspect.signature(handler)
        wants_form = "form" in sig.parameters
        ws = self.ws

        async def run(request: Request, **kwargs):
            if wants_form:
                kwargs["form"] = await request.form()
            return await ws.queries.run(handler, request, **kwargs)

        # FastAPI reads the parameters from the signature (not from __wrapped__: it would take
        # the handler for a sync one and run this coroutine function in its own thread pool)
        run.__name__, run.__doc__ = handler.__name__, handler.__doc__
        run.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "form"])
        return run

    # ---- responses ----------------------------------------------------------------------------
    def page(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        p = getattr(request.state, "principal", None)
        session = getattr(request.state, "session", None)
        can = {need: bool(p and p.role and p.may(need)) for need in WHAT}
        result = context.get("result")
        if not can["pii"] and isinstance(result, dict) and result.get("sample") is not None:
            # the segment builder's sample members: masked on the server for a marketer
            context["result"] = {**result, "sample": pii.mask_frame(result["sample"])}
        return self.templates.TemplateResponse(
            request, template, {"user": p.label if p else None, "principal": p, "can": can,
                                "csrf": session.csrf if session else "", **context}, status_code=status)

    def busy(self, request: Request, exc: WarehouseBusy, partial: bool = False) -> HTMLResponse:
        if partial:
            return self.page(request, "_error.html", status=503, message=str(exc))
        return self.page(request, "busy.html", status=503, message=str(exc))

    def add_error_pages(self) -> None:
        """Not logged in: the login page (401 for htmx and POSTs); forbidden, CSRF refused, the
        query pool full or a query past its time: an error page or fragment."""
        app, page = self.app, self.page

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

        @app.exception_handler(QueriesBusy)
        async def _queries_busy(request: Request, exc: QueriesBusy):
            return page(request, "_error.html", status=503, message=str(exc))

        @app.exception_handler(QueryTimeout)
        async def _query_timeout(request: Request, exc: QueryTimeout):
            return page(request, "_error.html", status=503, message=str(exc))
