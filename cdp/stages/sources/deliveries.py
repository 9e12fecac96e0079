"""A source of deliveries applied to its domain table: each new delivery once, in file-name order.

    domain.<source>          the live records: each key's latest version, with the delivery that
                             brought it and when it arrived (a re-delivered unchanged record keeps
                             both: arrived_at > T means new or changed since T)
    domain.deleted_records   (source, key, deleted_at, delivery): every record a delivery deleted
    domain.deliveries        the ledger: one row per delivery applied (digest, row counts, run)
    domain.quarantine        a delivery's bad rows, with the delivery they came from

A delta's records insert or replace by key and its deletions remove keys; a snapshot's records
replace the live set, and a key it no longer holds is deleted. A delivery is applied in one
transaction with its ledger row, so it is applied wholly or not at all. A processed file whose
content changed, or a new file that sorts before one already applied, is an error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cdp.config import Source
from cdp.engine.tables import transaction
from cdp.errors import UserError
from cdp.stages.sources.accounting import tile
from cdp.stages.sources.assets import DELIVERY_COLUMNS, QUARANTINE_DDL, SOURCE_POSITION, domain_columns, reason_key
from cdp.stages.sources.delivery_files import (KEY_COLUMNS, Delivery, content_digest, delivery_files,
                                               read_delivery)
from cdp.stages.sources.spark import column_types

LEDGER = "domain.deliveries"
LEDGER_DDL = f"""create table if not exists {LEDGER} (
    source varchar, delivery varchar, digest varchar, rows_read bigint, rows_loaded bigint,
    rows_quarantined bigint, rows_deleted bigint, inserted bigint, updated bigint, unchanged bigint,
    units_in_file bigint, accounting_problems varchar, processed_at timestamp, run_id varchar,
    file_size bigint, file_mtime_ns bigint)"""
DELETED_DDL = """create table if not exists domain.deleted_records (
    source varchar, key varchar, deleted_at timestamp, delivery varchar)"""
OUTCOMES = ("inserted", "updated", "unchanged", "deleted")


class DeliveryError(UserError):
    """A delivery folder that cannot be applied as it is (a changed or late file)."""


def now_utc() -> pd.Timestamp:
    """When a delivery is processed: naive UTC, to the microsecond."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")


# ---- the tables ---------------------------------------------------------------------------------

def applied_deliveries(con, name: str) -> dict[str, tuple[str, int, int]]:
    """delivery file -> (content digest, size, mtime_ns) of every delivery of the source applied."""
    found = con.execute(f"select delivery, digest, file_size, file_mtime_ns from {LEDGER} where source = ? "
                        "order by delivery", [name]).fetchall()
    return {delivery: (digest, size, mtime) for delivery, digest, size, mtime in found}


def prepare_tables(con, name: str, source: Source) -> dict[str, str]:
    """The ledger, deleted records and quarantine (with its delivery column) exist, and the
    domain table with its typed columns; returns the deliveries already applied. A source with
    none applied starts empty (a table left by a one-file load of it is replaced)."""
    con.execute("create schema if not exists domain")
    for ddl in (LEDGER_DDL, DELETED_DDL, QUARANTINE_DDL):
        con.execute(ddl)
    con.execute("alter table domain.quarantine add column if not exists delivery varchar")
    applied = applied_deliveries(con, name)
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'domain' "
                         "and table_name = ?", [name]).fetchall()[0][0]
    if applied and not exists:
        raise DeliveryError(f"source {name!r}: domain.{name} is gone but {len(applied)} deliveries were "
                            f"applied to it; delete its rows of {LEDGER} to apply them all again")
    if not applied:
        types = column_types(source)
        columns = ", ".join(f'"{c}" {types.get(c, "varchar")}' for c in domain_columns(source))
        with transaction(con):
            con.execute(f'create or replace table domain."{name}" ({columns})')
            for table in ("domain.quarantine", "domain.deleted_records"):
                con.execute(f"delete from {table} where source = ?", [name])
    return applied


def check_folder(name: str, files: list[Path], applied: dict[str, tuple[str, int, int]]) -> list[Path]:
    """The files not applied yet. Deliveries are immutable and applied in file-name order: an
    applied file whose content changed, or a new one that sorts before the last applied, is an
    error naming the file. An applied file is hashed again only when its size or modification
    time is not the ledger's (a rewrite changes them), so a long history costs a stat per file."""
    for path in files:
        if path.name not in applied:
            continue
        digest, size, mtime = applied[path.name]
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime) and content_digest(path) != digest:
            raise DeliveryError(f"source {name!r}: delivery {path} changed after it was applied "
                                "(deliveries are immutable): deliver the change as a new file")
    new = [p for p in files if p.name not in applied]
    last = max(applied, default=None)
    late = [p.name for p in new if last is not None and p.name < last]
    if late:
        raise DeliveryError(f"source {name!r}: deliveries {late} sort before {last!r}, which is already "
                            "applied (deliveries are applied in file-name order): rename them to sort after it")
    return new


