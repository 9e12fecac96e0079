"""Scale-out: the Spark engine behind the `Warehouse` seam (cdp/engine/base.py).

cdp's stages are written as DuckDB SQL. With `engine: spark` (or CDP_ENGINE=spark) the same SQL
text runs on Spark: `SparkConnection` has the face of a DuckDB connection (`execute`,
`executemany`, `register`, results with `fetchall` / `fetchone` / `df`) and transpiles each
statement with sqlglot (read="duckdb", write="spark") when it runs. There is no second copy of
the business logic: Stitch's preprocessing, deterministic rules, evidence, clustering and
publishing are the functions the DuckDB engine runs, handed a SparkConnection instead.

Tables live in the lakehouse folder as Parquet, one folder per table
(`<lakehouse>/<schema>/<table>/`), registered in the Spark catalog as `<schema>.<table>` so
Spark SQL (and dbt-spark in session mode) reads them by the names the DuckDB warehouse uses.

The modules, one concern each:

- session.py: the tenant's Spark settings and session; cdp's code shipped to a cluster;
- sql.py: DuckDB SQL as Spark SQL (sqlglot), parameters bound as literals;
- connection.py: SparkConnection, the DuckDB connection face;
- frames.py: pandas/Arrow <-> Spark types;
- lakehouse.py: the table folders, registered in Spark or read by DuckDB (the read path);
- udfs.py: similarity functions scoring as DuckDB's;
- splink.py: Splink's SparkAPI and models between dialects;
- warehouse.py: SparkWarehouse (the `Warehouse`) and its Dagster resource;
(stage 1's domain tables as Spark jobs are the sources stage's own, cdp/stages/sources/spark.py,
handed to SparkWarehouse.load_source as SourceLoaders.distributed).

Importing this package does not start or import Spark; pyspark is imported where it is used.
"""

from cdp.engine.spark.connection import SparkConnection, SparkResult
from cdp.engine.spark.lakehouse import duckdb_on_lakehouse, register_lakehouse_tables
from cdp.engine.spark.session import spark_conf, spark_session
from cdp.engine.spark.sql import UnsupportedOnSpark, bind, to_spark_sql

__all__ = ["SparkConnection", "SparkResult", "UnsupportedOnSpark", "bind", "duckdb_on_lakehouse",
           "register_lakehouse_tables", "spark_conf", "spark_session", "to_spark_sql"]
