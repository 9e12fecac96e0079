"""The Profile API (FastAPI, `cdp serve`): a website or app fetches one person's profile.

    GET /profiles/{cdp_id}
    GET /profiles/lookup?email=...   | ?phone=...   | ?source=...&pk=...
    GET /health

Every profile call needs an API key with the `profiles:read` (or `admin`) scope in the
`X-API-Key` header: a named key of `profile_api.keys_file` (`cdp key create`), or the deprecated
single key of the environment variable `profile_api.api_key_env` (see access.py). The caller is
`request.state.principal`. Errors are JSON (`{"error": ..., "detail": ...}`): 401 missing, wrong
or revoked key, 403 a key without the scope, 404 unknown person or a blocklisted email/phone
(`"error": "blocklisted"`, with the reason, never the people carrying it), 409 an email or phone
that belongs to several people, 422 bad input. OpenAPI docs at /docs and /redoc, from assets
shipped in the package (they work offline). /health needs no key and shows nothing but the status.

The API reads the serving copy written by the `activation/profile_store` asset (a SQLite file),
never the warehouse: each thread opens it read-only once and re-opens it when a rebuild has
swapped in a new one. The lookups are `async def`: a SQLite point query takes ~10 us, cheaper on
the event loop than a hand-off to a worker thread.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdp.serve.access import KeysFileError, KeyRing, WeakKeyError, key_ring_for
from cdp.serve.audit import AuditLog, note_key_denied, note_key_use
from cdp.serve.lookup_values import standard_email, standard_phone
from cdp.config import TenantConfig
from cdp.stages.activation.profile_store import read_store
from cdp.serve.security_headers import SecurityHeaders

CDP_ID = r"^[A-Za-z0-9_\-]{1,64}$"
RECHECK_SECONDS = 1.0
log = logging.getLogger("cdp.api")


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, **extra):
        self.status, self.error, self.detail, self.extra = status, error, detail, extra


class ProfileStore:
    """Read-only access to the serving copy (a SQLite file, see profile_store.py): one connection
    per thread, opened once and reused; the file's identity is checked at most once a
    RECHECK_SECONDS, and a replaced file (a rebuild swapped in a new one) is re-opened."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._generation = 0          # bumped when the file is replaced
        self._identity: tuple[int, int] | None = None
        self._checked = -RECHECK_SECONDS - 1.0
        self._local = threading.local()

    def _file_identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._identity is not None and now - self._checked < RECHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                identity = self._file_identity()
            except FileNotFoundError:
                if self._identity is None:
                    log.error(f"the profile store {self.path} has not been built yet")
                    raise ApiError(503, "store_unavailable",
                                   "the profile store has not been built yet; "
                                   "materialize activation/profile_store") from None
                return  # keep serving the file already open
            if identity != self._identity:
                self._identity = identity
                self._generation += 1

    def _cursor(self) -> sqlite3.Connection:
        self._refresh()
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            old = getattr(local, "con", None)
            # a connection of a replaced file still reads the old one (its open descriptor) until closed
            local.con, local.generation = read_store(self.path), self._generation
            if old is not None:
                old.close()
        return local.con

    def profile(self, cdp_id: str) -> str | None:
        row = self._cursor().execute("select profile from profiles where cdp_id = ?", (cdp_id,)).fetchone()
        return row[0] if row else None

    def cdp_ids_by(self, table: str, value: str) -> list[str]:
        return [r[0] for r in self._cursor().execute(
            f"select cdp_id from {table} where value = ? order by cdp_id", (value,)).fetchall()]

    def cdp_ids_by_source_pk(self, source: str, pk: str) -> list[str]:
        return [r[0] for r in self._cursor().execute(
            "select cdp_id from by_source_pk where source = ? and pk = ?", (source, pk)).fetchall()]

    def blocked(self, field: str, value: str) -> str | None:
        """Why `value` is on the Stitch blocklist (None when it is not)."""
        row = self._cursor().execute("select reason from blocklist where field = ? and value = ?",
                                     (field, value)).fetchone()
        return row[0] if row else None

    def ready(self) -> bool:
        try:
            self._cursor().execute("select 1 from profiles limit 1").fetchall()
            return True
        except (ApiError, sqlite3.Error):
            return False


def _one(store: ProfileStore, ids: list[str], what: str, field: str | None = None, value: str | None = None,
         max_people: int = 5) -> Response:
    """The one profile `ids` names. A blocklisted email or phone (junk like none@none.com, a shop's
    phone) identifies nobody: 404 with the reason, never the people whose records carry it."""
    if field is not None:
        reason = store.blocked(field, value) if not ids or len(ids) > 1 else None
        if reason is not None:
            reason = f"on the Stitch blocklist: {reason}"
        elif len(ids) > max_people:  # a store built from a warehouse without a blocklist
            reason = f"carried by {len(ids)} different people (more than max_people_per_value {max_people})"
        if reason is not None:
            raise ApiError(404, "blocklisted", f"{what} identifies nobody ({reason}); it is not served as a lookup")
    if not ids:
        raise ApiError(404, "not_found", f"no profile for {what}")
    if len(ids) > 1:
        raise ApiError(409, "ambiguous", f"{what} belongs to {len(ids)} people", cdp_ids=ids)
    doc = store.profile(ids[0])
    if doc is None:
        raise ApiError(404, "not_found", f"no profile for {what}")
    return Response(doc, media_type="application/json")