# ---- applying one delivery ----------------------------------------------------------------------

def _key_join(kind, left: str, right: str) -> str:
    return " and ".join(f'{left}."{k}" = {right}."{k}"' for k in KEY_COLUMNS[kind])


def _key_text(kind, alias: str) -> str:
    parts = [f'cast({alias}."{k}" as varchar)' for k in KEY_COLUMNS[kind]]
    return parts[0] if len(parts) == 1 else f"concat_ws('|', {', '.join(parts)})"


def _stage_records(con, name: str, source: Source, delivery: Delivery, arrived: pd.Timestamp) -> None:
    """Temp table _incoming: the delivery's records typed as the domain table."""
    columns = domain_columns(source)
    frame = delivery.records.assign(delivery=delivery.file, arrived_at=arrived)
    frame = frame.reindex(columns=columns)
    con.execute(f'create or replace temp table _incoming as select * from domain."{name}" limit 0')
    if len(frame):
        names = ", ".join(f'"{c}"' for c in columns)
        con.register("_delivery_records", frame)
        try:
            con.execute(f"insert into _incoming ({names}) select {names} from _delivery_records")
        finally:
            con.unregister("_delivery_records")


def _upsert(con, name: str, source: Source) -> tuple[int, int]:
    """Records new or changed (by content: every column but the position and delivery columns)
    replace their key's version; (inserted, updated)."""
    kind = source.kind
    content = [c for c in domain_columns(source) if c not in (*SOURCE_POSITION, *DELIVERY_COLUMNS)]
    same = " and ".join(f'l."{c}" is not distinct from i."{c}"' for c in content)
    first = KEY_COLUMNS[kind][0]
    con.execute(f"""create or replace temp table _changed as
        select i.*, l."{first}" is null as _is_new from _incoming i
        left join domain."{name}" l on {_key_join(kind, 'l', 'i')}
        where l."{first}" is null or not ({same})""")
    inserted, updated = con.execute("select count(*) filter (where _is_new), count(*) filter (where not _is_new) "
                                    "from _changed").fetchall()[0]
    con.execute(f'delete from domain."{name}" l using _changed i where {_key_join(kind, "l", "i")}')
    con.execute(f'insert into domain."{name}" select * exclude (_is_new) from _changed')
    return inserted, updated


def _doomed_keys(con, name: str, source: Source, delivery: Delivery) -> None:
    """Temp table _doomed: the live keys this delivery deletes (a snapshot: every key none of its
    rows holds, loaded or quarantined; a delta: the keys it lists)."""
    kind, keys = source.kind, ", ".join(f'l."{k}"' for k in KEY_COLUMNS[source.kind])
    snapshot = source.deliveries.mode == "snapshot"
    listed = (delivery.held_keys if snapshot else delivery.deleted_keys)[list(KEY_COLUMNS[kind])]
    con.register("_delivery_keys", listed.drop_duplicates())
    try:
        con.execute(f"""create or replace temp table _doomed as select {keys} from domain."{name}" l
            where {'not' if snapshot else ''} exists (select 1 from _delivery_keys d
                                                      where {_key_join(kind, 'l', 'd')})""")
    finally:
        con.unregister("_delivery_keys")


def _delete(con, name: str, source: Source, delivery: Delivery, when: pd.Timestamp) -> int:
    _doomed_keys(con, name, source, delivery)
    con.execute(f"insert into domain.deleted_records select ?, {_key_text(source.kind, 'd')}, ?, ? "
                "from _doomed d", [name, when, delivery.file])
    con.execute(f'delete from domain."{name}" l using _doomed d where {_key_join(source.kind, "l", "d")}')
    return con.execute("select count(*) from _doomed").fetchall()[0][0]


def _quarantine(con, name: str, delivery: Delivery, when: pd.Timestamp) -> None:
    if not delivery.rejects:
        return
    q = pd.DataFrame(delivery.rejects, columns=["source", "source_row", "raw_row", "reason"])
    q = q.assign(source=name, quarantined_at=when, delivery=delivery.file)
    con.register("_delivery_quarantine", q)
    try:
        con.execute("insert into domain.quarantine (source, source_row, raw_row, reason, quarantined_at, "
                    "delivery) select source, source_row, raw_row, reason, quarantined_at, delivery "
                    "from _delivery_quarantine")
    finally:
        con.unregister("_delivery_quarantine")


