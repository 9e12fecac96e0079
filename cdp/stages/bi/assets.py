"""Stage 6 - BI: the star schema in schema `bi` (dbt models in dbt_project/models/bi) and BI
Connect, which publishes it with the customer 360 to a PostgreSQL database.

    holiday_calendar (Python, `holidays`) -> dim_date, dim_customer, dim_product,
                                             fact_sales, fact_sales_items (dbt) -> postgres destination

A tenant without transactions sources has no BI stage; one without transaction_items sources no
dim_product or fact_sales_items (cdp/scope.py).

Publishing loads every table into a staging schema, then swaps all of them into place in ONE
PostgreSQL transaction: a reader sees the previous tables or the new ones, never a half-written
table, and running it again gives the same result. Tables unchanged since the last publish to
that database are not published again (`sends.py`).
"""


import os
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from cdp.engine import WarehouseResource
from cdp.config import Postgres, TenantConfig
from cdp.dbt.project import build_dbt_assets
from cdp.scope import tenant_scope
from cdp.stages.activation.sends import (delivered_already, payload_version, record_delivery, resend_requested, send_tags,
                    skip_unchanged, version_of)
from cdp.engine.tables import preview_md, replace_table

GROUP = "bi"
STAGING_SUFFIX = "__cdp_staging"


# ---- holidays ------------------------------------------------------------------------------------

def holiday_calendar(cfg: TenantConfig) -> pd.DataFrame:
    """Public holidays of the configured country over the calendar's years."""
    import holidays

    years = range(cfg.bi.calendar_start_year, cfg.bi.calendar_start_year + cfg.bi.calendar_years)
    try:
        calendar = holidays.country_holidays(cfg.bi.holiday_country, years=years)
    except NotImplementedError as exc:
        raise ValueError(f"bi.holiday_country: {cfg.bi.holiday_country!r} is not a country the "
                         f"`holidays` package knows (it defaults to the tenant's country: set "
                         f"bi.holiday_country to another)") from exc
    rows = sorted(calendar.items())
    return pd.DataFrame({"holiday_date": pd.to_datetime([d for d, _ in rows]).date,
                         "holiday_name": [n for _, n in rows]},
                        columns=["holiday_date", "holiday_name"])


def write_holiday_calendar(con, cfg: TenantConfig) -> int:
    df = holiday_calendar(cfg)
    replace_table(con, "bi", "holiday_calendar", df)
    return len(df)


