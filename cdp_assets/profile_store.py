"""Activation - the Profile API's serving copy.

The asset `activation/profile_store` writes a separate DuckDB file holding, per cdp_id, the
whole profile document the API returns (customer 360 row, transaction attributes, predictive
scores, current segment memberships) as ready-made JSON, plus lookup tables from email, phone
and (source, pk) to cdp_id. The file is written under a temporary name beside the final one and
moved into place with `os.replace`, so the API never reads a half-written store and never
holds a lock on the warehouse; the API re-opens the file when it changes. On the Spark engine the
same SQL builds it from the lakehouse's Parquet tables (`serving_source`). A section whose table
the tenant does not build (no transactions sources: no purchase attributes or scores;
cdp_assets/scope.py) is not in its profiles, even when an old run left the table behind. The
`segments` of a profile are those the last segments build built (`activation.segments`); a
segment it left out is not in any profile (rather than with stale members), and the store's
metadata `segments_left_out` says which and why.
"""


import contextlib
import os
import tempfile
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from .config import SourceKind, TenantConfig
from .scale_out import duckdb_on_lakehouse, is_spark
from .scope import TenantScope, tenant_scope
from .segments import SCHEMA as SEGMENT_SCHEMA, SEGMENTS_KEY, segment_status
from .warehouse import preview_md

GROUP = "activation"
STORE_KEY = dg.AssetKey(["activation", "profile_store"])

# (schema, table, the key in the profile document); one row per cdp_id in each
ONE_ROW_SECTIONS = [
    ("interactions", "transaction_attributes", "transaction_attributes"),
    ("interactions", "transaction_attributes_extended", "transaction_attributes_extended"),
    ("predictive", "predicted_clv_attributes", "predicted_clv"),
]
# one row per cdp_id and category
MANY_ROW_SECTIONS = [("predictive", "product_category_propensity"), ("predictive", "recommendations")]


def _exists(con, schema: str, table: str) -> bool:
    return con.execute("select count(*) from information_schema.tables where table_schema = ? "
                       "and table_name = ?", [schema, table]).fetchone()[0] > 0


def _columns(con, schema: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, table]).fetchall()]


def profile_document_sql(con, segment_tables: list[tuple[str, str]],
                         scope: TenantScope | None = None) -> str:
    """SQL selecting (cdp_id, profile json) for every person in the customer 360, with the
    sections whose table the tenant builds (`scope`; all when None) and the warehouse has."""
    def section(schema: str, table: str) -> bool:
        return (scope is None or scope.builds(f"{schema}.{table}")) and _exists(con, schema, table)

    joins, fields = [], ["'cdp_id': c.cdp_id", "'customer': c"]
    for i, (schema, table, key) in enumerate(ONE_ROW_SECTIONS):
        if section(schema, table):
            joins.append(f'left join "{schema}"."{table}" s{i} on s{i}.cdp_id = c.cdp_id')
            fields.append(f"'{key}': case when s{i}.cdp_id is null then null "
                          f"else s{i} end")
    if section("predictive", "product_category_propensity"):
        joins.append("""left join (select cdp_id, map_from_entries(list((product_category, propensity)
                           order by product_category)) as m
                         from predictive.product_category_propensity group by cdp_id) pp
                        on pp.cdp_id = c.cdp_id""")
        fields.append("'category_propensity': pp.m")
    if section("predictive", "recommendations"):
        joins.append("""left join (select cdp_id, list({'rank': rank, 'product_category': product_category,
                           'product_id': recommended_product_id, 'product': recommended_product}
                           order by rank) as l
                         from predictive.recommendations group by cdp_id) rc on rc.cdp_id = c.cdp_id""")
        fields.append("'recommendations': coalesce(rc.l, [])")
    present = [(t.removeprefix("segment_"), s, t) for s, t in segment_tables if _exists(con, s, t)]
    if present:
        union = " union all ".join(f"select cdp_id, '{name}' as segment from \"{s}\".\"{t}\""
                                   for name, s, t in present)
        joins.append(f"""left join (select cdp_id, list(segment order by segment) as l from ({union})
                          group by cdp_id) sg on sg.cdp_id = c.cdp_id""")
        fields.append("'segments': coalesce(sg.l, [])")
    else:
        fields.append("'segments': []::varchar[]")
    return (f"select c.cdp_id, to_json({{{', '.join(fields)}}})::varchar as profile "
            f"from c360.customer_360 c {' '.join(joins)}")


def identity_lookup_sql(cfg: TenantConfig, con, column: str) -> str | None:
    """(value, cdp_id) for an identity column over every customers record, via Stitch."""
    parts = []
    for name in cfg.sources_of(SourceKind.customers):
        if column in _columns(con, "domain", name):
            parts.append(f"""select d."{column}" as value, u.cdp_id from domain."{name}" d
                             join stitch.unified_coalesced u on u.source = '{name}' and u.pk = d.pk
                             where d."{column}" is not null""")
    return " union ".join(parts) if parts else None


