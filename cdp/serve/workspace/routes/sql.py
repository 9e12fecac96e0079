"""/workspace/sql: the SQL editor - Presto SQL run read-only against the warehouse with a row
limit, exported as CSV, or saved as a query the pipeline builds (queries/<name>)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import duckdb
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from cdp.config import TenantConfig
from cdp.serve.workspace import builder
from cdp.serve.workspace.reader import WarehouseBusy
from cdp.serve.workspace.web import PREFIX, Web
from cdp.stages.activation.queries import QueryError, run_query, saved_queries
from cdp.stages.activation.segments import Catalog

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
CSV_MAX_ROWS = 1_000_000


def _saved_queries(cfg: TenantConfig) -> dict[str, Path]:
    try:
        return saved_queries(cfg)
    except QueryError:
        return {}


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

    def catalog_tree(con) -> dict[str, dict[str, dict[str, str]]]:
        tree: dict = {}
        for (schema, table), cols in sorted(Catalog(con).columns.items()):
            tree.setdefault(schema, {})[table] = cols
        return tree

    @app.get(f"{PREFIX}/sql", response_class=HTMLResponse, include_in_schema=False)
    @web.off_loop
    def sql_editor(request: Request, query: str = ""):
        web.who(request, "query")
        sql, name = "select * from c360.customer_360", ""
        saved = _saved_queries(ws.cfg)
        if query in saved:
            sql, name = saved[query].read_text(), query
        try:
            with ws.read() as con:
                tree = catalog_tree(con)
        except WarehouseBusy as exc:
            return web.busy(request, exc)
        return web.page(request, "sql.html", tree=tree, sql=sql, name=name, saved=sorted(saved),
                    limit=DEFAULT_LIMIT, nav="sql")

    @web.post(f"{PREFIX}/sql/run", response_class=HTMLResponse)
    @web.off_loop
    def sql_run(request: Request, form):
        user = web.who(request, "query")
        sql = str(form.get("sql", ""))
        try:
            limit = max(1, min(int(form.get("limit") or DEFAULT_LIMIT), MAX_LIMIT))
        except ValueError:
            return web.page(request, "_error.html", status=422, message="limit: a whole number of rows, please")
        t0 = time.perf_counter()
        try:
            with ws.read() as con:
                df = run_query(con, sql, source="query", limit=limit + 1)
        except WarehouseBusy as exc:
            return web.busy(request, exc, partial=True)
        except QueryError as exc:
            return web.page(request, "_error.html", status=422, message=str(exc))
        except duckdb.Error as exc:
            return web.page(request, "_error.html", status=422, message=f"the warehouse refused the query: {exc}")
        took = (time.perf_counter() - t0) * 1000
        more = len(df) > limit
        df = df.head(limit)
        web.audit(request, user, "query.run", sql, len(df), more_rows=more, ms=round(took))
        return web.page(request, "_sql_results.html", columns=list(df.columns),
                    rows=df.itertuples(index=False, name=None), count=len(df), more=more, limit=limit, took=took)

    @web.post(f"{PREFIX}/sql/csv")
    @web.off_loop
    def sql_csv(request: Request, form):
        user = web.who(request, "query")
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
        web.audit(request, user, "query.export", str(form.get("sql", "")), len(df), file=f"{name}.csv")
        return StreamingResponse(iter([buf.getvalue()]), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @web.post(f"{PREFIX}/sql/save", response_class=HTMLResponse)
    async def sql_save(request: Request):
        user = web.who(request, "save")
        form = await request.form()
        name = str(form.get("name", "")).strip()
        if form.get("overwrite") and name in _saved_queries(ws.cfg):
            web.who(request, "replace")
        try:
            path = builder.save_query(ws.cfg, name, str(form.get("sql", "")), str(form.get("description", "")),
                                      overwrite=bool(form.get("overwrite")))
        except builder.BuilderError as exc:
            return web.page(request, "_error.html", status=422, message=str(exc))
        web.audit(request, user, "query.save", name, path=path, sql=str(form.get("sql", "")))
        return web.page(request, "_saved.html", message=f"saved as {path} - the pipeline builds it as "
                                                    f"the asset queries/{name} (table queries.{name})")
