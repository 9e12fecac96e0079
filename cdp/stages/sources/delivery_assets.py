"""The Dagster side of sources of deliveries (deliveries.py): one domain asset per source with
its per-delivery accounting check, the job that applies new deliveries and rebuilds what follows
them, and the sensor that starts it when a delivery file lands in a folder.

The sensor only lists the delivery folders (names, sizes, modification times): it never opens
the warehouse, which a run may be writing. What it has seen is its cursor; a new or rewritten
ready file starts one run (run_key from the new files' names, sizes and mtimes). A file still
being written - a temporary name, or modified within settle_seconds - waits for a later tick."""


import functools
import hashlib
import json
import time

import dagster as dg

from cdp.config import Source, TenantConfig
from cdp.engine import SourceLoaders, WarehouseResource, warehouse_of
from cdp.engine.tables import preview_md
from cdp.stages.sources.accounting import file_units
from cdp.stages.sources.assets import GROUP, SourceFileError, domain_asset_key, report_metadata
from cdp.stages.sources.deliveries import LEDGER, OUTCOMES, load_deliveries_here, refuse_distributed
from cdp.stages.sources.delivery_files import delivery_files, key_source

DELIVERY_JOB = "apply_deliveries"
DELIVERY_SENSOR = "new_deliveries"
# the asset tag of what delivers outside the warehouse (cdp.stages.activation.sends.send_tags):
# those follow their own sensors, as in the daily rebuild
SEND_TAG = ("cdp/role", "send")


def delivery_sources(cfg: TenantConfig) -> dict[str, Source]:
    return {name: source for name, source in cfg.sources.items() if source.deliveries is not None}


# ---- the domain asset ---------------------------------------------------------------------------

def build_delivery_asset(cfg: TenantConfig, name: str, source: Source) -> dg.AssetsDefinition:
    """domain.<name>: the deliveries of the source's folder not applied yet, applied in order."""
    folder = cfg.resolve(source.path)
    spec = source.deliveries

    @dg.asset(
        key=domain_asset_key(name), group_name=GROUP,
        description=(f"{source.description or name}: the {spec.mode} deliveries of `{source.path}/` "
                     f"({source.kind.value}), each applied once in file-name order to `domain.{name}` "
                     "(live records); deletions go to `domain.deleted_records`, bad rows to "
                     f"`domain.quarantine`, every delivery applied to `{LEDGER}`."),
        kinds={cfg.active_engine, source.format or "csv"},
        metadata={"delivery_folder": str(folder), "delivery_mode": spec.mode,
                  "semantic_tags": dg.MetadataValue.json(source.columns)},
        tags={"cdp/kind": source.kind.value},
    )
    def _domain_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        loaders = SourceLoaders(in_process=functools.partial(load_deliveries_here, run_id=context.run.run_id),
                                distributed=refuse_distributed)
        with warehouse.get_connection() as con:
            report = warehouse_of(con).load_source(con, loaders, name, source, folder,
                                                   cfg.spark.shuffle_partitions)
        applied = report["deliveries_applied"]
        context.log.info(f"{name}: applied {len(applied)} deliveries ({', '.join(applied) or 'none new'}): "
                         + ", ".join(f"{o} {report[o]}" for o in OUTCOMES)
                         + f", quarantined {report['rows_quarantined']}; {report['rows_loaded']} live records")
        metadata = report_metadata(cfg, report)
        metadata["preview"] = dg.MetadataValue.md(preview_md(report["preview"], raw=cfg.dagster.raw_previews))
        return dg.MaterializeResult(metadata={
            **metadata, "deliveries_applied": dg.MetadataValue.json(applied),
            "deliveries_already_applied": report["deliveries_already_applied"],
            **{f"records_{o}": report[o] for o in OUTCOMES}})

    return _domain_table


