"""`SparkConnection`: the face of a DuckDB connection over a SparkSession.

Stages hand their DuckDB SQL to `execute`; DDL and DML become Spark jobs writing Parquet in the
lakehouse folder (one folder per table, `<lakehouse>/<schema>/<table>/`, registered in the Spark
catalog as `<schema>.<table>`), queries become Spark SQL (cdp/engine/spark/sql.py). Temp tables
are checkpointed temp views of the session.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import sqlglot
from sqlglot import exp

from cdp.engine.spark.frames import arrow_naive_timestamps, duckdb_type_name, spark_ready, spark_schema
from cdp.engine.spark.lakehouse import register_lakehouse_tables
from cdp.engine.spark.sql import UnsupportedOnSpark, _literal, _spark_tree, bind, to_spark_sql
from cdp.engine.spark.udfs import register_similarity_functions


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
        return self.spark.createDataFrame(spark_ready(frame), schema=spark_schema(frame))

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
        from cdp.engine.duckdb import local_connection

        source = tree.this
        if tree.args.get("kind") or not isinstance(source, (exp.Subquery, exp.Table)):  # kind: FROM
            raise UnsupportedOnSpark(f"COPY ... FROM is not supported on Spark: {tree.sql()[:120]}")
        query = source.this if isinstance(source, exp.Subquery) else exp.select("*").from_(source)
        rows = SparkResult(self._select(query)).arrow()
        local = local_connection()
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
                rows.append((schema, table, field.name, duckdb_type_name(field.dataType)))
        return rows

    def _drop(self, tree: exp.Drop) -> SparkResult:
        for target in tree.args.get("tables") or [tree.this]:
            if target.db:
                self.spark.sql(f"drop table if exists `{target.db}`.`{target.name}`")
                shutil.rmtree(self.table_path(target.db, target.name), ignore_errors=True)
            else:
                self._drop_temp(target.name)
        return SparkResult()
