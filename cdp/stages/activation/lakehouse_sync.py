"""Lakehouse sync: cdp reads its sources from, and writes its outputs to, a lakehouse folder, so a
team on Databricks (or any Spark / Trino / DuckDB) uses cdp's tables without copying them.

Reading (a source's `path`): a Parquet file or folder or a Delta table, read by
cdp/engine/lakehouse.py (no Spark needed).

Writing (the tenant config's `lakehouse:` section): one Dagster asset per chosen output table
(lakehouse/<schema>__<table>, group `activation`, in the export job) writes `<folder>/<schema>/<table>` whenever that table is materialized
again (a sensor, like the file exports; a table unchanged since its last sync is not rewritten):
  * parquet: the table as Parquet files in a new folder beside the old one, swapped in with
    one rename (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames), so a reader sees the
    old table or the new one, never a half-written one;
  * delta: an overwrite of the Delta table, committed as a new table version (readers see the
    old version until the commit; earlier versions stay readable by time travel).
"""


import ctypes
import ctypes.util
import os
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds

from cdp.engine import WarehouseResource, warehouse_of
from cdp.stages.activation.destinations import EXPORT_JOB, GROUP  # synced like the file exports: group activation
from cdp.config import LakehouseSync, TenantConfig
from cdp.stages.activation.sends import (delivered_already, payload_version, record_delivery, resend_requested, send_sensor,
                    send_tags, skip_unchanged)
from cdp.engine.lakehouse import count_lakehouse_rows
from cdp.engine.tables import preview_md


# ---- writing outputs ----------------------------------------------------------------------------

def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


def swap_in_folder(new: Path, final: Path) -> None:
    """Put the folder `new` at `final`, replacing what is there in one step when the platform
    allows it; the old folder is removed afterwards."""
    if not final.exists():
        os.replace(new, final)
        return
    if _exchange(new, final):
        shutil.rmtree(new)                  # `new` now holds the old table
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old)


def write_parquet_table(con, relation: str, final: Path) -> None:
    """relation -> a folder of Parquet files at `final`, written beside it and swapped in."""
    final.parent.mkdir(parents=True, exist_ok=True)
    incoming = final.with_name(f".{final.name}.incoming-{uuid.uuid4().hex[:8]}")
    incoming.mkdir()
    try:
        con.execute(f"copy (select * from {relation}) to '{incoming}/part-00000.parquet' (format parquet)")
        swap_in_folder(incoming, final)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise


def write_delta_table(con, relation: str, final: Path) -> int:
    """relation -> an overwrite of the Delta table at `final` (created when missing); returns the
    table version written."""
    from deltalake import DeltaTable, write_deltalake

    final.parent.mkdir(parents=True, exist_ok=True)
    data = warehouse_of(con).arrow_rows(con, relation)
    write_deltalake(str(final), data, mode="overwrite", schema_mode="overwrite")
    return DeltaTable(str(final)).version()


def sync_table(con, relation: str, settings: LakehouseSync, folder: Path, schema: str, table: str) -> Path:
    final = folder / schema / table
    if settings.format == "delta":
        write_delta_table(con, relation, final)
    else:
        write_parquet_table(con, relation, final)
    return final


# ---- Dagster ------------------------------------------------------------------------------------

def lakehouse_asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["lakehouse", table.replace(".", "__")])


def _source_relation(cfg: TenantConfig, schema: str, table: str) -> str:
    """The output table as the warehouse connection names it: a DuckDB table, or on the Spark
    engine the catalog table over the Parquet folder the Spark run wrote (the Spark connection
    registers every lakehouse table)."""
    return f'"{schema}"."{table}"'


def build_sync_asset(cfg: TenantConfig, settings: LakehouseSync, table: str) -> dg.AssetsDefinition:
    schema, name = table.split(".")
    folder = cfg.resolve(settings.folder)

    @dg.asset(
        key=lakehouse_asset_key(table), group_name=GROUP, deps=[dg.AssetKey([schema, name])],
        kinds={settings.format, "lakehouse"}, tags=send_tags(),
        description=f"`{table}` written to the lakehouse folder `{settings.folder}` as "
                    f"{settings.format} (`{schema}/{name}`), replaced atomically on every refresh "
                    "that changed it.",
        metadata={"lakehouse_path": str(folder / schema / name)},
    )
    def _sync(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        relation = _source_relation(cfg, schema, name)
        send, target = lakehouse_asset_key(table).to_user_string(), folder / schema / name
        with warehouse.get_connection() as con:
            version, rows = payload_version(con, f"select * from {relation}",
                                            {"format": settings.format, "path": str(target)})
            last = delivered_already(con, send, version, resend_requested(context))
            if last is not None and target.exists():  # a removed table is written again
                return skip_unchanged(context, send, last, rows)
            path = sync_table(con, relation, settings, folder, schema, name)
            written = count_lakehouse_rows(path, settings.format)
            if written != rows:
                raise RuntimeError(f"lakehouse sync of {table}: {rows} rows in the warehouse but "
                                   f"{written} in {path}")
            record_delivery(con, send, "lakehouse", version, rows, str(path), context.run.run_id)
            sample = con.execute(f"select * from {relation} limit 5").df()
        context.log.info(f"wrote {rows} rows of {table} to {path} ({settings.format})")
        return dg.MaterializeResult(metadata={
            "sent": True, "dagster/row_count": rows, "version": version,
            "path": dg.MetadataValue.path(str(path)), "format": settings.format,
            "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews))},
        data_version=dg.DataVersion(version))

    return _sync


def _sync_sensor(table: str):
    key = dg.AssetKey(table.split("."))
    return send_sensor(
        f"lakehouse_sync_on_{'_'.join(key.path)}_refresh", [key], [lakehouse_asset_key(table)], EXPORT_JOB,
        description=f"Writes {table} to the lakehouse once per new materialization of it.")


def lakehouse_definitions(cfg: TenantConfig) -> dg.Definitions:
    """Assets and sensors of the `lakehouse:` section (nothing when it is absent). The assets
    are in the activation group, so the export job runs them and the daily rebuild does not."""
    settings = cfg.lakehouse
    if settings is None:
        return dg.Definitions()
    return dg.Definitions(assets=[build_sync_asset(cfg, settings, t) for t in settings.tables],
                          sensors=[_sync_sensor(t) for t in settings.tables])
