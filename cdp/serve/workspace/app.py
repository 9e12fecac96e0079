"""The analyst workspace: server-rendered pages (Jinja2 + htmx, charts with Chart.js) mounted in
the same FastAPI app as the Profile API, so `cdp serve` serves both.

    /workspace/                customer 360: figures and charts per customer 360 database
    /workspace/people          profile viewer: search, then /workspace/people/{cdp_id}
    /workspace/sql             SQL editor (Presto SQL, read-only, row limit, CSV, save as query)
    /workspace/segments        segment builder (live count, compiled SQL, save to the tenant YAML)
    /workspace/audit           the audit log: who ran, exported, saved and viewed what (audit.py)
    /workspace/login, /logout  people log in; machines send X-API-Key instead

Who may do what: `access.PERMISSIONS` by role (admin, analyst, marketer; a key with the
`workspace` scope acts as an analyst, `admin` as an admin), checked by web.Web (sessions, CSRF,
masking, error pages). Each page family is a module of routes/; the per-server state (config,
users, sessions, query pool) is state.Workspace.

Every page is rendered from one read-only warehouse connection opened for the request (see
reader.py); the `Server-Timing` header carries the server time of each response.
"""

from __future__ import annotations

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cdp.config import TenantConfig
from cdp.serve.access import KeyRing, key_ring_for
from cdp.serve.workspace.routes import audit, customer360, login, people, segments, sql
from cdp.serve.workspace.state import Workspace
from cdp.serve.workspace.web import PREFIX, ServerTiming, Web, WorkspaceOnly, workspace_templates

HERE = Path(__file__).parent
ROUTES = (login, customer360, people, sql, segments, audit)


def open_workspace(app: FastAPI, cfg: TenantConfig, keys: KeyRing, instance) -> Workspace:
    try:
        # the API's audit log, if mounted beside it
        return Workspace(cfg, keys, instance, getattr(app.state, "audit", None))
    except sqlite3.Error as exc:
        raise RuntimeError(f"workspace.sessions_file: cannot open {cfg.resolve(cfg.workspace.sessions_file)} "
                           f"({exc}); it must be writable (CDP_SESSIONS_FILE sets it)") from None


def mount_workspace(app: FastAPI, cfg: TenantConfig, keys: KeyRing | None = None, instance=None) -> Workspace:
    """`keys`: the Profile API's KeyRing (app.state.keys) unless given."""
    keys = keys or getattr(app.state, "keys", None) or key_ring_for(cfg)
    ws = app.state.workspace = open_workspace(app, cfg, keys, instance)
    web = Web(app, ws, workspace_templates(cfg.tenant, str(HERE / "templates")))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="workspace_static")
    app.add_middleware(WorkspaceOnly, middleware=ServerTiming)
    web.add_error_pages()
    for routes in ROUTES:
        routes.add_routes(app, web)
    return ws
