"""Activation - saved queries in Presto/Trino SQL.

Analysts of Amperity-like platforms write Presto SQL. A tenant keeps its saved queries as `.sql`
files in a folder (`queries.folder` in the tenant config); each file becomes a Dagster asset
`queries/<file stem>` in group `activation` whose result is stored as the table
`queries.<file stem>`. Its upstream assets are the tables it reads, found by parsing.

Every query is parsed with sqlglot (Presto dialect) and transpiled to DuckDB (on the Spark engine:
to Spark SQL). Only reading
statements pass: a SELECT, WITH ... SELECT or a set operation (UNION / INTERSECT / EXCEPT) of
them; anything else (INSERT, DROP, CREATE, UPDATE, COPY, ATTACH, PRAGMA, ...) is refused with
a message saying so, before it reaches the warehouse.

A query that reads a table the tenant does not build (e.g. interactions.* without transactions
sources; cdp/config/scope.py) is left out of the graph, with a note in `cdp run`'s output.
"""


import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from cdp.engine import WarehouseResource, warehouse_of
from cdp.config import TenantConfig
from cdp.dbt.project import left_out_tables, manifest_for
from cdp.errors import UserError
from cdp.engine.tables import preview_md

GROUP = "activation"
SCHEMA = "queries"
QUERY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
READING = (exp.Select, exp.Union, exp.Intersect, exp.Except)
WRITING = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Merge,
           exp.Copy, exp.Command, exp.TruncateTable)


TABLE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class QueryError(UserError, ValueError):
    """A query that cannot run: not valid Presto SQL, or not a read-only SELECT."""


@dataclass(frozen=True)
class PrestoQuery:
    presto: str
    duckdb: str
    tables: tuple[tuple[str, str], ...]  # (schema, table) read by the query, outside its CTEs
    spark: str = ""                      # the same query as Spark SQL (the Spark engine)

    def in_dialect(self, dialect: str) -> str:
        """The query as the SQL of an engine's dialect (a Warehouse's `sql_dialect`)."""
        return {"duckdb": self.duckdb, "spark": self.spark}[dialect]


def parse_presto(sql: str, source: str = "query") -> PrestoQuery:
    """Parse Presto SQL, refuse anything but one reading statement, transpile it to DuckDB."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="presto") if s is not None]
    except ParseError as exc:
        raise QueryError(f"{source}: not valid Presto SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"{source}: expected exactly one statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, READING):
        kind = tree.key.upper() if tree.key != "command" else str(tree.this).upper()
        raise QueryError(f"{source}: only SELECT / WITH ... SELECT queries are allowed, "
                         f"this is a {kind} statement")
    for node in tree.walk():
        if isinstance(node, WRITING) or isinstance(node, exp.Into):
            raise QueryError(f"{source}: only SELECT / WITH ... SELECT queries are allowed; "
                             f"it contains a {node.key.upper()}")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = set()
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            raise QueryError(f"{source}: table functions are not allowed ({t.sql(dialect='presto')})")
        if not t.db and t.name.lower() in ctes:
            continue
        if not all(TABLE_PART.match(p) for p in (t.db or "main", t.name)):
            raise QueryError(f"{source}: reads {t.sql(dialect='presto')}, which is not a warehouse table "
                             "(schema.table of lowercase identifiers); files are not read by queries")
        tables.add(((t.db or "main").lower(), t.name.lower()))
    return PrestoQuery(presto=sql, duckdb=tree.copy().transform(_presto_semantics).sql(dialect="duckdb"),
                       tables=tuple(sorted(tables)),
                       spark=tree.copy().transform(_presto_semantics_spark).sql(dialect="spark"))


# Java date-format letters (Presto's format_datetime) -> strftime
JAVA_FORMAT = [("yyyy", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("dd", "%d"),
               ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("SSS", "%g"), ("EEEE", "%A"),
               ("EEE", "%a"), ("a", "%p")]


def _java_to_strftime(fmt: str) -> str:
    out, i = "", 0
    while i < len(fmt):
        for java, c in JAVA_FORMAT:
            if fmt.startswith(java, i):
                out, i = out + c, i + len(java)
                break
        else:
            out, i = out + fmt[i].replace("%", "%%"), i + 1
    return out


def _presto_semantics(node: exp.Expression) -> exp.Expression:
    """Where sqlglot's transpilation keeps the name but not Presto's meaning."""
    if isinstance(node, exp.DateDiff):
        # Presto counts whole units between the two values (Jan 31 -> Mar 1 is 1 month); DuckDB's
        # date_diff counts unit boundaries crossed (2). DuckDB's date_sub is Presto's date_diff.
        unit = exp.Literal.string((node.text("unit") or "day").lower())
        return exp.Anonymous(this="date_sub", expressions=[unit, node.expression, node.this])
    if isinstance(node, exp.Anonymous) and node.name.lower() == "format_datetime" \
            and len(node.expressions) == 2 and isinstance(node.expressions[1], exp.Literal):
        return exp.Anonymous(this="strftime", expressions=[
            node.expressions[0], exp.Literal.string(_java_to_strftime(node.expressions[1].this))])
    return node


def _presto_semantics_spark(node: exp.Expression) -> exp.Expression:
    """Presto's meaning on Spark. date_diff becomes Spark's datediff(unit, a, b), which counts
    whole units like Presto's; format_datetime takes Java date-format letters, as Spark's
    date_format does."""
    if isinstance(node, exp.Anonymous) and node.name.lower() == "format_datetime" \
            and len(node.expressions) == 2:
        return exp.Anonymous(this="date_format", expressions=list(node.expressions))
    return node


def run_query(con, sql: str, source: str = "query", limit: int | None = None):
    """Run a Presto query on a DuckDB (or Spark) connection; returns a pandas DataFrame."""
    query = parse_presto(sql, source)
    engine = warehouse_of(con)
    return engine.native_frame(con, query.in_dialect(engine.sql_dialect), limit)


def materialize_query(con, name: str, query: PrestoQuery) -> None:
    """The query's result as the table queries.<name>: transpiled from Presto to the engine's
    own dialect (Spark SQL runs on Spark as it is, not through the DuckDB face)."""
    con.execute(f'create schema if not exists "{SCHEMA}"')
    engine = warehouse_of(con)
    engine.create_table_as(con, SCHEMA, name, query.in_dialect(engine.sql_dialect))


def saved_queries(cfg: TenantConfig) -> dict[str, Path]:
    """The tenant's saved queries: file stem -> path (empty when no folder is configured)."""
    if cfg.queries is None:
        return {}
    folder = cfg.resolve(cfg.queries.folder)
    if folder.exists() and not folder.is_dir():
        raise QueryError(f"queries.folder: {folder} is not a folder")
    if not folder.exists():
        # a config copied without its queries folder still runs; say so instead of failing
        logging.getLogger("cdp").warning(f"queries.folder: {folder} does not exist: no saved queries")
        return {}
    found = {}
    for path in sorted(folder.glob("*.sql")):
        if not QUERY_NAME.match(path.stem):
            raise QueryError(f"queries.folder: {path.name}: query file names must be lowercase "
                             "identifiers (they become table names)")
        found[path.stem] = path
    return found