def build_holiday_asset(cfg: TenantConfig) -> dg.AssetsDefinition:
    @dg.asset(key=["bi", "holiday_calendar"], group_name=GROUP, kinds={"duckdb", "python"},
              description=f"Public holidays of {cfg.bi.holiday_country} ({cfg.bi.calendar_years} years "
                          f"from {cfg.bi.calendar_start_year}), from the `holidays` package; "
                          "flags holidays in bi.dim_date.")
    def _holidays(warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            n = write_holiday_calendar(con, cfg)
            sample = con.execute("select * from bi.holiday_calendar where holiday_date >= ? "
                                 "order by 1 limit 5", [date.today()]).df()
        return dg.MaterializeResult(metadata={"dagster/row_count": n,
                                              "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews))})

    return _holidays


# ---- BI Connect: publish to PostgreSQL -------------------------------------------------------------

PG_TYPES = {"BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer",
            "BIGINT": "bigint", "HUGEINT": "numeric", "UTINYINT": "smallint", "USMALLINT": "integer",
            "UINTEGER": "bigint", "UBIGINT": "numeric", "FLOAT": "real", "DOUBLE": "double precision",
            "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
            "VARCHAR": "text", "UUID": "uuid", "INTERVAL": "interval", "BLOB": "bytea"}


def pg_type(duck_type: str) -> str:
    if duck_type.startswith("DECIMAL"):
        return duck_type.replace("DECIMAL", "numeric")
    return PG_TYPES.get(duck_type, "text")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_table(duck, pg, schema: str, table: str, target_schema: str, work_dir: str) -> int:
    """Create target_schema.table in PostgreSQL with the DuckDB table's columns and COPY its
    rows in, as CSV written by DuckDB (NULL is an empty field, an empty string is quoted)."""
    columns = duck.execute(f'describe "{schema}"."{table}"').fetchall()
    ddl = ", ".join(f"{_ident(c[0])} {pg_type(c[1])}" for c in columns)
    target = f"{_ident(target_schema)}.{_ident(table)}"
    pg.execute(f"create table {target} ({ddl})")
    csv_path = os.path.join(work_dir, f"{schema}.{table}.csv")
    duck.execute(f"""copy (select * from "{schema}"."{table}") to '{csv_path}'
                     (format csv, header false, timestampformat '%Y-%m-%d %H:%M:%S.%f')""")
    with pg.cursor().copy(f"copy {target} from stdin (format csv)") as copy, open(csv_path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            copy.write(chunk)
    return pg.execute(f"select count(*) from {target}").fetchone()[0]


def publish_to_postgres(duck, url: str, tables: list[str]) -> dict[str, int]:
    """Copy each schema.table into a staging schema, then in one transaction replace the live
    tables with the staged ones. Returns rows per table."""
    import psycopg

    counts: dict[str, int] = {}
    schemas = sorted({t.split(".")[0] for t in tables})
    with psycopg.connect(url) as pg, tempfile.TemporaryDirectory(prefix="cdp-bi-connect-") as work_dir:
        # 1. stage (readers still see the previous tables)
        with pg.transaction():
            for schema in schemas:
                pg.execute(f"drop schema if exists {_ident(schema + STAGING_SUFFIX)} cascade")
                pg.execute(f"create schema {_ident(schema + STAGING_SUFFIX)}")
            for t in tables:
                schema, table = t.split(".")
                counts[t] = _copy_table(duck, pg, schema, table, schema + STAGING_SUFFIX, work_dir)
        # 2. swap: all tables change together, or none does
        with pg.transaction():
            for schema in schemas:
                pg.execute(f"create schema if not exists {_ident(schema)}")
            for t in tables:
                schema, table = t.split(".")
                pg.execute(f"drop table if exists {_ident(schema)}.{_ident(table)} cascade")
                pg.execute(f"alter table {_ident(schema + STAGING_SUFFIX)}.{_ident(table)} "
                           f"set schema {_ident(schema)}")
            for schema in schemas:
                pg.execute(f"drop schema {_ident(schema + STAGING_SUFFIX)}")
    return counts


def build_postgres_asset(cfg: TenantConfig, name: str, dest: Postgres) -> dg.AssetsDefinition:
    @dg.asset(
        key=["activation", name],
        group_name="activation",
        deps=[dg.AssetKey(t.split(".")) for t in dest.tables],
        kinds={"postgres"}, tags=send_tags(),
        description=f"BI Connect: publishes {', '.join(dest.tables)} to the PostgreSQL database in "
                    f"${dest.url_env}, all tables swapped in one transaction, when one of them changed.",
    )
    def _publish(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        url = os.environ.get(dest.url_env)
        if not url:
            raise dg.Failure(f"destinations.{name}.url_env: environment variable {dest.url_env} is not set; "
                             "it must hold the PostgreSQL URL (postgresql://user:password@host:port/db)")
        send = f"activation/{name}"
        with warehouse.get_connection() as duck:
            # the database (its URL, hashed into the version) is part of what was published to
            versions = {t: payload_version(duck, f"select * from {t}") for t in dest.tables}
            version = version_of({"tables": {t: v for t, (v, _) in versions.items()}, "url": url})
            last = delivered_already(duck, send, version, resend_requested(context))
            if last is not None:
                return skip_unchanged(context, send, last, sum(n for _, n in versions.values()))
            counts = publish_to_postgres(duck, url, dest.tables)
            record_delivery(duck, send, name, version, sum(counts.values()), f"${dest.url_env}",
                            context.run.run_id)
        context.log.info(f"published {counts} to PostgreSQL")
        return dg.MaterializeResult(metadata={"sent": True, "dagster/row_count": sum(counts.values()),
                                              "version": version,
                                              "rows_per_table": dg.MetadataValue.json(counts)},
                                    data_version=dg.DataVersion(version))

    return _publish


def build_bi_definitions(cfg: TenantConfig, manifest: Path) -> list:
    orchestrated = {o.destination for o in cfg.orchestrations.values()}  # these receive orchestrations
    publishers = [build_postgres_asset(cfg, n, d) for n, d in cfg.destinations.items()
                  if isinstance(d, Postgres) and n not in orchestrated]
    models = build_dbt_assets(cfg, manifest, folder="bi", name="bi_models")
    holidays = [build_holiday_asset(cfg)] if tenant_scope(cfg).builds("bi.holiday_calendar") else []
    return [*holidays, *([models] if models is not None else []), *publishers]
