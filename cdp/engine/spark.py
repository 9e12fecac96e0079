"""Scale-out: the Spark engine behind one small seam.

cdp's stages are written as DuckDB SQL. With `engine: spark` (or CDP_ENGINE=spark) the same SQL
text runs on Spark: `SparkConnection` has the face of a DuckDB connection (`execute`,
`executemany`, `register`, results with `fetchall` / `fetchone` / `df`) and transpiles each
statement with sqlglot (read="duckdb", write="spark") when it runs. There is no second copy of
the business logic: Stitch's preprocessing, deterministic rules, evidence, clustering and
publishing are the functions the DuckDB engine runs, handed a SparkConnection instead.

Tables live in the lakehouse folder as Parquet, one folder per table
(`<lakehouse>/<schema>/<table>/`), registered in the Spark catalog as `<schema>.<table>` so
Spark SQL (and dbt-spark in session mode) reads them by the names the DuckDB warehouse uses.
Temp tables are materialized (checkpointed) temp views of the session.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import os
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlglot
from sqlglot import exp

from cdp.config import TenantConfig
from cdp.errors import UserError

ENGINES = ("duckdb", "spark")

# pyspark 4.x warns on every pandas conversion that pandas 3 is "not yet fully supported"; the
# conversions cdp makes (flat string/number/date columns, Arrow) are checked by tests/test_spark.py
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


# ---- the Spark session --------------------------------------------------------------------------

def spark_conf(cfg: TenantConfig) -> dict[str, str]:
    """Spark settings of a tenant: lean local defaults, Splink's similarity UDF jar, then the
    tenant's own `spark.conf` (which wins)."""
    from splink.backends.spark import similarity_jar_location

    lakehouse = cfg.lakehouse_path
    # Python UDF workers (the Jaro-Winkler below) run this interpreter, with its packages
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return {
        "spark.app.name": f"cdp-{cfg.tenant}",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.default.parallelism": str(cfg.spark.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(lakehouse / "_spark_warehouse"),
        "spark.local.dir": str(lakehouse / "_spark_tmp"),
        "spark.jars": similarity_jar_location(),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": "4g",
        **cfg.spark.conf,
    }


def spark_resource(cfg: TenantConfig):
    """dagster-pyspark's PySparkResource configured for the tenant (master + conf)."""
    return PySparkResource(spark_config={"spark.master": cfg.spark.master, **spark_conf(cfg)})


def spark_session(cfg: TenantConfig):
    """A SparkSession outside Dagster (tests, benchmarks, the CLI), same settings as the resource."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


# ---- DuckDB SQL on Spark ------------------------------------------------------------------------

class UnsupportedOnSpark(UserError, NotImplementedError):
    """A statement the Spark engine cannot run (e.g. UPDATE on Parquet); the SQL must be made
    portable instead."""


def to_spark_sql(sql: str) -> str:
    """One DuckDB statement (or expression) as Spark SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return _spark_tree(tree).sql(dialect="spark")


def _spark_tree(tree: exp.Expression) -> exp.Expression:
    def fix(node: exp.Expression) -> exp.Expression:
        # Splink's jar names DuckDB's jaro_winkler_similarity `jaro_winkler`
        if isinstance(node, exp.JarowinklerSimilarity):
            return exp.Anonymous(this="jaro_winkler", expressions=[node.this, node.expression])
        # DuckDB's list(x order by y) keeps the order; Spark's collect_list does not promise one
        if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
            return exp.func("array_sort", exp.ArrayAgg(this=node.this.this))
        # Spark SQL has no MATERIALIZED hint (it plans a CTE used twice on its own)
        if isinstance(node, exp.CTE) and node.args.get("materialized"):
            node.set("materialized", None)
        return node

    return tree.transform(fix)


