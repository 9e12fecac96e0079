"""Sends: what leaves the platform - file drops, orchestration sends (file, webhook, PostgreSQL),
BI Connect publishes and the lakehouse sync - leaves once per new data.

Two guards, so that neither a *Materialize all*, a second `cdp run`, a restarted daemon nor a
sensor tick in the middle of a run sends the same thing twice:

1. **An idempotency key per send, kept in the warehouse.** `activation.sends` has one row per
   delivery: the send (asset), its destination, the *version* of what was delivered, rows,
   where it went, run and time. The version is a fingerprint of exactly what the destination
   receives - row count, an order-independent hash of every row, the column names - and of the
   send's settings (format, path, field mapping, ...). Before delivering, a send compares the
   version it is about to deliver with the last one it delivered to that destination: equal,
   nothing leaves (the materialization says `sent: false` and which run delivered that version).
   The key lives beside the data and `campaign_recipients` (an orchestration records its
   recipients in the same transaction), so it holds whichever Dagster instance ran the send: an
   ephemeral `cdp run`, `dagster dev`, a deployment. A deliberate resend of unchanged data is a
   run with the tag `cdp/resend=true` (Launchpad, or `dagster job launch --tags`).
2. **Sensors that read the Dagster instance, not only their cursor** (`send_sensor`). A send is
   due when its upstream was materialized after the send's own last materialization, and is not
   due while the run that materialized the upstream (a Materialize all, `cdp run`) is still going
   and will materialize the send itself. The cursor records the upstream materializations each
   send was requested (or found up to date) for, so a restarted daemon does not ask again, and
   each request's run key names them, so Dagster drops a repeated request too.

Sensors are **stopped by default**: a send reaches people and partners (an email campaign, an
audience at an ad platform, a file a partner loads), so switching one on is a decision, taken
once per deployment in the UI (Automation) or with `dagster sensor start <name>`; it stays on
across restarts. `cdp run` and *Materialize all* still send what changed, as they materialize
the send assets themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg

from cdp.engine import warehouse_of

ROLE_TAG = "cdp/role"           # asset tag: cdp/role=send on every asset that delivers outside
RESEND_TAG = "cdp/resend"       # run tag: cdp/resend=true delivers even an unchanged version
SENDS = "activation.sends"
SENDS_DDL = f"""create table if not exists {SENDS} (
    send_name varchar, destination varchar, version varchar, rows bigint, target varchar,
    run_id varchar, sent_at timestamp)"""


def send_tags() -> dict[str, str]:
    return {ROLE_TAG: "send"}


def send_selection() -> dg.AssetSelection:
    """Every asset that delivers outside the warehouse."""
    return dg.AssetSelection.tag(ROLE_TAG, "send")


# ---- the idempotency key ----------------------------------------------------------------------

def payload_version(con, query: str, settings: dict | None = None) -> tuple[str, int]:
    """(version, rows) of the rows of `query` as a destination receives them: sha256 over the
    column names, the row count, the sum of a hash of every row (order-independent, duplicates
    count) and the send's settings. One aggregate scan (a million rows: ~0.1 s on DuckDB)."""
    names, rows, total = warehouse_of(con).rows_digest(con, query)
    return version_of({"columns": names, "rows": int(rows), "hash": total, "settings": settings or {}}), int(rows)


