"""Activation - the Profile API's serving copy.

The asset `activation/profile_store` writes a separate file holding, per cdp_id, the whole
profile document the API returns (customer 360 row, transaction attributes, predictive scores,
current segment memberships) as ready-made JSON, plus lookup tables from email, phone and
(source, pk) to cdp_id, and the Stitch blocklist's emails and phones with their reason (never
served as lookups). DuckDB computes it all from the warehouse; the file itself is SQLite (Python's
standard library), because a lookup is one B-tree seek: ~10 us a query from Python, where a
DuckDB point query costs 400-700 us (measured; RESULTS.md, profile_api). The file is written under
a temporary name beside the final one and moved into place with `os.replace`, so the API never
reads a half-written store and never holds a lock on the warehouse; the API re-opens the file
when it changes. On the Spark engine the same SQL builds it from the lakehouse's Parquet tables
(`serving_source`). A section whose table the tenant does not build (no transactions sources: no
purchase attributes or scores; cdp/config/scope.py) is not in its profiles, even when an old run
left the table behind. The `segments` of a profile are those the last segments build built
(`activation.segments`); a segment it left out is not in any profile (rather than with stale
members), and the store's metadata `segments_left_out` says which and why.
"""


import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from cdp.engine import WarehouseResource, warehouse_of
from cdp.config import SourceKind, TenantConfig
from cdp.config.scope import TenantScope, tenant_scope
from cdp.stages.activation.segments import SCHEMA as SEGMENT_SCHEMA, SEGMENTS_KEY, segment_status
from cdp.engine.tables import preview_md

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


# the serving copy's schema: SQLite tables keyed for point lookups (WITHOUT ROWID: the key is the
# table's only index, one B-tree seek per lookup)
STORE_SCHEMA = """
create table profiles (cdp_id text primary key, profile text not null) without rowid;
create table by_email (value text, cdp_id text, primary key (value, cdp_id)) without rowid;
create table by_phone (value text, cdp_id text, primary key (value, cdp_id)) without rowid;
create table by_source_pk (source text, pk text, cdp_id text, primary key (source, pk, cdp_id)) without rowid;
create table blocklist (field text, value text, reason text, primary key (field, value)) without rowid;
"""
BATCH_ROWS = 20_000


def _copy(con, sql: str, params: list, sqlite: sqlite3.Connection, insert: str) -> int:
    """Rows of a DuckDB query into a SQLite table, in batches (the rows are already in key order)."""
    cur = con.execute(sql, params)
    n = 0
    while rows := cur.fetchmany(BATCH_ROWS):
        sqlite.executemany(insert, rows)
        n += len(rows)
    return n


def blocklist_sql(con) -> str | None:
    """(field, value, reason) of the Stitch blocklist's email and phone values, when it was built."""
    if not _exists(con, "stitch", "blocklist"):
        return None
    return ("select field, value, any_value(reason) from stitch.blocklist "
            "where field in ('email', 'phone') and value is not null group by all order by field, value")


def build_profile_store(cfg: TenantConfig, con, path: Path,
                        segment_tables: list[tuple[str, str]] = ()) -> dict[str, int]:
    """Write the serving copy to `path` atomically; returns row counts per table.

    DuckDB computes the documents and lookups from the warehouse; they are written to a SQLite
    file, read-only at serving time: a SQLite point query costs ~10 us from Python where DuckDB's
    costs 400-700 us (its per-query planning floor alone is ~200 us), and a lookup is all the API
    does. Blocklisted emails and phones (junk and shared values Stitch ignores as evidence) are
    left out of the lookups and kept with their reason in `blocklist`, so the API answers them
    404 with the reason and never lists whose records carry them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".incoming", dir=path.parent)
    os.close(fd)
    try:
        out = sqlite3.connect(tmp)
        try:
            out.execute("pragma journal_mode = off")
            out.execute("pragma synchronous = off")
            out.executescript(STORE_SCHEMA)
            counts = {}
            documents = profile_document_sql(con, list(segment_tables), tenant_scope(cfg))
            counts["profiles"] = _copy(con, f"select * from ({documents}) order by cdp_id", [],
                                       out, "insert into profiles values (?, ?)")
            blocked_sql = blocklist_sql(con)
            counts["blocklist"] = _copy(con, blocked_sql, [], out, "insert into blocklist values (?, ?, ?)") \
                if blocked_sql else 0
            for column in ("email", "phone"):
                query = identity_lookup_sql(cfg, con, column)
                counts[f"by_{column}"] = 0
                if query:
                    unblocked = (f"and value not in (select value from stitch.blocklist where field = '{column}' "
                                 "and value is not null)" if blocked_sql else "")
                    counts[f"by_{column}"] = _copy(
                        con, f"select distinct value, cdp_id from ({query}) where true {unblocked} "
                             "order by value, cdp_id", [], out, f"insert into by_{column} values (?, ?)")
            counts["by_source_pk"] = _copy(
                con, "select distinct source, pk, cdp_id from stitch.unified_coalesced order by source, pk, cdp_id",
                [], out, "insert into by_source_pk values (?, ?, ?)")
            out.commit()
            out.execute("analyze")
        finally:
            out.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before it replaces the copy being served
        os.chmod(tmp, 0o644)  # as the DuckDB file it replaces was: readable by the serving user
        os.replace(tmp, path)
        return counts
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MMAP_BYTES = 2 ** 31 - 2 ** 16  # SQLite's default upper bound for memory-mapped reads


def read_store(path: Path) -> sqlite3.Connection:
    """A read-only connection to a serving copy (the file is never changed in place: immutable),
    reading pages through a memory map: no read() call per page (a lookup: 6 us of CPU and a p99
    of 21 us, against 15 us and 440 us with reads; measured on 100,000 profiles)."""
    con = sqlite3.connect(f"file:{Path(path).resolve().as_posix()}?mode=ro&immutable=1", uri=True,
                          check_same_thread=False)
    con.execute(f"pragma mmap_size = {MMAP_BYTES}")
    return con


@contextlib.contextmanager
def serving_source(warehouse):
    """A DuckDB connection the serving copy is built from: the warehouse itself, or on the Spark
    engine an in-memory DuckDB over the lakehouse's Parquet tables (the store is a SQLite file
    read by `cdp serve` for millisecond lookups, whichever engine built the tables)."""
    with warehouse.get_connection() as con, warehouse_of(con).duckdb_reader(con) as reader:
        yield reader


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
                          "and lookups by email, phone and (source, pk), written to a separate SQLite "
                          "file and swapped in atomically after each rebuild.",
              metadata={"store_path": dg.MetadataValue.path(str(path))})
    def _store(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with serving_source(warehouse) as con:
            segment_tables, left_out = served_segments(con)
            counts = build_profile_store(cfg, con, path, segment_tables)
            people = con.execute("select count(*) from c360.customer_360").fetchone()[0]
            records = con.execute("select count(*) from stitch.unified_coalesced").fetchone()[0]
        served_con = read_store(path)
        try:
            # whole documents: the preview masks a profile's PII field by field (pii.py)
            sample = pd.read_sql_query("select cdp_id, profile from profiles order by cdp_id limit 3", served_con)
        finally:
            served_con.close()
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


def profile_store_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The Profile API's store, rebuilt after customer 360 and the segments."""
    return dg.Definitions(assets=[build_profile_store_asset(cfg)])
