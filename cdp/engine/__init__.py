"""The engines cdp runs on, behind one seam (base.py): DuckDB embedded (duckdb.py), Spark scale-out
(spark/). A stage asks its connection's warehouse for a capability, never which engine it is:

    from cdp.engine import warehouse_of
    warehouse_of(con).create_table_as(con, "queries", name, getattr(query, warehouse_of(con).sql_dialect))

- `warehouse_for(cfg)`: the tenant's `Warehouse` (its engine: `engine:` or $CDP_ENGINE): the
  read-write connection, the read-only reader of the read path, the Dagster resource;
- `warehouse_resource(cfg)`: the `warehouse` resource of the tenant's Definitions;
- `warehouse_of(con)`: the `Warehouse` class of a connection, for its capabilities;
- `WarehouseResource`: the type assets declare their `warehouse` parameter with.

tables.py holds the SQL helpers every engine shares (transactions, table replace, previews).
"""

from __future__ import annotations

from cdp.config import TenantConfig
from cdp.engine.base import SourceLoaders, Warehouse, WarehouseResource
from cdp.engine.duckdb import DuckDBWarehouse

__all__ = ["SourceLoaders", "Warehouse", "WarehouseResource", "splink_db_api", "warehouse_for", "warehouse_of",
           "warehouse_resource"]


def _engines() -> dict[str, type[Warehouse]]:
    from cdp.engine.spark.warehouse import SparkWarehouse

    return {"duckdb": DuckDBWarehouse, "spark": SparkWarehouse}


def warehouse_for(cfg: TenantConfig) -> Warehouse:
    """The tenant's warehouse on the engine this run uses."""
    if cfg.active_engine == "duckdb":  # no Spark import for DuckDB tenants
        return DuckDBWarehouse(cfg)
    return _engines()[cfg.active_engine](cfg)


def warehouse_resource(cfg: TenantConfig) -> WarehouseResource:
    """The `warehouse` resource of the tenant's Definitions."""
    return warehouse_for(cfg).resource()


def warehouse_of(con) -> type[Warehouse]:
    """The Warehouse class whose connection `con` is (its capabilities are classmethods)."""
    if DuckDBWarehouse.owns(con):
        return DuckDBWarehouse
    for engine in _engines().values():
        if engine.owns(con):
            return engine
    raise TypeError(f"{type(con).__name__} is not a connection of any cdp engine")


def splink_db_api(con):
    """Splink's database API over a connection of either engine."""
    return warehouse_of(con).splink_db_api(con)
