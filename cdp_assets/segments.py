"""Activation - segments: audiences defined in the tenant YAML, compiled to SQL, one asset each.

    segments:
      bakery_fans:
        description: likely to buy bakery, somewhat likely to buy snacks, reachable by email
        all:
          - {table: predictive.product_category_propensity, where: {product_category: Bakery},
             column: propensity, op: ">=", value: 0.66}
          - {table: predictive.product_category_propensity, where: {product_category: Snacks},
             column: propensity, op: between, value: [0.33, 0.66]}
          - not: {column: email, op: is_null}
      bakery_fans_not_vip:
        all: [{segment: bakery_fans}, {not: {segment: vip}}]

A condition is `column op value` on any warehouse table that has a `cdp_id` column (default
`c360.customer_360`); ops: =, !=, <, <=, >, >=, between, in, is_null, not_null, contains.
Rules compose with all / any / not and by naming other segments (cycles are refused by the
config). Compiling is safe: every table and column is looked up in the warehouse catalog
(information_schema) and quoted from the catalog's own spelling, and every value is a bound
parameter, so nothing a config says becomes SQL text.

Each segment is the asset `activation/segment_<name>`: its members in `activation.segment_<name>`
(cdp_id) and one row per run appended to `activation.segment_counts` (member counts over time).
"""

from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg
from dagster_duckdb import DuckDBResource

from .config import IDENTIFIER, Segment, SegmentRule, TenantConfig
from .errors import UserError
from .scale_out import is_spark
from .warehouse import preview_md, transaction

GROUP = "activation"
SCHEMA = "activation"
UNIVERSE = ("c360", "customer_360")
COMPARISONS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class SegmentError(UserError, ValueError):
    """A segment refers to a table or column the warehouse does not have."""


@dataclass
class CompiledSegment:
    sql: str                      # select cdp_id from c360.customer_360 where <predicate>
    params: list = field(default_factory=list)
    tables: set = field(default_factory=set)  # (schema, table) read


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _catalog_columns(con) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every warehouse table: on Spark, the lakehouse's."""
    if is_spark(con):
        return con.catalog_columns()
    # duckdb_columns() lists what information_schema.columns does, ten times faster
    return con.execute("select schema_name, table_name, column_name, data_type from duckdb_columns() "
                       "where database_name = current_database()").fetchall()


class Catalog:
    """Tables and columns as the warehouse's information_schema lists them."""

    def __init__(self, con):
        self.columns: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table, column, dtype in _catalog_columns(con):
            self.columns.setdefault((schema, table), {})[column] = dtype

    def table(self, where: str, name: str) -> tuple[str, str]:
        parts = name.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts) or tuple(parts) not in self.columns:
            raise SegmentError(f"{where}: table {name!r} is not in the warehouse")
        if "cdp_id" not in self.columns[tuple(parts)]:
            raise SegmentError(f"{where}: table {name!r} has no cdp_id column to select people by")
        return parts[0], parts[1]

    def column(self, where: str, table: tuple[str, str], name: str) -> str:
        if name not in self.columns[table]:
            raise SegmentError(f"{where}: column {name!r} is not in {table[0]}.{table[1]}; it has: "
                               + ", ".join(sorted(self.columns[table])))
        return self.columns[table][name]


def _condition(rule: SegmentRule, where: str, catalog: Catalog, out: CompiledSegment) -> str:
    table = catalog.table(where, rule.table)
    dtype = catalog.column(where, table, rule.column)
    col = _quote(rule.column)
    if rule.op in COMPARISONS:
        test, params = f"{col} {COMPARISONS[rule.op]} ?", [rule.value]
    elif rule.op == "between":
        test, params = f"{col} between ? and ?", list(rule.value)
    elif rule.op == "in":
        test, params = f"{col} in ({', '.join('?' for _ in rule.value)})", list(rule.value)
    elif rule.op == "is_null":
        test, params = f"{col} is null", []
    elif rule.op == "not_null":
        test, params = f"{col} is not null", []
    else:  # contains: an element of a list column, or a substring (case-insensitive) of text
        test = (f"list_contains({col}, ?)" if dtype.endswith("[]")
                else f"contains(lower({col}::varchar), lower(?))")
        params = [str(rule.value)]
    filters = []
    for fcol, fval in rule.where.items():
        catalog.column(f"{where}.where", table, fcol)
        filters.append(f"{_quote(fcol)} = ?")
        params.append(fval)
    out.params.extend(params)
    out.tables.add(table)
    conditions = " and ".join(["cdp_id is not null", test, *filters])
    if table == UNIVERSE:
        return f"({test})" if not filters else f"(cdp_id in (select cdp_id from c360.customer_360 where {conditions}))"
    return f"(cdp_id in (select cdp_id from {_quote(table[0])}.{_quote(table[1])} where {conditions}))"


