"""/workspace/segments: the segment builder - a live count, a few members, the compiled SQL
(the segments module's compiler) and the YAML of the segment being built, saved to the tenant
config (../builder.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from cdp.config import SEGMENT_OPS
from cdp.serve.workspace import builder
from cdp.serve.workspace.reader import WarehouseBusy
from cdp.serve.workspace.web import PREFIX, Web
from cdp.stages.activation.segments import UNIVERSE, Catalog

SAMPLE_MEMBERS = 5


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

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
    @web.off_loop
    def segments_page(request: Request, segment: str = ""):
        web.who(request)
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
            return web.busy(request, exc)
        return web.page(request, "segments.html", nav="segments", result=result, note=note,
                    saved=sorted(ws.cfg.segments), **ctx)

    def builder_partial(request: Request, form, template: str, build) -> HTMLResponse:
        """A builder fragment: the posted form, read against the warehouse by `build`."""
        web.who(request)
        form = builder.BuilderForm.parse(form)
        try:
            with ws.read() as con:
                ctx = build(con, form)
        except WarehouseBusy as exc:
            return web.busy(request, exc, partial=True)
        return web.page(request, template, **ctx)

    def preview_or_error(con, form) -> dict:
        try:
            return {"result": preview(con, form)}
        except builder.BuilderError as exc:
            return {"result": {"error": str(exc)}}

    @web.post(f"{PREFIX}/segments/form", response_class=HTMLResponse)
    @web.off_loop
    def segments_form(request: Request, form):
        """Re-render the builder after a structural change (row added/removed, table changed)."""
        return builder_partial(request, form, "_segment_form.html", builder_context)

    @web.post(f"{PREFIX}/segments/preview", response_class=HTMLResponse)
    @web.off_loop
    def segments_preview(request: Request, form):
        """Live count, compiled SQL and YAML of the segment being built."""
        return builder_partial(request, form, "_segment_preview.html", preview_or_error)

    @web.post(f"{PREFIX}/segments/save", response_class=HTMLResponse)
    @web.off_loop
    def segments_save(request: Request, form):
        user = web.who(request, "save")
        form = builder.BuilderForm.parse(form)
        if form.name and form.name in ws.cfg.segments:
            web.who(request, "replace")   # changes what the destinations of that segment get
        try:
            if not form.name:
                raise builder.BuilderError("segments: give the segment a name before saving")
            builder.check_not_overwriting(ws.cfg, form)
            with ws.read() as con:
                defn, _ = builder.validated_segment(ws.cfg, form, con)
            ws.cfg = builder.save_segment(ws.cfg, form.name, defn)
        except WarehouseBusy as exc:
            return web.busy(request, exc, partial=True)
        except builder.BuilderError as exc:
            return web.page(request, "_error.html", status=422, message=str(exc))
        web.audit(request, user, "segment.save", form.name, config=ws.cfg.config_path)
        return web.page(request, "_saved.html",
                    message=f"saved segments.{form.name} to {ws.cfg.config_path}; the next pipeline run builds it "
                            f"(asset activation/segments reads the segments when it runs: no reload needed) "
                            f"into table activation.segment_{form.name}")
