"""Reading the warehouse from the web server without getting in the pipeline's way.

The warehouse DuckDB file has one writer: the Dagster run. DuckDB lets a file be open either by
one read-write process or by any number of read-only ones, so the server never keeps it open:
each request opens it read-only (external file and network access off; one DuckDB thread, as
a page is a dozen small queries that a second thread only slows down), reads, and closes it.
While a run is writing, the open fails with a lock error; the page then says "the warehouse is
being rebuilt, retry in a moment" (HTTP 503) instead of failing, and a run that starts while a
request reads waits (dagster-duckdb retries its connection) for a few milliseconds.

On a Spark tenant the tables are the lakehouse's Parquet folders, which Spark rewrites whole and
renames into place; the reader is the engine's (cdp/engine/): an in-memory DuckDB with a view
per table, made per request like the file's read-only connection.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path

import duckdb

from cdp.engine import warehouse_for
from cdp.config import TenantConfig
from cdp.engine.duckdb import DuckDBWarehouse

# no files, no network for the page's queries; one thread: a page is a dozen small queries
READER_CONFIG = {"enable_external_access": False, "threads": 1}


class WarehouseBusy(Exception):
    """The warehouse cannot be read right now (a run holds its write lock, or it does not exist)."""


@contextlib.contextmanager
def read_warehouse(tenant: TenantConfig | Path):
    """A read-only connection to the tenant's warehouse (or to a DuckDB warehouse file), for one
    request."""
    warehouse = warehouse_for(tenant) if isinstance(tenant, TenantConfig) else DuckDBWarehouse.at(tenant)
    if not warehouse.built():
        raise WarehouseBusy(f"the warehouse {warehouse.location} has not been built yet: run the pipeline "
                            "(cdp run, or Materialize all in the Dagster UI)")
    try:
        con = warehouse.open_reader(READER_CONFIG)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise WarehouseBusy("the warehouse is being rebuilt by a pipeline run; retry in a moment "
                            f"({str(exc).splitlines()[0][:200]})") from None
    try:
        yield con
    finally:
        con.close()


_CATALOG: ContextVar[tuple | None] = ContextVar("cdp_workspace_catalog", default=None)


def catalog(con) -> dict[tuple[str, str], list[str]]:
    """(schema, table) -> its columns in order; read once per connection (a page asks often)."""
    cached = _CATALOG.get()
    if cached is None or cached[0] is not con:
        tables: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in con.execute(
                "select schema_name, table_name, column_name from duckdb_columns() "
                "where database_name = current_database() order by schema_name, table_name, column_index"
        ).fetchall():
            tables.setdefault((schema, table), []).append(column)
        cached = (con, tables)
        _CATALOG.set(cached)
    return cached[1]


def table_exists(con, schema: str, table: str) -> bool:
    return (schema, table) in catalog(con)


def columns_of(con, schema: str, table: str) -> list[str]:
    return catalog(con).get((schema, table), [])


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