def account_for_delivery(con, source: Source, delivery: Delivery) -> list[str]:
    """The accounting check of one delivery: its loaded, deleting and quarantined rows tile the
    file's units (counted without the parser) exactly, as assets.account_for for a one-file source."""
    con.register("_delivery_positions", delivery.positions)
    try:
        figures = tile(con, "select source_row, source_lines, quarantined from _delivery_positions", [],
                       delivery.units_in_file, first=1 if source.format == "parquet" else 2)
    finally:
        con.unregister("_delivery_positions")
    problems = list(figures["problems"])
    if delivery.rows_read != delivery.rows_loaded + len(delivery.rejects):
        problems.append(f"read {delivery.rows_read} rows but loaded {delivery.rows_loaded} and quarantined "
                        f"{len(delivery.rejects)}")
    return problems


def apply_delivery(con, name: str, source: Source, delivery: Delivery, digest: str, run_id: str) -> dict:
    """One delivery applied with its quarantine rows and ledger row, in one transaction;
    returns its ledger row."""
    when = now_utc()
    problems = account_for_delivery(con, source, delivery)
    with transaction(con):
        _stage_records(con, name, source, delivery, when)
        inserted, updated = _upsert(con, name, source)
        deleted = _delete(con, name, source, delivery, when)
        _quarantine(con, name, delivery, when)
        row = {"source": name, "delivery": delivery.file, "digest": digest, "rows_read": delivery.rows_read,
               "rows_loaded": delivery.rows_loaded, "rows_quarantined": len(delivery.rejects),
               "rows_deleted": deleted, "inserted": inserted, "updated": updated,
               "unchanged": len(delivery.records) - inserted - updated,
               "units_in_file": delivery.units_in_file, "accounting_problems": json.dumps(problems),
               "processed_at": when, "run_id": run_id, "file_size": delivery.file_size,
               "file_mtime_ns": delivery.file_mtime_ns}
        con.execute(f"insert into {LEDGER} ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                    list(row.values()))
    return row


# ---- the loader ---------------------------------------------------------------------------------

def load_deliveries_here(con, name: str, source: Source, folder: Path, *, run_id: str) -> dict:
    """Apply every delivery of the folder not applied yet, in order; return what the asset reports."""
    applied = prepare_tables(con, name, source)
    new = check_folder(name, delivery_files(name, source, folder), applied)
    report = {"deliveries_applied": [], "deliveries_already_applied": len(applied), "rows_read": 0,
              "rows_quarantined": 0, "quarantine_reasons": {}, "invalid_values_nulled": {},
              "columns_ignored": [], **{o: 0 for o in OUTCOMES}}
    for path in new:
        digest = content_digest(path)
        delivery = read_delivery(name, source, path)
        row = apply_delivery(con, name, source, delivery, digest, run_id)
        _add_to_report(report, delivery, row)
    report["rows_loaded"] = con.execute(f'select count(*) from domain."{name}"').fetchall()[0][0]
    report["preview"] = con.execute(f'select * from domain."{name}" limit 5').df()
    return report


def _add_to_report(report: dict, delivery: Delivery, row: dict) -> None:
    report["deliveries_applied"].append(delivery.file)
    report["rows_read"] += row["rows_read"]
    report["rows_quarantined"] += row["rows_quarantined"]
    report["deleted"] += row["rows_deleted"]
    for outcome in ("inserted", "updated", "unchanged"):
        report[outcome] += row[outcome]
    for r in delivery.rejects:
        key = reason_key(r["reason"])
        report["quarantine_reasons"][key] = report["quarantine_reasons"].get(key, 0) + 1
    for column, n in delivery.invalid_values.items():
        report["invalid_values_nulled"][column] = report["invalid_values_nulled"].get(column, 0) + n
    report["columns_ignored"] = sorted({*report["columns_ignored"], *delivery.columns_ignored})
    if delivery.read_as:
        report["read_as"] = delivery.read_as


def refuse_distributed(con, name: str, source: Source, folder: Path, buckets: int) -> dict:
    """The distributed loader of a source of deliveries: not built yet (Spark)."""
    raise UserError(f"source {name!r}: deliveries: delivery folders are loaded on the duckdb engine only "
                    "for now; run this tenant on duckdb, or point path: at one file")