def version_of(doc: dict) -> str:
    """A version string for a JSON-able description of what is delivered."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Delivery:
    version: str
    run_id: str
    sent_at: datetime
    target: str


def last_delivery(con, send: str) -> Delivery | None:
    """What `send` last delivered, from activation.sends."""
    con.execute("create schema if not exists activation")
    con.execute(SENDS_DDL)
    rows = con.execute(f"select version, run_id, sent_at, target from {SENDS} where send_name = ? "
                       "order by sent_at desc limit 1", [send]).fetchall()  # all: no open result left
    return Delivery(*rows[0]) if rows else None


def record_delivery(con, send: str, destination: str, version: str, rows: int, target: str,
                    run_id: str) -> None:
    """Append a delivery (inside the caller's transaction, with whatever else it records)."""
    con.execute("create schema if not exists activation")
    con.execute(SENDS_DDL)
    con.execute(f"insert into {SENDS} values (?, ?, ?, ?, ?, ?, ?)",
                [send, destination, version, rows, target, run_id,
                 datetime.now(timezone.utc).replace(tzinfo=None)])


def resend_requested(context) -> bool:
    return (context.run.tags.get(RESEND_TAG) or "").lower() == "true"


def delivered_already(con, send: str, version: str, resend: bool = False) -> Delivery | None:
    """The earlier delivery of this very version, when it is the last one this send made (and no
    resend was asked for): then nothing is to leave again. A version delivered before a
    different one is delivered again (the destination holds the other one now)."""
    if resend:
        return None
    last = last_delivery(con, send)
    return last if last is not None and last.version == version else None


def unchanged_metadata(last: Delivery, rows: int) -> dict:
    return {"sent": False, "dagster/row_count": rows, "version": last.version,
            "unchanged_since": f"run {last.run_id} at {last.sent_at:%Y-%m-%d %H:%M:%S} UTC",
            "delivered_to": last.target,
            "note": f"the same data was delivered already; launch with tag {RESEND_TAG}=true to send it again"}


def skip_unchanged(context, send: str, last: Delivery, rows: int) -> dg.MaterializeResult:
    context.log.info(f"{send}: unchanged since run {last.run_id[:8]} ({last.version}), nothing sent")
    return dg.MaterializeResult(metadata=unchanged_metadata(last, rows),
                                data_version=dg.DataVersion(last.version))


# ---- sensors ----------------------------------------------------------------------------------

def _latest(instance, key: dg.AssetKey):
    records = instance.fetch_materializations(key, limit=1).records
    return records[0] if records else None


def _materializing_run(instance, target: dg.AssetKey, upstream: list) -> str | None:
    """The unfinished run that will materialize `target` after the latest upstream
    materializations: the run that produced one of them (Materialize all, `cdp run`) or one
    planned after them; None when there is none."""
    planned = instance.get_latest_planned_materialization_info(target)
    if planned is None:
        return None
    if planned.run_id not in {r.run_id for r in upstream} and \
            planned.storage_id < max(r.storage_id for r in upstream):
        return None
    run = instance.get_run_by_id(planned.run_id)
    return None if run is None or run.is_finished else planned.run_id


def send_sensor(name: str, upstream: list[dg.AssetKey], targets: list[dg.AssetKey], job,
                description: str, tags: dict[str, str] | None = None) -> dg.SensorDefinition:
    """Runs the sends `targets` (in `job`: a job or its name) once per new materialization of
    their upstream: each target is due when every key of `upstream` was materialized after the
    target's last materialization (several keys: a publish of several tables waits for all of
    them), unless the run materializing the upstream also materializes it."""
    def label(key: dg.AssetKey) -> str:
        return key.to_user_string()

    @dg.sensor(name=name, description=description, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.STOPPED,
               **({"job_name": job} if isinstance(job, str) else {"job": job}))
    def _sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        latest = {key: _latest(instance, key) for key in upstream}
        missing = [label(k) for k, r in latest.items() if r is None]
        if missing:
            return dg.SkipReason(f"waiting for a first materialization of {', '.join(missing)}")
        seen = {label(k): r.storage_id for k, r in latest.items()}
        cursor = json.loads(context.cursor) if context.cursor else {}
        due, reasons = [], []
        for target in targets:
            if cursor.get(label(target)) == seen:
                reasons.append(f"{label(target)}: already handled for these materializations")
                continue
            own = _latest(instance, target)
            newer = [k for k, r in latest.items() if own is None or r.storage_id > own.storage_id]
            if not newer:
                reasons.append(f"{label(target)} is up to date: materialized after "
                               f"{', '.join(label(k) for k in upstream)}")
                cursor[label(target)] = seen
                continue
            if len(newer) < len(upstream):
                waiting = [label(k) for k in upstream if k not in newer]
                reasons.append(f"{label(target)}: waiting for {', '.join(waiting)} to be materialized again")
                continue
            run_id = _materializing_run(instance, target, list(latest.values()))
            if run_id is not None:
                reasons.append(f"{label(target)}: run {run_id[:8]} materializes it")
                continue
            due.append(target)
            cursor[label(target)] = seen
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        if not due:
            return dg.SkipReason("; ".join(reasons))
        key = ":".join(f"{k}={v}" for k, v in sorted(seen.items()))
        return dg.RunRequest(run_key=f"{'+'.join(label(t) for t in due)}@{key}", asset_selection=due,
                             tags={"cdp/trigger": "asset_refresh", **(tags or {})})

    return _sensor
