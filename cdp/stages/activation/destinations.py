"""Stage 8 - activation: destinations, the sensors that export when an exported table refreshes,
and the daily rebuild schedule.

A file destination drops one file per run into its folder (optionally gzipped). The file is
written under a temporary name in the same folder and renamed into place, so a reader never
sees half a file. A webhook destination receives JSON batches (see `send_webhook`); a postgres
destination a table swapped in atomically (`bi.publish_to_postgres`). Orchestrations, which bind
a segment or query to a destination, are in `orchestrations.py`.

Every send delivers a version of its data once (`sends.py`): an export run of unchanged data drops
no file, and the sensors - stopped by default - ask for a run only for a new materialization.
"""


import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from cdp.engine import WarehouseResource
from cdp.config import Destination, Postgres, TenantConfig
from cdp.errors import UserError
from cdp.pii import mask_text
from cdp.stages.activation.bi_connect import build_postgres_asset
from cdp.stages.activation.sends import (delivered_already, payload_version, record_delivery, resend_requested, send_selection,
                    send_sensor, send_tags, skip_unchanged)
from cdp.engine.tables import preview_md

GROUP = "activation"
EXPORT_JOB = "activation_exports"
REBUILD_JOB = "rebuild_customer_360"


def export_file_name(tenant: str, destination: str, run_id: str, fmt: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{tenant}__{destination}__{stamp}__{run_id[:8]}.{fmt}"


def write_atomically(con, query: str, folder: Path, file_name: str, fmt: str, gzip: bool = False,
                     params: list | None = None) -> Path:
    """COPY the query result to a temp file in the destination folder, then rename it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=f".{fmt}", dir=folder)
    os.close(fd)
    try:
        if fmt == "csv":
            options = "(format csv, header true, compression gzip)" if gzip else "(format csv, header true)"
        else:
            options = "(format parquet, compression gzip)" if gzip else "(format parquet)"
        con.execute(f"copy ({query}) to '{tmp}' {options}", params or [])
        final = folder / file_name
        os.replace(tmp, final)
        return final
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_suffix(fmt: str, gzip: bool) -> str:
    return f"{fmt}.gz" if gzip and fmt == "csv" else fmt


# ---- webhook ------------------------------------------------------------------------------------

class WebhookError(UserError, RuntimeError):
    """A batch the receiver refused, or that still failed after every retry."""


@dataclass
class WebhookResult:
    batches: int
    records: int
    retries: int


RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def idempotency_key(run_id: str, orchestration: str, batch: int) -> str:
    """The same for every retry of one batch of one run, so the receiver can drop duplicates."""
    return hashlib.sha256(f"{run_id}:{orchestration}:{batch}".encode()).hexdigest()[:32]


def send_webhook(records_json: list[str], url: str, *, orchestration: str, campaign: str, run_id: str,
                 batch_size: int = 500, max_retries: int = 5, backoff_seconds: float = 0.5,
                 timeout_seconds: float = 30, log=None) -> WebhookResult:
    """POST the records (each already a JSON object) in batches. A batch is retried on connection
    errors, 408/425/429 and 5xx with exponential backoff (honouring Retry-After); any other
    non-2xx fails at once. Every request carries an Idempotency-Key stable across retries."""
    import httpx

    batches = [records_json[i:i + batch_size] for i in range(0, len(records_json), batch_size)]
    retries = 0
    with httpx.Client(timeout=timeout_seconds) as client:
        for b, batch in enumerate(batches):
            body = ('{"campaign": %s, "orchestration": %s, "run_id": %s, "batch": %d, "batches": %d, '
                    '"records": [%s]}' % (json.dumps(campaign), json.dumps(orchestration), json.dumps(run_id),
                                          b + 1, len(batches), ",".join(batch)))
            headers = {"Content-Type": "application/json",
                       "Idempotency-Key": idempotency_key(run_id, orchestration, b)}
            for attempt in range(max_retries + 1):
                try:
                    r = client.post(url, content=body.encode(), headers=headers)
                    # a receiver may echo the records back: the log (Dagster's event log) keeps
                    # its answer with any email or phone in it masked
                    problem = None if r.is_success else f"HTTP {r.status_code}: {mask_text(r.text[:200])}"
                    retryable = r.status_code in RETRYABLE
                    wait = _retry_after(r)
                except httpx.TransportError as exc:
                    problem, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
                if problem is None:
                    break
                if not retryable or attempt == max_retries:
                    raise WebhookError(f"webhook {url}: batch {b + 1}/{len(batches)} failed after "
                                       f"{attempt + 1} attempt(s): {problem}")
                delay = wait if wait is not None else backoff_seconds * (2 ** attempt)
                if log:
                    log.warning(f"webhook batch {b + 1}/{len(batches)}: {problem}; retry in {delay:.1f}s")
                retries += 1
                time.sleep(delay)
    return WebhookResult(batches=len(batches), records=len(records_json), retries=retries)


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def build_destination_asset(cfg: TenantConfig, name: str, dest: Destination) -> dg.AssetsDefinition:
    schema, table = dest.table.split(".")
    folder = cfg.resolve(dest.path)
    send = f"{GROUP}/{name}"

    @dg.asset(
        key=[GROUP, name],
        group_name=GROUP,
        deps=[dg.AssetKey([schema, table])],
        kinds={dest.format, "file"},
        tags=send_tags(),
        description=f"File drop of `{dest.table}` to `{dest.path}` as {dest.format}: one file per new "
                    "version of the table, written atomically.",
        metadata={"destination_folder": str(folder)},
    )
    def _export(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        columns = ", ".join(f'"{c}"' for c in dest.columns) if dest.columns else "*"
        query = f'select {columns} from "{schema}"."{table}" order by 1'
        file_name = export_file_name(cfg.tenant, name, context.run.run_id, file_suffix(dest.format, dest.gzip))
        with warehouse.get_connection() as con:
            version, rows = payload_version(con, query, {"destination": dest.model_dump(mode="json"),
                                                         "folder": str(folder)})
            last = delivered_already(con, send, version, resend_requested(context))
            if last is not None:
                return skip_unchanged(context, send, last, rows)
            path = write_atomically(con, query, folder, file_name, dest.format, dest.gzip)
            record_delivery(con, send, name, version, rows, str(path), context.run.run_id)
            sample = con.execute(f"{query} limit 5").df()
        context.log.info(f"exported {rows} rows of {dest.table} to {path}")
        return dg.MaterializeResult(metadata={
            "sent": True, "dagster/row_count": rows, "version": version,
            "path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size,
            "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews))},
        data_version=dg.DataVersion(version))

    return _export


def _export_sensor(table: dg.AssetKey, destinations: list[dg.AssetKey], export_job):
    return send_sensor(
        f"export_on_{'_'.join(table.path)}_refresh", [table], destinations, export_job,
        description=f"Runs the exports of {table.to_user_string()} once per new materialization of it.")


def _publish_sensor(name: str, tables: list[dg.AssetKey], export_job):
    """A destination that publishes several tables together (BI Connect) runs once all of them
    were materialized again since its last run, so it never publishes a half-rebuilt schema."""
    return send_sensor(
        f"publish_{name}_when_its_tables_refresh", tables, [dg.AssetKey([GROUP, name])], export_job,
        description=f"Runs destination {name} once every table it publishes was materialized again.")


def destination_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The file exports, the Postgres publishers (BI Connect, cdp/stages/bi/assets.py) and their
    jobs, sensors and the daily rebuild schedule."""
    # a destination an orchestration sends to receives that orchestration's rows, not a table export
    orchestrated = {o.destination for o in cfg.orchestrations.values()}
    files = {n: d for n, d in cfg.destinations.items() if isinstance(d, Destination) and n not in orchestrated}
    exports = [build_destination_asset(cfg, n, d) for n, d in files.items()]
    publishers = [build_postgres_asset(cfg, n, d) for n, d in cfg.destinations.items()
                  if isinstance(d, Postgres) and n not in orchestrated]
    sends = dg.AssetSelection.assets(*[dg.AssetKey(["activation", f"send_{n}"]) for n in cfg.orchestrations])
    export_job = dg.define_asset_job(
        EXPORT_JOB, selection=dg.AssetSelection.groups(GROUP) - sends,  # sends follow their own sensors
        description="Send the customer 360 to every configured destination.")
    # segments, saved queries and the profile store are rebuilt too (the Profile API is never
    # stale); only what leaves the platform waits for the send sensors
    rebuild_job = dg.define_asset_job(
        REBUILD_JOB, selection=dg.AssetSelection.all() - send_selection(),
        description="Rebuild everything but the sends; the send sensors, once started, send what changed.")

    # one sensor per exported table; it sends only the destinations of that table
    destinations_of: dict[dg.AssetKey, list[dg.AssetKey]] = {}
    for n, d in files.items():
        destinations_of.setdefault(dg.AssetKey(d.table.split(".")), []).append(dg.AssetKey([GROUP, n]))
    sensors = []
    for key in sorted(destinations_of, key=lambda k: k.to_user_string()):
        sensors.append(_export_sensor(key, destinations_of[key], export_job))
    for n, d in cfg.destinations.items():
        if isinstance(d, Postgres) and n not in orchestrated:
            sensors.append(_publish_sensor(n, [dg.AssetKey(t.split(".")) for t in d.tables], export_job))

    schedule = dg.ScheduleDefinition(
        name="daily_rebuild", job=rebuild_job, cron_schedule=cfg.rebuild_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuild everything but the sends every day; the send sensors, once started, "
                    "send what changed.")
    return dg.Definitions(assets=[*exports, *publishers], jobs=[export_job, rebuild_job], sensors=sensors,
                          schedules=[schedule])