def _predicate(rule: SegmentRule, where: str, segments: dict[str, Segment], catalog: Catalog,
               out: CompiledSegment) -> str:
    if rule.column is not None:
        return _condition(rule, where, catalog, out)
    if rule.segment is not None:
        if rule.segment not in segments:
            raise SegmentError(f"{where}: segment {rule.segment!r} is not defined")
        return _predicate(segments[rule.segment], f"segments.{rule.segment}", segments, catalog, out)
    if rule.not_ is not None:
        # a null test (unknown) counts as "not in the segment", so NOT of it is "in"
        return f"(not coalesce({_predicate(rule.not_, where + '.not', segments, catalog, out)}, false))"
    parts, joiner = (rule.all, " and ") if rule.all is not None else (rule.any, " or ")
    label = "all" if rule.all is not None else "any"
    return "(" + joiner.join(_predicate(r, f"{where}.{label}[{i}]", segments, catalog, out)
                             for i, r in enumerate(parts)) + ")"


def compile_segment(cfg: TenantConfig, name: str, con) -> CompiledSegment:
    """SQL selecting the segment's members (cdp_id) with its bound parameters."""
    if name not in cfg.segments:
        raise SegmentError(f"segments: no segment named {name!r}; defined: {', '.join(sorted(cfg.segments))}")
    catalog = Catalog(con)
    out = CompiledSegment(sql="")
    catalog.table(f"segments.{name}", ".".join(UNIVERSE))
    predicate = _predicate(cfg.segments[name], f"segments.{name}", cfg.segments, catalog, out)
    out.tables.add(UNIVERSE)
    out.sql = f"select cdp_id from c360.customer_360 where coalesce({predicate}, false) order by cdp_id"
    return out


def segment_tables_read(cfg: TenantConfig, name: str) -> set[tuple[str, str]]:
    """The tables a segment reads, from the config alone (for asset deps)."""
    def walk(rule: SegmentRule) -> set:
        if rule.column is not None:
            return {tuple(rule.table.split("."))}
        if rule.segment is not None:
            return walk(cfg.segments[rule.segment])
        children = (rule.all or []) + (rule.any or []) + ([rule.not_] if rule.not_ else [])
        return set().union(*(walk(c) for c in children))
    return walk(cfg.segments[name]) | {UNIVERSE}


COUNTS_DDL = f"""create table if not exists {SCHEMA}.segment_counts (
    segment varchar, members bigint, computed_at timestamp, run_id varchar)"""


def materialize_segment(cfg: TenantConfig, name: str, con, run_id: str) -> int:
    compiled = compile_segment(cfg, name, con)
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(COUNTS_DDL)
    with transaction(con):
        con.execute(f"create or replace table {SCHEMA}.{_quote('segment_' + name)} as {compiled.sql}",
                    compiled.params)
        members = con.execute(f"select count(*) from {SCHEMA}.{_quote('segment_' + name)}").fetchone()[0]
        con.execute(f"insert into {SCHEMA}.segment_counts values (?, ?, ?, ?)",
                    [name, members, datetime.now(timezone.utc).replace(tzinfo=None), run_id])
    return members


def preview_segment(cfg: TenantConfig, name: str, con, sample: int = 10):
    """(member count, sample of members' customer 360 rows) without writing anything."""
    compiled = compile_segment(cfg, name, con)
    count = con.execute(f"select count(*) from ({compiled.sql})", compiled.params).fetchone()[0]
    rows = con.execute(f"select c.* from c360.customer_360 c where c.cdp_id in ({compiled.sql}) "
                       f"order by c.cdp_id limit {int(sample)}", compiled.params).df()
    return count, rows


def segment_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SCHEMA, f"segment_{name}"])


def build_segment_asset(cfg: TenantConfig, name: str) -> dg.AssetsDefinition:
    seg = cfg.segments[name]

    @dg.asset(key=segment_asset_key(name), group_name=GROUP, kinds={cfg.active_engine, "sql"},
              deps=[dg.AssetKey(list(t)) for t in sorted(segment_tables_read(cfg, name))],
              description=(seg.description + "\n\n" if seg.description else "")
              + f"Segment `{name}`: members (cdp_id) in `{SCHEMA}.segment_{name}`; each run appends "
                f"its member count to `{SCHEMA}.segment_counts`.")
    def _segment(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            members = materialize_segment(cfg, name, con, context.run.run_id)
            history = con.execute(f"select computed_at, members from {SCHEMA}.segment_counts "
                                  "where segment = ? order by computed_at desc limit 10", [name]).df()
            sql = compile_segment(cfg, name, con).sql
            sample = con.execute(f"select c.* from {SCHEMA}."
                                 f"{_quote('segment_' + name)} s join c360.customer_360 c using (cdp_id) "
                                 "order by cdp_id limit 5").df()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": members, "members": members, "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews)),
            "count_history": dg.MetadataValue.md(preview_md(history, 10)),
            "sql": dg.MetadataValue.md(f"```sql\n{sql}\n```")})

    return _segment


def build_segment_definitions(cfg: TenantConfig) -> list[dg.AssetsDefinition]:
    return [build_segment_asset(cfg, name) for name in cfg.segments]
