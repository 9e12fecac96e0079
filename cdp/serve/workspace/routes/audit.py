"""/workspace/audit: the audit log - who ran, exported, saved and viewed what (../../audit.py),
for administrators."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from cdp.serve.audit import ACTIONS, may_read_audit, request_principal
from cdp.serve.workspace.web import PREFIX, Web

AUDIT_ROWS = 500  # newest events the audit page shows


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

    @app.get(f"{PREFIX}/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request, user: str = "", action: str = "", since: str = "", until: str = ""):
        viewer = web.who(request)
        if not may_read_audit(request, request_principal(request, viewer.name)):
            return web.page(request, "_error.html", status=403, message="the audit log is for administrators")
        filters = {"user": user.strip(), "action": action.strip(), "since": since.strip(), "until": until.strip()}
        try:
            events = ws.audit.read(**filters, limit=AUDIT_ROWS)
            error = None
        except ValueError as exc:
            events, error = [], str(exc)
        web.audit(request, viewer, "audit.view", " ".join(f"{k}={v}" for k, v in filters.items() if v))
        return web.page(request, "audit.html", nav="audit", events=events, filters=filters, actions=ACTIONS,
                    error=error, limit=AUDIT_ROWS, path=ws.audit.path)
