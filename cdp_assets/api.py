"""The Profile API (FastAPI, `cdp serve`): a website or app fetches one person's profile.

    GET /profiles/{cdp_id}
    GET /profiles/lookup?email=...   | ?phone=...   | ?source=...&pk=...
    GET /health

Every profile call needs an API key with the `profiles:read` (or `admin`) scope in the
`X-API-Key` header: a named key of `profile_api.keys_file` (`cdp key create`), or the deprecated
single key of the environment variable `profile_api.api_key_env` (see access.py). The caller is
`request.state.principal`. Errors are JSON (`{"error": ..., "detail": ...}`): 401 missing, wrong
or revoked key, 403 a key without the scope, 404 unknown person, 409 an email or phone that
belongs to several people, 422 bad input. OpenAPI docs at /docs.

The API reads the serving copy written by the `activation/profile_store` asset, never the
warehouse: it opens the file read-only and re-opens it when a rebuild has swapped in a new one.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import duckdb
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import standardize
from .access import KeysFileError, KeyRing, WeakKeyError, key_ring_for
from .audit import AuditLog, note_key_denied, note_key_use
from .config import TenantConfig
from .security_headers import SecurityHeaders

CDP_ID = r"^[A-Za-z0-9_\-]{1,64}$"
RECHECK_SECONDS = 1.0


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, **extra):
        self.status, self.error, self.detail, self.extra = status, error, detail, extra


class ProfileStore:
    """Read-only access to the serving copy; re-opens the file when it was replaced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: tuple[int, int] | None = None
        self._checked = 0.0
        self._local = threading.local()
        self._retired: duckdb.DuckDBPyConnection | None = None

    def _file_identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._con is not None and now - self._checked < RECHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                identity = self._file_identity()
            except FileNotFoundError:
                if self._con is None:
                    raise ApiError(503, "store_unavailable",
                                   f"the profile store {self.path} has not been built yet; "
                                   "materialize activation/profile_store") from None
                return
            if identity != self._identity:
                old = self._con
                self._con = self._open()
                self._identity = identity
                self._local = threading.local()  # cursors of the old file are dropped
                # a request may still be reading the old file: close it one swap later
                if self._retired is not None:
                    self._retired.close()
                self._retired = old

    def _open(self) -> duckdb.DuckDBPyConnection:
        # a fresh in-memory database attaching the file: duckdb.connect(path) would hand back the
        # process's cached instance of the previous file
        con = duckdb.connect(":memory:", config={"threads": 1})  # point queries: no thread hand-offs
        quoted = str(self.path).replace("'", "''")
        con.execute(f"attach '{quoted}' as store (read_only)")
        return con

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        self._refresh()
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._con.cursor()
        return cur

    def profile(self, cdp_id: str) -> str | None:
        row = self._cursor().execute("select profile from store.profiles where cdp_id = ?", [cdp_id]).fetchone()
        return row[0] if row else None

    def cdp_ids_by(self, table: str, value: str) -> list[str]:
        return sorted(r[0] for r in self._cursor().execute(
            f"select cdp_id from store.{table} where value = ?", [value]).fetchall())

    def cdp_ids_by_source_pk(self, source: str, pk: str) -> list[str]:
        return [r[0] for r in self._cursor().execute(
            "select cdp_id from store.by_source_pk where source = ? and pk = ?", [source, pk]).fetchall()]


def _one(store: ProfileStore, ids: list[str], what: str) -> Response:
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
    app = FastAPI(title=f"cdp Profile API - {cfg.tenant}", version="1", on_shutdown=[audit.close],
                  description="One person's customer 360, transaction attributes, predictive scores "
                              "and segment memberships. Send the API key in the X-API-Key header.")
    app.add_middleware(SecurityHeaders)
    app.state.keys = keys
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
    def health():
        store._refresh()
        return {"status": "ok", "store": str(store.path)}

    # async endpoints: a store lookup is a sub-millisecond DuckDB point query, cheaper to run on the
    # event loop than to hand to a worker thread
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
            return _one(store, store.cdp_ids_by("by_email", value), f"email {value}")
        if phone:
            value = standard_phone(phone, cfg.country)
            if value is None:
                raise ApiError(422, "invalid_request", f"{phone!r} is not a valid phone number")
            return _one(store, store.cdp_ids_by("by_phone", value), f"phone {value}")
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


def standard_email(raw: str) -> str | None:
    """One email standardised as the sources are (standardize.email), without a pandas round trip."""
    value = re.sub(r"\s+", "", raw).lower()
    return value if value not in standardize.EMPTY and re.match(standardize.EMAIL_RE, value) else None


def standard_phone(raw: str, country: str = standardize.DEFAULT_COUNTRY) -> str | None:
    """One phone as E.164, as the sources are (standardize.phone): a national number is read in
    `country` (the tenant's), an international one keeps its own."""
    value = re.sub(r"\s+", " ", raw.strip())
    return None if value.lower() in standardize.EMPTY else standardize._e164(value, country)


def serve(cfg: TenantConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    import uvicorn

    from .workspace import create_server

    # uvloop and httptools when installed (uvicorn[standard]), else asyncio and h11;
    # the analyst workspace (/workspace) is served beside the Profile API
    uvicorn.run(create_server(cfg), host=host, port=port, log_level="warning", access_log=False)