def _literal(value: Any) -> str:
    """A Python value as a DuckDB SQL literal (parameters are bound before transpiling)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return f"timestamp '{pd.Timestamp(value).isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, (list, tuple, set)):
        items = [_literal(v) for v in value]
        return f"[{', '.join(items)}]" if items else "[null::varchar]"
    return "'" + str(value).replace("'", "''") + "'"


def bind(sql: str, params) -> str:
    """Replace each `?` outside quotes by the literal of its parameter; with a mapping, each
    `$name` (DuckDB's named parameters)."""
    if not params:
        return sql
    if isinstance(params, Mapping):
        def named(m: re.Match) -> str:
            if m.group(1):
                return m.group(1)
            if m.group(2) not in params:
                raise KeyError(f"no value for SQL parameter ${m.group(2)}")
            return _literal(params[m.group(2)])
        return re.sub(r"('(?:[^']|'')*'|\"[^\"]*\")|\$([A-Za-z_][A-Za-z0-9_]*)", named, sql)
    values = iter(params)
    return re.sub(r"('(?:[^']|'')*'|\"[^\"]*\")|\?",
                  lambda m: m.group(1) if m.group(1) else _literal(next(values)), sql)


class SparkResult:
    """What `execute` returns: the statement's rows, fetched like DuckDB's."""

    def __init__(self, frame=None):
        self.frame = frame

    def fetchall(self) -> list[tuple]:
        return [] if self.frame is None else [tuple(r) for r in self.frame.collect()]

    def fetchone(self):
        rows = [] if self.frame is None else self.frame.limit(1).collect()
        return tuple(rows[0]) if rows else None

    def df(self) -> pd.DataFrame:
        if self.frame is None:
            return pd.DataFrame()
        return self.frame.toPandas()

    def arrow(self):
        """The rows as an Arrow table (timestamps naive, as the warehouse keeps them)."""
        return arrow_naive_timestamps(self.frame.toArrow())


class SparkConnection:
    """DuckDB SQL on a SparkSession, with tables in the lakehouse folder.

    - `create [or replace] temp table t as select ...`: the select runs and is checkpointed into
      temp view t (a table, not a view: computed once);
    - `create [or replace] table schema.t as ...` / `insert into schema.t ...`: Parquet in
      `<lakehouse>/<schema>/<t>/`, catalog table schema.t;
    - `begin transaction` / `commit`: accepted, no-ops (each table is replaced whole; Spark has
      no multi-table transactions on Parquet);
    - `update t set c = e [from s] where cond` on a temp table: t is rebuilt by a select (a
      left join to s), each matched row taking the new values;
    - UPDATE / DELETE of a lakehouse table rewrite its Parquet folder (whole-table replace).
    """

    engine = "spark"

    def __init__(self, spark, lakehouse: Path):
        self.spark = spark
        self.lakehouse = Path(lakehouse)
        self.lakehouse.mkdir(parents=True, exist_ok=True)
        self._temp: dict[str, Any] = {}
        # Splink breaks the lineage of its intermediate tables with checkpoints
        spark.sparkContext.setCheckpointDir(str(self.lakehouse / "_spark_checkpoints"))
        register_similarity_functions(spark)
        register_lakehouse_tables(spark, self.lakehouse)

    # -- the DuckDB connection face --

    def execute(self, sql: str, params=None) -> SparkResult:
        tree = sqlglot.parse_one(bind(sql, params), read="duckdb")
        if isinstance(tree, exp.Transaction) or isinstance(tree, (exp.Commit, exp.Rollback)):
            return SparkResult()
        if isinstance(tree, exp.Create):
            return self._create(tree)
        if isinstance(tree, exp.Insert):
            return self._insert(tree)
        if isinstance(tree, exp.Drop):
            return self._drop(tree)
        if isinstance(tree, exp.Update):
            return self._update(tree)
        if isinstance(tree, exp.Delete):
            return self._delete(tree)
        if isinstance(tree, exp.Copy):
            return self._copy(tree)
        return SparkResult(self.spark.sql(_spark_tree(tree).sql(dialect="spark")))

    def executemany(self, sql: str, rows) -> None:
        rows = list(rows)
        if not rows:
            return
        insert = sqlglot.parse_one(sql, read="duckdb")
        if not (isinstance(insert, exp.Insert) and isinstance(insert.expression, exp.Values)):
            raise UnsupportedOnSpark(f"executemany runs INSERT ... VALUES only: {sql[:120]}")
        values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
        target = insert.this.sql(dialect="duckdb")
        self.execute(f"insert into {target} values {values}")

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self._set_temp(name, self.from_pandas(frame), materialize=False)

    def from_pandas(self, frame: pd.DataFrame):
        """A Spark DataFrame of a pandas frame, column types from the frame (an empty or
        all-null column is text)."""
        return self.spark.createDataFrame(_spark_ready(frame), schema=_spark_schema(frame))

    def unregister(self, name: str) -> None:
        self._drop_temp(name)

    def close(self) -> None:  # the session belongs to its owner (the Dagster resource)
        for name in list(self._temp):
            self._drop_temp(name)

    # -- tables --

    def table(self, name: str):
        """A Spark DataFrame of a temp table or `schema.table`."""
        return self._temp[name] if name in self._temp else self.spark.table(name)

    def write_table(self, schema: str, table: str, frame) -> None:
        """Replace lakehouse table schema.table with a Spark DataFrame (or pandas frame)."""
        if isinstance(frame, pd.DataFrame):
            frame = self.from_pandas(frame)
        path = self.table_path(schema, table)
        staged = path.with_name(f".{table}.writing")
        shutil.rmtree(staged, ignore_errors=True)
        frame.write.mode("overwrite").parquet(str(staged))
        self.spark.sql(f"drop table if exists `{schema}`.`{table}`")
        shutil.rmtree(path, ignore_errors=True)
        staged.rename(path)
        self._catalog_table(schema, table)

    def table_path(self, schema: str, table: str) -> Path:
        return self.lakehouse / schema / table

    def _catalog_table(self, schema: str, table: str) -> None:
        self.spark.sql(f"create database if not exists `{schema}`")
        self.spark.sql(f"create table if not exists `{schema}`.`{table}` using parquet "
                       f"location '{self.table_path(schema, table)}'")
        self.spark.sql(f"refresh table `{schema}`.`{table}`")

    def _set_temp(self, name: str, frame, materialize: bool = True) -> None:
        if materialize:  # computed once, now (a table, not a view)
            frame = frame.localCheckpoint(eager=True)
        frame.createOrReplaceTempView(name)
        self._temp[name] = frame

    def _drop_temp(self, name: str) -> None:
        self._temp.pop(name, None)
        self.spark.catalog.dropTempView(name)

    def _select(self, query: exp.Expression):
        return self.spark.sql(_spark_tree(query).sql(dialect="spark"))

    def _create(self, tree: exp.Create) -> SparkResult:
        kind = (tree.args.get("kind") or "").upper()
        if kind == "SCHEMA":
            self.spark.sql(f"create database if not exists `{tree.this.db or tree.this.name}`")
            return SparkResult()
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        name, schema = target.name, target.db
        temporary = bool(tree.find(exp.TemporaryProperty)) or not schema
        if_not_exists = bool(tree.args.get("exists"))
        if tree.expression is not None:  # ... as select
            frame = self._select(tree.expression)
        else:  # ... (column types)
            columns = [f"`{c.name}` {c.args['kind'].sql(dialect='spark')}"
                       for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
            frame = self.spark.createDataFrame([], ", ".join(columns))
        if temporary:
            if if_not_exists and name in self._temp:
                return SparkResult()
            self._set_temp(name, frame, materialize=kind != "VIEW")
        else:
            if if_not_exists and self.table_path(schema, name).exists():
                self._catalog_table(schema, name)
                return SparkResult()
            self.write_table(schema, name, frame.localCheckpoint(eager=True))
        return SparkResult()

    def _insert(self, tree: exp.Insert) -> SparkResult:
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        name, schema = target.name, target.db
        incoming = self._select(tree.expression)
        if schema:
            incoming = incoming.localCheckpoint(eager=True)
            current = self.spark.table(f"`{schema}`.`{name}`")
            combined = current.unionByName(incoming.toDF(*current.columns)).localCheckpoint(eager=True)
            self.write_table(schema, name, combined)
        else:
            incoming = incoming.localCheckpoint(eager=True)
            current = self._temp[name]
            self._set_temp(name, current.unionByName(incoming.toDF(*current.columns)))
        return SparkResult(incoming.groupBy().count())

    def _update(self, tree: exp.Update) -> SparkResult:
        """UPDATE as a select that rebuilds the table. `update t [alias] set c = e from s [alias]
        where cond` -> t left join (s + a hit flag) on cond, c taking e where the row hit (as in
        DuckDB, each row of t matches at most one row of s); without FROM: the rows where cond
        holds with the new values, union all the others (cond may hold subqueries)."""
        table = tree.this
        alias = table.alias_or_name
        plain_target = exp.table_(table.name, db=table.db or None).sql(dialect="duckdb")
        columns = self.table(plain_target).columns
        sets = {eq.this.name: eq.expression for eq in tree.expressions}
        where = tree.args.get("where")
        condition = where.this if where is not None else exp.true()
        source = tree.args.get("from_") or tree.args.get("from")
        if source is not None:
            joined = source.this
            hit_alias = joined.alias_or_name
            plain = exp.table_(joined.name, db=joined.db or None) if isinstance(joined, exp.Table) else joined.this
            from_sql = (f"{table.sql(dialect='duckdb')} left join (select *, true as _cdp_hit from "
                        f"{plain.sql(dialect='duckdb')}) as {hit_alias} on {condition.sql(dialect='duckdb')}")
            matched = f"{hit_alias}._cdp_hit is not null"
            select = ", ".join(
                f"case when {matched} then {sets[c].sql(dialect='duckdb')} else {alias}.{c} end as {c}"
                if c in sets else f"{alias}.{c}" for c in columns)
            query = f"select {select} from {from_sql}"
        else:
            cond = condition.sql(dialect="duckdb")
            changed = ", ".join(f"{sets[c].sql(dialect='duckdb')} as {c}" if c in sets else f"{alias}.{c}"
                                for c in columns)
            query = (f"select {changed} from {table.sql(dialect='duckdb')} where {cond} union all "
                     f"select * from {table.sql(dialect='duckdb')} where ({cond}) is not true")
        return self._replace_rows(table, query)

    def _delete(self, tree: exp.Delete) -> SparkResult:
        """DELETE as the rows that stay: `select * from t where (cond) is not true`."""
        table = tree.this
        where = tree.args.get("where")
        cond = where.this.sql(dialect="duckdb") if where is not None else "true"
        return self._replace_rows(table, f"select * from {table.sql(dialect='duckdb')} where ({cond}) is not true")

    def _replace_rows(self, table: exp.Table, query: str) -> SparkResult:
        """Table (lakehouse or temp) `table` becomes the rows of DuckDB `query` (computed first,
        since the query reads the table it replaces)."""
        frame = self.spark.sql(to_spark_sql(query)).localCheckpoint(eager=True)
        if table.db:
            self.write_table(table.db, table.name, frame)
        else:
            self._set_temp(table.name, frame, materialize=False)
        return SparkResult()

    def _copy(self, tree: exp.Copy) -> SparkResult:
        """`copy (select ...) to 'file' (options)`: Spark runs the select, its rows come to the
        driver as Arrow and DuckDB's own COPY writes the file with the same options - the file is
        byte for byte what the DuckDB engine writes (for file drops and audiences: rows a
        destination receives, which fit one machine)."""
        import duckdb

        source = tree.this
        if tree.args.get("kind") or not isinstance(source, (exp.Subquery, exp.Table)):  # kind: FROM
            raise UnsupportedOnSpark(f"COPY ... FROM is not supported on Spark: {tree.sql()[:120]}")
        query = source.this if isinstance(source, exp.Subquery) else exp.select("*").from_(source)
        rows = SparkResult(self._select(query)).arrow()
        local = duckdb.connect()
        try:
            local.register("_cdp_copy", rows)
            out = tree.copy()
            out.set("this", exp.to_table("_cdp_copy"))
            local.execute(out.sql(dialect="duckdb"))
        finally:
            local.close()
        return SparkResult()

    def catalog_columns(self) -> list[tuple[str, str, str, str]]:
        """(schema, table, column, type) of every lakehouse table, types spelt as DuckDB's
        duckdb_columns() spells them where it matters (a list column is `<type>[]`)."""
        rows = []
        for name in register_lakehouse_tables(self.spark, self.lakehouse):
            schema, table = name.split(".")
            for field in self.spark.table(f"`{schema}`.`{table}`").schema.fields:
                rows.append((schema, table, field.name, _duckdb_type_name(field.dataType)))
        return rows

    def _drop(self, tree: exp.Drop) -> SparkResult:
        for target in tree.args.get("tables") or [tree.this]:
            if target.db:
                self.spark.sql(f"drop table if exists `{target.db}`.`{target.name}`")
                shutil.rmtree(self.table_path(target.db, target.name), ignore_errors=True)
            else:
                self._drop_temp(target.name)
        return SparkResult()


def _spark_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_integer_dtype(column):
        return "bigint"
    if pd.api.types.is_float_dtype(column):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "timestamp"
    present = column.dropna()
    if present.empty:
        return "string"
    value = present.iloc[0]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    return "string"


def _spark_schema(frame: pd.DataFrame) -> str:
    return ", ".join(f"`{c}` {_spark_type(frame[c])}" for c in frame.columns)


def _spark_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, so Spark infers nullable columns instead of NaN doubles."""
    out = frame.astype(object).where(frame.notna(), None)
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            out[col] = frame[col]
    return out


def _duckdb_type_name(dtype) -> str:
    from pyspark.sql.types import ArrayType, StringType

    if isinstance(dtype, ArrayType):
        return _duckdb_type_name(dtype.elementType) + "[]"
    if isinstance(dtype, StringType):
        return "VARCHAR"
    return dtype.simpleString().upper()


def arrow_naive_timestamps(table):
    """Spark hands timestamps to Arrow as UTC instants (the session time zone is UTC); the
    warehouse's timestamps are naive: the same wall-clock values without a zone."""
    import pyarrow as pa

    columns = [col.cast(pa.timestamp(col.type.unit)) if pa.types.is_timestamp(col.type) and col.type.tz
               else col for col in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def duckdb_on_lakehouse(lakehouse: Path):
    """An in-memory DuckDB connection with a view `<schema>.<table>` over every Parquet table of
    the lakehouse folder: what the Spark engine wrote, read on this machine without Spark (for
    the Profile API's serving copy, a DuckDB file itself)."""
    import duckdb

    con = duckdb.connect()
    root = Path(lakehouse)
    for schema_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for table_dir in sorted(p for p in schema_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not any(table_dir.glob("**/*.parquet")):
                continue
            con.execute(f'create schema if not exists "{schema_dir.name}"')
            con.execute(f'create or replace view "{schema_dir.name}"."{table_dir.name}" as '
                        f"select * from read_parquet('{table_dir}/**/*.parquet')")
    return con


def register_similarity_functions(spark) -> None:
    """Splink's Scala similarity functions (jaro_winkler, damerau_levenshtein, ...) as Spark SQL
    functions: the shared SQL calls them by the names DuckDB gives them."""
    from splink.internals.spark.jar_location import get_scala_udfs

    for name, java_class, return_type in get_scala_udfs():
        spark.udf.registerJavaFunction(name, java_class, return_type)
    # The jar's Jaro-Winkler is another implementation than DuckDB's and scores some pairs
    # differently (0.9467 vs 0.9502 for a one-letter typo in a 28-letter email: across a 0.95
    # level). DuckDB's is rapidfuzz's algorithm: the same one, vectorized, keeps Spark's
    # scores equal to DuckDB's.
    spark.udf.register("jaro_winkler", _jaro_winkler_udf())


def _jaro_winkler_udf():
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")
    def jaro_winkler(left: pd.Series, right: pd.Series) -> pd.Series:
        from rapidfuzz.distance import JaroWinkler

        return pd.Series([
            (JaroWinkler.similarity(a, b) if a and b else 0.0)   # DuckDB: an empty string scores 0
            if isinstance(a, str) and isinstance(b, str) else None
            for a, b in zip(left, right)], dtype="float64")

    return jaro_winkler


def register_lakehouse_tables(spark, lakehouse: Path) -> list[str]:
    """Catalog table `<schema>.<table>` for every Parquet table folder of the lakehouse (a new
    session sees the tables earlier runs wrote), refreshed: another process (a dbt-spark step)
    may have rewritten a table since this session listed its files, and a stale listing names
    files that are gone."""
    names = []
    for schema_dir in sorted(p for p in Path(lakehouse).iterdir() if p.is_dir() and not p.name.startswith("_")):
        spark.sql(f"create database if not exists `{schema_dir.name}`")
        for table_dir in sorted(p for p in schema_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            spark.sql(f"create table if not exists `{schema_dir.name}`.`{table_dir.name}` using parquet "
                      f"location '{table_dir}'")
            spark.catalog.refreshTable(f"`{schema_dir.name}`.`{table_dir.name}`")
            names.append(f"{schema_dir.name}.{table_dir.name}")
    return names


# ---- the warehouse resource on Spark ------------------------------------------------------------

try:  # the `spark` extra
    from dagster_pyspark import PySparkResource
except ImportError:  # pragma: no cover - DuckDB-only installs
    PySparkResource = None


if PySparkResource is not None:
    class SparkWarehouse(dg.ConfigurableResource):
        """cdp's warehouse on Spark: the same `get_connection()` as the DuckDB resource, giving a
        SparkConnection over dagster-pyspark's session; tables are Parquet in the lakehouse."""

        pyspark: PySparkResource
        lakehouse: str

        @contextlib.contextmanager
        def get_connection(self):
            session = self.pyspark.spark_session
            session.sparkContext.setLogLevel("ERROR")
            con = SparkConnection(session, Path(self.lakehouse))
            try:
                yield con
            finally:
                con.close()


def spark_warehouse_resource(cfg: TenantConfig):
    """The `warehouse` resource of a Spark tenant."""
    if PySparkResource is None:
        raise RuntimeError("engine spark needs the spark extra: pip install 'cdp[spark]'")
    return SparkWarehouse(pyspark=spark_resource(cfg), lakehouse=str(cfg.lakehouse_path))


# ---- Splink on either engine --------------------------------------------------------------------

def _splink_spark_api():
    """Splink's SparkAPI, generating Spark SQL with sqlglot's own Spark dialect. Splink's
    `customspark` dialect subclasses sqlglot's Generator, which fails when sqlglot is the
    compiled build (sqlglotc, pulled in by dagster-dbt's sqlglot[rs]): "interpreted classes
    cannot inherit from compiled". Its one change - float literals cast to double written as
    double literals, not decimals - is made here on the syntax tree instead."""
    from splink import SparkAPI

    def double_literals(node):
        if (isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type("double")
                and isinstance(node.this, exp.Literal) and node.this.is_number
                and node.this.name != "Infinity"):
            return exp.Literal.number(f"{node.this.name}D")
        return node

    class CdpSparkAPI(SparkAPI):
        def _setup_for_execute_sql(self, sql: str, physical_name: str) -> str:
            tree = sqlglot.parse_one(sql, read="spark")
            return tree.transform(double_literals).sql(dialect="spark", pretty=True)

    return CdpSparkAPI


def is_spark(con) -> bool:
    return getattr(con, "engine", "duckdb") == "spark"


def splink_db_api(con):
    """Splink's database API over the connection's engine."""
    if is_spark(con):
        # the similarity functions are registered by SparkConnection (our Jaro-Winkler, not
        # the jar's, which Splink would register again over it)
        return _splink_spark_api()(spark_session=con.spark, register_udfs_automatically=False)
    from splink import DuckDBAPI

    return DuckDBAPI(connection=con)


def model_for_engine(model: dict, con) -> dict:
    """The trained model (saved with DuckDB SQL) for the connection's engine: on Spark every SQL
    condition and blocking rule is transpiled; the parameters are the same."""
    if not is_spark(con) or model.get("sql_dialect") == "spark":
        return model
    out = {**model, "sql_dialect": "spark"}
    out["blocking_rules_to_generate_predictions"] = [
        {**rule, "blocking_rule": _spark_condition(rule["blocking_rule"]), "sql_dialect": "spark"}
        if isinstance(rule, dict) else _spark_condition(rule)
        for rule in model.get("blocking_rules_to_generate_predictions", [])]
    out["comparisons"] = [
        {**comp, "comparison_levels": [
            {**lvl, "sql_condition": _spark_condition(lvl["sql_condition"])}
            for lvl in comp["comparison_levels"]]}
        for comp in model["comparisons"]]
    return out


def duckdb_dialect_model(trained: dict, settings: dict) -> dict:
    """A model trained on Spark, saved as the DuckDB engine saves it: the DuckDB settings (SQL)
    with the trained parameters (lambda, m and u per level - the levels are the same, in the
    same order). So a saved model serves either engine and its fingerprint is engine-free."""
    out = {**settings, "probability_two_random_records_match":
           trained["probability_two_random_records_match"]}
    comparisons = []
    for ours, theirs in zip(settings["comparisons"], trained["comparisons"], strict=True):
        levels = []
        for lvl, fitted in zip(ours["comparison_levels"], theirs["comparison_levels"], strict=True):
            levels.append({**lvl, **{k: fitted[k] for k in ("m_probability", "u_probability")
                                     if k in fitted}})
        comparisons.append({**ours, "comparison_levels": levels})
    out["comparisons"] = comparisons
    return out


def _spark_condition(condition: str) -> str:
    if condition.strip().upper() == "ELSE":
        return condition
    return to_spark_sql(condition)


@contextlib.contextmanager
def no_scratch(con):
    yield con
