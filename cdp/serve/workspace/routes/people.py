"""/workspace/people: the profile viewer - search, then one person's profile
(/workspace/people/{cdp_id}), read by ../profiles.py; PII masked for a marketer."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from cdp import pii
from cdp.serve.workspace import profiles
from cdp.serve.workspace.reader import WarehouseBusy
from cdp.serve.workspace.web import PREFIX, Web


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

    @app.get(f"{PREFIX}/people", response_class=HTMLResponse, include_in_schema=False)
    @web.off_loop
    def people(request: Request, q: str = ""):
        p = web.who(request)
        try:
            with ws.read() as con:
                read_as, found = profiles.search(con, ws.cfg, q) if q.strip() else ("", None)
        except WarehouseBusy as exc:
            return web.busy(request, exc, partial=bool(request.headers.get("hx-request")))
        if found is not None and not p.may("pii"):
            found = profiles.Table(found.columns, pii.mask_rows(found.columns, found.rows))
        name = "_people_results.html" if request.headers.get("hx-request") else "people.html"
        return web.page(request, name, q=q, read_as=read_as, found=found, nav="people")

    @app.get(f"{PREFIX}/people/{{cdp_id}}", response_class=HTMLResponse, include_in_schema=False)
    @web.off_loop
    def person(request: Request, cdp_id: str):
        user = web.who(request)
        try:
            with ws.read() as con:
                found = profiles.person(con, ws.cfg, cdp_id[:64])
        except WarehouseBusy as exc:
            return web.busy(request, exc)
        if found is None:
            return web.page(request, "people.html", status=404, q=cdp_id, read_as="id", found=None, nav="people",
                        error=f"no person with cdp_id {cdp_id} in c360.customer_360")
        web.audit(request, user, "person.view", cdp_id[:64], 1)
        if not user.may("pii"):
            found = profiles.masked(found)
        return web.page(request, "person.html", person=found, nav="people", masked=not user.may("pii"))