def build_profile_store(cfg: TenantConfig, con, path: Path,
                        segment_tables: list[tuple[str, str]] = ()) -> dict[str, int]:
    """Write the serving copy to `path` atomically; returns row counts per table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".incoming", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # DuckDB creates the file itself
    try:
        con.execute(f"attach '{tmp}' as store")
        try:
            con.execute(f"create table store.profiles (cdp_id varchar primary key, profile varchar not null)")
            documents = profile_document_sql(con, list(segment_tables), tenant_scope(cfg))
            con.execute(f"insert into store.profiles {documents}")
            for column in ("email", "phone"):
                con.execute(f"create table store.by_{column} (value varchar, cdp_id varchar)")
                query = identity_lookup_sql(cfg, con, column)
                if query:
                    con.execute(f"insert into store.by_{column} select distinct * from ({query}) order by value")
                con.execute(f"create index by_{column}_value on store.by_{column} (value)")
            con.execute("""create table store.by_source_pk as
                           select source, pk, cdp_id from stitch.unified_coalesced order by source, pk""")
            con.execute("create index by_source_pk_key on store.by_source_pk (source, pk)")
            counts = {t: con.execute(f"select count(*) from store.{t}").fetchone()[0]
                      for t in ("profiles", "by_email", "by_phone", "by_source_pk")}
        finally:
            con.execute("detach store")
        os.replace(tmp, path)
        return counts
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".wal").unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def serving_source(warehouse):
    """A DuckDB connection the serving copy is built from: the warehouse itself, or on the Spark
    engine an in-memory DuckDB over the lakehouse's Parquet tables (the store is a DuckDB file
    read by `cdp serve` for millisecond lookups, whichever engine built the tables)."""
    with warehouse.get_connection() as con:
        if not is_spark(con):
            yield con
            return
        lakehouse = con.lakehouse
    local = duckdb_on_lakehouse(lakehouse)
    try:
        yield local
    finally:
        local.close()


def served_segments(con) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(schema, table) of every segment the last segments build built, and name -> why for those
    it left out."""
    status = segment_status(con) or {}
    built = [(SEGMENT_SCHEMA, f"segment_{n}") for n, o in status.items() if o.built]
    return built, {n: o.error for n, o in status.items() if not o.built}


def build_profile_store_asset(cfg: TenantConfig) -> dg.AssetsDefinition:
    path = cfg.resolve(cfg.profile_api.store).resolve()
    scope = tenant_scope(cfg)
    sections = [(s, t) for s, t, _ in ONE_ROW_SECTIONS] + MANY_ROW_SECTIONS
    deps = [dg.AssetKey(["c360", "customer_360"]), dg.AssetKey(["stitch", "unified_coalesced"]),
            *(dg.AssetKey([s, t]) for s, t in sections if scope.builds(f"{s}.{t}")), SEGMENTS_KEY]

    @dg.asset(key=STORE_KEY, group_name=GROUP, deps=deps, kinds={"duckdb", "api"},
              check_specs=[dg.AssetCheckSpec("every_person_served", asset=STORE_KEY,
                                             description="one profile per customer_360 row, each source "
                                                         "record's (source, pk) resolvable")],
              description="Serving copy for the Profile API (`cdp serve`): one JSON profile per cdp_id "
                          "and lookups by email, phone and (source, pk), written to a separate DuckDB "
                          "file and swapped in atomically after each rebuild.",
              metadata={"store_path": dg.MetadataValue.path(str(path))})
    def _store(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with serving_source(warehouse) as con:
            segment_tables, left_out = served_segments(con)
            counts = build_profile_store(cfg, con, path, segment_tables)
            people = con.execute("select count(*) from c360.customer_360").fetchone()[0]
            records = con.execute("select count(*) from stitch.unified_coalesced").fetchone()[0]
            con.execute(f"attach '{path}' as served (read_only)")
            try:
                # whole documents: the preview masks a profile's PII field by field (pii.py)
                sample = con.execute("select cdp_id, profile from served.profiles "
                                     "order by cdp_id limit 3").df()
            finally:
                con.execute("detach served")
        context.log.info(f"profile store {path}: {counts}")
        for name, why in left_out.items():
            context.log.warning(f"profile store: segment {name} is left out of the profiles: {why}")
        served = counts["profiles"] == people and counts["by_source_pk"] == records
        check = dg.AssetCheckResult(
            check_name="every_person_served", passed=served,
            metadata={"profiles": counts["profiles"], "customer_360_rows": people,
                      "source_records": counts["by_source_pk"], "unified_coalesced_rows": records})
        return dg.MaterializeResult(check_results=[check], metadata={"dagster/row_count": counts["profiles"],
                                              **{f"rows_{k}": v for k, v in counts.items()},
                                              "bytes": path.stat().st_size,
                                              "segments_served": dg.MetadataValue.json(
                                                  [t.removeprefix("segment_") for _, t in segment_tables]),
                                              "segments_left_out": dg.MetadataValue.json(left_out),
                                              "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews))})

    return _store
