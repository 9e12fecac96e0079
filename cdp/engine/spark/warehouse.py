"""The Spark engine as a `Warehouse`: tables in the lakehouse folder, written by Spark jobs, read
by the read path through DuckDB views over their Parquet files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd

from cdp.engine.base import Warehouse, WarehouseResource
from cdp.engine.spark.connection import SparkConnection
from cdp.engine.spark.lakehouse import duckdb_on_lakehouse, table_folders
from cdp.engine.spark.session import prepare_session, spark_conf, spark_session
from cdp.engine.spark.sql import to_spark_sql

try:  # the `spark` extra
    from dagster_pyspark import PySparkResource
except ImportError:  # pragma: no cover - DuckDB-only installs
    PySparkResource = None


if PySparkResource is not None:
    class SparkWarehouseResource(WarehouseResource):
        """cdp's warehouse on Spark: `get_connection()` gives a SparkConnection over
        dagster-pyspark's session; tables are Parquet in the lakehouse."""

        pyspark: PySparkResource
        lakehouse: str

        @contextlib.contextmanager
        def get_connection(self):
            session = self.pyspark.spark_session
            prepare_session(session)
            con = SparkConnection(session, Path(self.lakehouse))
            try:
                yield con
            finally:
                con.close()


class SparkWarehouse(Warehouse):
    name = "spark"
    sql_dialect = "spark"

    @property
    def lakehouse(self) -> Path:
        return self.cfg.lakehouse_path

    location = lakehouse

    def resource(self):
        if PySparkResource is None:
            raise RuntimeError("engine spark needs the spark extra: pip install 'cdp[spark]'")
        pyspark = PySparkResource(spark_config={"spark.master": self.cfg.spark.master, **spark_conf(self.cfg)})
        return SparkWarehouseResource(pyspark=pyspark, lakehouse=str(self.lakehouse))

    @contextlib.contextmanager
    def connect(self):
        con = SparkConnection(spark_session(self.cfg), self.lakehouse)
        try:
            yield con
        finally:
            con.close()

    def built(self) -> bool:
        return bool(table_folders(self.lakehouse))

    def open_reader(self, config: dict[str, Any] | None = None):
        return duckdb_on_lakehouse(self.lakehouse, config)

    # ---- capabilities of a connection --------------------------------------------------------

    @classmethod
    def owns(cls, con) -> bool:
        return isinstance(con, SparkConnection)

    @classmethod
    @contextlib.contextmanager
    def duckdb_reader(cls, con):
        reader = duckdb_on_lakehouse(con.lakehouse)
        try:
            yield reader
        finally:
            reader.close()

    @classmethod
    def catalog_columns(cls, con) -> list[tuple[str, str, str, str]]:
        return con.catalog_columns()

    @classmethod
    def table_exists(cls, con, schema: str, table: str) -> bool:
        return con.spark.catalog.tableExists(f"{schema}.{table}")

    @classmethod
    def stored_relation(cls, folder: Path) -> str:
        # the Spark connection transpiles DuckDB SQL; Spark reads the folder whole
        return f"read_parquet('{folder}')"

    @classmethod
    def native_frame(cls, con, sql: str, limit: int | None = None) -> pd.DataFrame:
        frame = con.spark.sql(sql)
        return (frame if limit is None else frame.limit(int(limit))).toPandas()

    @classmethod
    def create_table_as(cls, con, schema: str, table: str, sql: str) -> None:
        con.write_table(schema, table, con.spark.sql(sql).localCheckpoint(eager=True))

    @classmethod
    def arrow_rows(cls, con, relation: str):
        # the rows come to the driver as Arrow, as for a file drop
        return con.execute(f"select * from {relation}").arrow()

    @classmethod
    def rows_digest(cls, con, query: str) -> tuple[list[str], int, str]:
        from pyspark.sql import functions as F

        frame = con.spark.sql(to_spark_sql(query))
        names = list(frame.columns)
        row = frame.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*[F.col(f"`{c}`") for c in names])
                                                 .cast("decimal(38,0)"))).collect()[0]
        return names, int(row[0]), str(row[1] or 0)

    @classmethod
    def load_source(cls, con, loaders, name: str, source, path: Path, buckets: int) -> dict:
        # a Spark job: read and standardised on the executors
        return loaders.distributed(con, name, source, path, buckets)

    # ---- Splink ------------------------------------------------------------------------------

    @classmethod
    def splink_db_api(cls, con):
        from cdp.engine.spark.splink import splink_spark_api

        # the similarity functions are registered by SparkConnection (our Jaro-Winkler, not
        # the jar's, which Splink would register again over it)
        return splink_spark_api(con.spark)

    @classmethod
    def splink_model(cls, model):
        from cdp.engine.spark.splink import spark_dialect_model

        if not isinstance(model, dict):  # Splink settings: as the DuckDB engine would save them
            model = model.create_settings_dict(sql_dialect_str="duckdb")
        return spark_dialect_model(model)

    @classmethod
    def saved_model(cls, trained: dict, settings) -> dict:
        from cdp.engine.spark.splink import duckdb_dialect_model

        if not isinstance(settings, dict):
            settings = settings.create_settings_dict(sql_dialect_str="duckdb")
        return duckdb_dialect_model(trained, settings)

    @classmethod
    @contextlib.contextmanager
    def splink_scratch(cls, con):
        # Splink's tables are temp views of the session: already out of the lakehouse
        yield con

    @classmethod
    def splink_table(cls, physical_name: str) -> str:
        return physical_name
