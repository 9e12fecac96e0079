"""Logging in and out of the workspace (people; machines send X-API-Key instead), and `/`,
which sends a browser to the workspace.

A login needs the login form's double-submit token (no login CSRF), is throttled per address
and name (sessions.LoginThrottle), checks the password off the event loop (scrypt) and starts
a fresh session (no session fixation)."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from cdp.serve.workspace.auth import UsersFileError, verify_password
from cdp.serve.workspace.web import LOGIN_COOKIE, PREFIX, SESSION_COOKIE, Web


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

    def login_page(request: Request, next: str, error: str | None, status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = web.page(request, "login.html", status=status, next=next, error=error, login_token=token)
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
        ip = web.client_ip(request)
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

    @web.post(f"{PREFIX}/logout")
    def logout(request: Request):
        ws.sessions.delete(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse(f"{PREFIX}/", status_code=307)
