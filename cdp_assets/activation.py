"""Stage 5 - activation: destinations, the sensor that exports when customer_360 refreshes,
and the daily rebuild schedule.

A file destination drops one file per run into its folder. The file is written under a
temporary name in the same folder and renamed into place, so a reader never sees half a file.
"""


import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from .config import Destination, Postgres, TenantConfig
from .warehouse import preview_md

GROUP = "activation"
EXPORT_JOB = "activation_exports"
REBUILD_JOB = "rebuild_customer_360"


def export_file_name(tenant: str, destination: str, run_id: str, fmt: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{tenant}__{destination}__{stamp}__{run_id[:8]}.{fmt}"


def write_atomically(con, query: str, folder: Path, file_name: str, fmt: str) -> Path:
    """COPY the query result to a temp file in the destination folder, then rename it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=f".{fmt}", dir=folder)
    os.close(fd)
    try:
        options = "(format csv, header true)" if fmt == "csv" else "(format parquet)"
        con.execute(f"copy ({query}) to '{tmp}' {options}")
        final = folder / file_name
        os.replace(tmp, final)
        return final
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_destination_asset(cfg: TenantConfig, name: str, dest: Destination) -> dg.AssetsDefinition:
    schema, table = dest.table.split(".")
    folder = cfg.resolve(dest.path)

    @dg.asset(
        key=["activation", name],
        group_name=GROUP,
        deps=[dg.AssetKey([schema, table])],
        kinds={dest.format, "file"},
        description=f"File drop of `{dest.table}` to `{dest.path}` as {dest.format}: one file per run, "
                    "written atomically.",
        metadata={"destination_folder": str(folder)},
    )
    def _export(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        columns = ", ".join(f'"{c}"' for c in dest.columns) if dest.columns else "*"
        query = f'select {columns} from "{schema}"."{table}" order by 1'
        file_name = export_file_name(cfg.tenant, name, context.run.run_id, dest.format)
        with warehouse.get_connection() as con:
            path = write_atomically(con, query, folder, file_name, dest.format)
            rows = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            sample = con.execute(f"{query} limit 5").df()
        context.log.info(f"exported {rows} rows of {dest.table} to {path}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows, "path": dg.MetadataValue.path(str(path)),
            "bytes": path.stat().st_size, "preview": dg.MetadataValue.md(preview_md(sample))})

    return _export


def _export_sensor(table: dg.AssetKey, destinations: list[dg.AssetKey], export_job):
    @dg.asset_sensor(
        asset_key=table, job=export_job, name=f"export_on_{'_'.join(table.path)}_refresh",
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description=f"Runs the exports of {table.to_user_string()} whenever it is materialized again.")
    def _on_refresh(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
        yield dg.RunRequest(run_key=f"{asset_event.run_id}:{asset_event.timestamp}",
                            asset_selection=destinations, tags={"cdp/trigger": "asset_refresh"})
    return _on_refresh


def _publish_sensor(name: str, tables: list[dg.AssetKey], export_job):
    """A destination that publishes several tables together (BI Connect) runs once all of them
    were materialized again since its last run, so it never publishes a half-rebuilt schema."""
    @dg.multi_asset_sensor(
        monitored_assets=tables, job=export_job, name=f"publish_{name}_when_its_tables_refresh",
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description=f"Runs destination {name} once every table it publishes was materialized again.")
    def _on_refresh(context: dg.MultiAssetSensorEvaluationContext):
        latest = context.latest_materialization_records_by_key()
        if not all(latest.values()):
            return dg.SkipReason("waiting for " + ", ".join(
                k.to_user_string() for k, r in latest.items() if r is None))
        run_key = ":".join(f"{r.storage_id}" for r in latest.values())
        context.advance_all_cursors()
        return dg.RunRequest(run_key=run_key, asset_selection=[dg.AssetKey([GROUP, name])],
                             tags={"cdp/trigger": "asset_refresh"})
    return _on_refresh


def build_activation_definitions(cfg: TenantConfig) -> dict:
    files = {n: d for n, d in cfg.destinations.items() if isinstance(d, Destination)}
    exports = [build_destination_asset(cfg, n, d) for n, d in files.items()]
    export_job = dg.define_asset_job(
        EXPORT_JOB, selection=dg.AssetSelection.groups(GROUP),
        description="Send the customer 360 to every configured destination.")
    rebuild_job = dg.define_asset_job(
        REBUILD_JOB, selection=dg.AssetSelection.all() - dg.AssetSelection.groups(GROUP),
        description="Rebuild everything from sources to customer_360; exports follow via the sensor.")

    # one sensor per exported table; it sends only the destinations of that table
    destinations_of: dict[dg.AssetKey, list[dg.AssetKey]] = {}
    for n, d in files.items():
        destinations_of.setdefault(dg.AssetKey(d.table.split(".")), []).append(dg.AssetKey([GROUP, n]))
    sensors = []
    for key in sorted(destinations_of, key=lambda k: k.to_user_string()):
        sensors.append(_export_sensor(key, destinations_of[key], export_job))
    for n, d in cfg.destinations.items():
        if isinstance(d, Postgres):
            sensors.append(_publish_sensor(n, [dg.AssetKey(t.split(".")) for t in d.tables], export_job))

    schedule = dg.ScheduleDefinition(
        name="daily_rebuild", job=rebuild_job, cron_schedule=cfg.rebuild_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuild the whole graph every day; the export sensors then send the results.")
    return {"assets": exports, "jobs": [export_job, rebuild_job], "sensors": sensors,
            "schedules": [schedule]}
