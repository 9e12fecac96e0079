"""BI Connect: a `kind: postgres` destination publishes tables (the bi star schema, customer 360)
to a PostgreSQL database.

Publishing loads every table into a staging schema, then swaps all of them into place in ONE
PostgreSQL transaction: a reader sees the previous tables or the new ones, never a half-written
table, and running it again gives the same result. Tables unchanged since the last publish to
that database are not published again (sends.py). Orchestrations to a Postgres destination
publish their rows the same way (orchestrations.py).
"""


import os
import tempfile

import dagster as dg

from cdp.config import Postgres, TenantConfig
from cdp.engine import WarehouseResource
from cdp.stages.activation.sends import (delivered_already, payload_version, record_delivery, resend_requested,
                                         send_tags, skip_unchanged, version_of)

STAGING_SUFFIX = "__cdp_staging"

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
        url = cfg.secret(dest.url_env)
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