def build_delivery_check(cfg: TenantConfig, name: str, source: Source) -> dg.AssetChecksDefinition:
    """every_row_accounted_for, per delivery: read = loaded + quarantined, the rows tiled the file
    when it was applied and the quarantine holds as many of its rows; the deliveries of the latest
    run that applied any are recounted from their files (lines or rows, without the parser)."""
    folder = cfg.resolve(source.path)

    @dg.asset_check(asset=domain_asset_key(name), name="every_row_accounted_for",
                    description="each applied delivery: every unit of its file, counted without the "
                                "loader's parser, is in exactly one loaded, deleting or quarantined row")
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            ledger = con.execute(f"""select delivery, rows_read, rows_loaded, rows_quarantined, units_in_file,
                                            accounting_problems, run_id = (select max_by(run_id, processed_at)
                                                from {LEDGER} where source = $1) as latest
                                     from {LEDGER} where source = $1 order by delivery""", [name]).fetchall()
            quarantined = dict(con.execute("select delivery, count(*) from domain.quarantine where source = ? "
                                           "group by delivery", [name]).fetchall())
        problems, not_recounted = [], []
        for delivery, read, loaded, set_aside, units, recorded, latest in ledger:
            problems += [f"{delivery}: {p}" for p in json.loads(recorded)]
            if read != loaded + set_aside:
                problems.append(f"{delivery}: read {read} = loaded {loaded} + quarantined {set_aside} fails")
            if quarantined.get(delivery, 0) != set_aside:
                problems.append(f"{delivery}: domain.quarantine holds {quarantined.get(delivery, 0)} of its "
                                f"rows, the ledger {set_aside}")
            path = folder / delivery
            if not latest:      # recounted when its run applied it: a year of files is not re-read daily
                continue
            if not path.exists():
                not_recounted.append(delivery)
                continue
            counted = file_units(key_source(source) if source.deliveries.is_deletes_file(delivery) else source, path)
            if counted != units:
                problems.append(f"{delivery}: the file has {counted} units now, {units} when it was applied")
        return dg.AssetCheckResult(passed=not problems, metadata={
            "deliveries_checked": len(ledger), "not_recounted": dg.MetadataValue.json(not_recounted),
            "problems": dg.MetadataValue.json(problems)})

    return _check


# ---- the sensor and its job ---------------------------------------------------------------------

def delivery_job():
    return dg.define_asset_job(
        DELIVERY_JOB, selection=dg.AssetSelection.groups(GROUP).downstream() - dg.AssetSelection.tag(*SEND_TAG),
        description="Apply new deliveries: every source, and everything downstream of them but the sends "
                    "(the send sensors, once started, send what changed).")


def ready_deliveries(cfg: TenantConfig, now: float | None = None) -> tuple[list[str], list[str]]:
    """(signatures 'source/file:size:mtime_ns' of every ready delivery file, folders missing)."""
    signatures, missing = [], []
    for name, source in delivery_sources(cfg).items():
        try:
            paths = delivery_files(name, source, cfg.resolve(source.path), now)
        except SourceFileError:
            missing.append(source.path)
            continue
        for path in paths:
            stat = path.stat()
            signatures.append(f"{name}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return sorted(signatures), missing


def build_delivery_sensor(cfg: TenantConfig, job) -> dg.SensorDefinition:
    @dg.sensor(name=DELIVERY_SENSOR, job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Runs apply_deliveries once per new delivery file in a source's delivery folder "
                           "(files still being written wait: temporary names, or modified within the "
                           "source's deliveries.settle_seconds). Lists the folders only, never the warehouse.")
    def _sensor(context: dg.SensorEvaluationContext):
        current, missing = ready_deliveries(cfg, time.time())
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        new = [s for s in current if s not in seen]
        context.update_cursor(json.dumps(current))
        if not new:
            why = "no new delivery file" + (f"; folders not found: {', '.join(missing)}" if missing else "")
            return dg.SkipReason(why)
        key = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=f"deliveries@{key}", tags={"cdp/trigger": "delivery",
                                                                 "cdp/deliveries": ", ".join(new)[:200]})

    return _sensor


def delivery_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The domain asset and check of every source of deliveries, their job and sensor (none for a
    tenant without one)."""
    sources = delivery_sources(cfg)
    if not sources:
        return dg.Definitions()
    job = delivery_job()
    return dg.Definitions(assets=[build_delivery_asset(cfg, n, s) for n, s in sources.items()],
                          asset_checks=[build_delivery_check(cfg, n, s) for n, s in sources.items()],
                          jobs=[job], sensors=[build_delivery_sensor(cfg, job)])