def build_query_asset(name: str, path: Path, engine: str = "duckdb",
                      raw_previews: bool = False) -> dg.AssetsDefinition:
    query = parse_presto(path.read_text(), source=str(path))
    first_comment = re.match(r"\s*--\s*(.+)", query.presto)

    @dg.asset(
        key=[SCHEMA, name], group_name=GROUP, kinds={"sql", engine},
        deps=[dg.AssetKey([s, t]) for s, t in query.tables],
        description=(first_comment.group(1).strip() + "\n\n" if first_comment else "")
        + f"Saved Presto query `{path.name}`, transpiled to {engine} SQL with sqlglot; result in "
          f"`{SCHEMA}.{name}`.",
        metadata={"presto_sql": dg.MetadataValue.md(f"```sql\n{query.presto.strip()}\n```"),
                  "duckdb_sql": dg.MetadataValue.md(f"```sql\n{query.duckdb}\n```"),
                  "spark_sql": dg.MetadataValue.md(f"```sql\n{query.spark}\n```"),
                  "path": dg.MetadataValue.path(str(path))},
    )
    def _query(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        current = parse_presto(path.read_text(), source=str(path))  # the file as it is now
        with warehouse.get_connection() as con:
            materialize_query(con, name, current)
            rows = con.execute(f'select count(*) from "{SCHEMA}"."{name}"').fetchone()[0]
            sample = con.execute(f'select * from "{SCHEMA}"."{name}" limit 5').df()
        return dg.MaterializeResult(metadata={"dagster/row_count": rows,
                                              "preview": dg.MetadataValue.md(preview_md(sample, raw=raw_previews))})

    return _query


def left_out_queries(cfg: TenantConfig, left_out: Mapping[str, str]) -> dict[str, str]:
    """queries.<name> -> why, for every saved query that reads a table in `left_out`
    (schema.table -> why it is not built)."""
    out = {}
    for name, path in saved_queries(cfg).items():
        missing = [f"{s}.{t}" for s, t in parse_presto(path.read_text(), source=str(path)).tables
                   if f"{s}.{t}" in left_out]
        if missing:
            out[f"{SCHEMA}.{name}"] = f"it reads {missing[0]}, which is left out ({left_out[missing[0]]})"
    return out


def left_out_of_graph(cfg: TenantConfig) -> dict[str, str]:
    """schema.table -> why, for every table the tenant's sources do not let it build: the
    purchase stages' tables, dbt models and saved queries that read them."""
    tables = left_out_tables(cfg, manifest_for(cfg))
    return {**tables, **left_out_queries(cfg, tables)}


def query_definitions(cfg: TenantConfig) -> dg.Definitions:
    """One asset per saved query, but those reading a table the tenant does not build."""
    skipped = left_out_of_graph(cfg)
    return dg.Definitions(assets=[
        build_query_asset(name, path, cfg.active_engine, cfg.dagster.raw_previews)
        for name, path in saved_queries(cfg).items() if f"{SCHEMA}.{name}" not in skipped])
