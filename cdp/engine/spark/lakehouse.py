"""The lakehouse folder: Parquet tables, one folder per table (`<lakehouse>/<schema>/<table>/`).

The Spark engine writes it; a Spark session registers its folders as catalog tables; and the read
path reads it without Spark, through DuckDB views over the Parquet files (`duckdb_on_lakehouse`).
Every node of a cluster must see it at the same path (a shared filesystem), as the driver does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table_folders(lakehouse: Path) -> list[tuple[str, str, Path]]:
    """(schema, table, folder) of every table folder of the lakehouse (`_spark_*` folders are
    Spark's own, `.name.writing` folders are tables being written)."""
    root = Path(lakehouse)
    if not root.is_dir():
        return []
    return [(schema_dir.name, table_dir.name, table_dir)
            for schema_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
            for table_dir in sorted(p for p in schema_dir.iterdir() if p.is_dir() and not p.name.startswith("."))]


def duckdb_on_lakehouse(lakehouse: Path, config: dict[str, Any] | None = None):
    """An in-memory DuckDB connection with a view `<schema>.<table>` over every Parquet table of
    the lakehouse folder: what the Spark engine wrote, read on this machine without Spark (the
    read path: `cdp query`, segment previews, the workspace, the Profile API's serving copy).

    `config`: DuckDB settings of the reader. `enable_external_access: false` (no files, no
    network for the reader's queries) is applied after the views are made, with the lakehouse
    folder as the one directory they may still read."""
    from cdp.engine.duckdb import local_connection

    settings = dict(config or {})
    external = settings.pop("enable_external_access", True)
    con = local_connection()
    for key, value in settings.items():
        con.execute(f"set {key} = ?", [value])
    for schema, table, folder in table_folders(lakehouse):
        if not any(folder.glob("**/*.parquet")):
            continue
        con.execute(f'create schema if not exists "{schema}"')
        con.execute(f'create or replace view "{schema}"."{table}" as '
                    f"select * from read_parquet('{folder}/**/*.parquet')")
    if not external:
        con.execute("set allowed_directories = ?", [[f"{Path(lakehouse).resolve()}/"]])
        con.execute("set enable_external_access = false")
    return con


def register_lakehouse_tables(spark, lakehouse: Path) -> list[str]:
    """Catalog table `<schema>.<table>` for every Parquet table folder of the lakehouse (a new
    session sees the tables earlier runs wrote), refreshed: another process (a dbt-spark step)
    may have rewritten a table since this session listed its files, and a stale listing names
    files that are gone."""
    names = []
    for schema in sorted({s for s, _, _ in table_folders(lakehouse)}):
        spark.sql(f"create database if not exists `{schema}`")
    for schema, table, folder in table_folders(lakehouse):
        spark.sql(f"create table if not exists `{schema}`.`{table}` using parquet location '{folder}'")
        spark.catalog.refreshTable(f"`{schema}`.`{table}`")
        names.append(f"{schema}.{table}")
    return names