def create_app(cfg: TenantConfig, api_key: str | None = None, keys: KeyRing | None = None) -> FastAPI:
    """`api_key`: a single key with the profiles:read scope, instead of the environment variable
    (deprecated, like the variable; tests and benchmarks). `keys`: a ready KeyRing."""
    try:
        keys = keys or key_ring_for(cfg, api_key)
        count = keys.count()
    except (WeakKeyError, KeysFileError) as exc:
        raise RuntimeError(str(exc)) from None
    if not count:
        raise RuntimeError(f"no API keys: create one with `cdp key create NAME --scope profiles:read` "
                           f"(writes {keys.path}; profile_api.keys_file)")
    if keys.has_legacy and api_key is None:
        import logging

        logging.getLogger("cdp.api").warning(
            f"profile_api.api_key_env: the single key in {cfg.profile_api.api_key_env} is deprecated and opens "
            "the Profile API only (scope profiles:read); create named keys with `cdp key create NAME --scope "
            "profiles:read` and unset the variable")
    store = ProfileStore(cfg.resolve(cfg.profile_api.store).resolve())
    audit = AuditLog(cfg.resolve(cfg.audit.path))
    app = FastAPI(title=f"cdp Profile API - {cfg.tenant}", version="1", docs_url=None, redoc_url=None,
                  on_shutdown=[audit.close],
                  description="One person's customer 360, transaction attributes, predictive scores "
                              "and segment memberships. Send the API key in the X-API-Key header.")
    mount_docs(app)
    app.add_middleware(SecurityHeaders)
    app.state.keys = keys
    max_people = cfg.stitch.blocklist.max_people_per_value
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(request: Request, given: str | None = Depends(header)) -> None:
        principal = keys.verify(given)
        if principal is None:
            note_key_denied(request)
            raise ApiError(401, "unauthorized", "missing, wrong or revoked API key (header X-API-Key)")
        request.state.principal = principal
        if not principal.scopes & {"profiles:read", "admin"}:
            note_key_denied(request)
            raise ApiError(403, "forbidden", f"the key {principal.name} lacks the profiles:read scope")
        note_key_use(request)   # counted per key, endpoint and minute; written by a background thread

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
                    for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": "http_error", "detail": exc.detail}, status_code=exc.status_code)

    @app.get("/health", summary="The server is up and the store readable")
    async def health():
        # no key needed, so nothing about the server (file paths, versions, counts) is shown
        if not store.ready():
            return JSONResponse({"status": "unavailable", "detail": "the profile store is not readable yet"},
                                status_code=503)
        return {"status": "ok"}

    # async endpoints: a store lookup is a ~10 us SQLite point query, cheaper to run on the event
    # loop than to hand to a worker thread
    @app.get("/profiles/lookup", dependencies=[Depends(require_key)],
             summary="Find a profile by email, phone, or a source record (source + pk)")
    async def lookup(email: str | None = Query(None, max_length=320), phone: str | None = Query(None, max_length=40),
               source: str | None = Query(None, pattern=r"^[a-z][a-z0-9_]{0,62}$"),
               pk: str | None = Query(None, max_length=200)):
        given = [n for n, v in (("email", email), ("phone", phone), ("source+pk", source or pk)) if v]
        if len(given) != 1:
            raise ApiError(422, "invalid_request", "give exactly one of: email, phone, source and pk")
        if email:
            value = standard_email(email)
            if value is None:
                raise ApiError(422, "invalid_request", f"{email!r} is not a valid email address")
            return _one(store, store.cdp_ids_by("by_email", value), f"email {value}", "email", value, max_people)
        if phone:
            value = standard_phone(phone, cfg.country)
            if value is None:
                raise ApiError(422, "invalid_request", f"{phone!r} is not a valid phone number")
            return _one(store, store.cdp_ids_by("by_phone", value), f"phone {value}", "phone", value, max_people)
        if not (source and pk):
            raise ApiError(422, "invalid_request", "a source record lookup needs both source and pk")
        return _one(store, store.cdp_ids_by_source_pk(source, pk), f"record {source}/{pk}")

    @app.get("/profiles/{cdp_id}", dependencies=[Depends(require_key)],
             summary="One person's profile by cdp_id")
    async def profile(cdp_id: str):
        if not re.match(CDP_ID, cdp_id):
            raise ApiError(422, "invalid_request", "cdp_id must be 1-64 letters, digits, '-' or '_'")
        doc = store.profile(cdp_id)
        if doc is None:
            raise ApiError(404, "not_found", f"no profile with cdp_id {cdp_id}")
        return Response(doc, media_type="application/json")

    app.state.store = store
    app.state.audit = audit
    return app


DOCS_ASSETS = Path(__file__).parent / "api_docs"
SWAGGER_UI, REDOC = "swagger-ui-bundle-5.35.0.js", "redoc-2.5.4.standalone.js"


def mount_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files shipped in the package (cdp/serve/api_docs/,
    vendored from npm: swagger-ui-dist 5.35.0, Apache-2.0; redoc 2.5.4, MIT), so the docs work
    offline and load nothing from a CDN."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=str(DOCS_ASSETS)), name="docs_assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url=f"/docs-assets/{SWAGGER_UI}",
                                   swagger_css_url="/docs-assets/swagger-ui-5.35.0.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"/docs-assets/{REDOC}",
                              redoc_favicon_url="/docs-assets/favicon-32x32.png", with_google_fonts=False)
