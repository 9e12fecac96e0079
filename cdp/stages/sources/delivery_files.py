"""A source's folder of delivery files: which files are ready, their content digest, and one
delivery read into the records it brings (standardised as a one-file source's rows are) and the
keys it deletes (rows whose deleted flag is true, or a deletes file's keys).

Every row of a delivery ends in exactly one place - a record, a deleted key or the quarantine
with its reason - and where it came from (source_row, source_lines) is kept for the accounting
check of that delivery."""

from __future__ import annotations

import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cdp.config import Source, SourceKind
from cdp.config.deliveries import TRUE_FLAGS, UNFINISHED_SUFFIXES
from cdp.stages.sources import standardize as std
from cdp.stages.sources.accounting import file_units
from cdp.stages.sources.assets import (SOURCE_POSITION, STANDARDISERS, Batch, SourceFileError, _reject_unparseable,
                                       _require, ignored_columns, read_source_file)

# the tags of a record's key per kind (what _dedupe keys on) and their domain columns
KEY_TAGS: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.customers: ("pk",), SourceKind.transactions: ("order-id",),
    SourceKind.transaction_items: ("order-id", "line-number"), SourceKind.products: ("product-id",)}
KEY_COLUMNS: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.customers: ("pk",), SourceKind.transactions: ("order_id",),
    SourceKind.transaction_items: ("order_id", "line_number"), SourceKind.products: ("product_id",)}


# ---- the folder ---------------------------------------------------------------------------------

def is_unfinished(file_name: str) -> bool:
    """A file a writer has not finished (a temporary or partial name), or a hidden one."""
    return file_name.startswith((".", "~")) or file_name.lower().endswith(UNFINISHED_SUFFIXES)


def delivery_files(name: str, source: Source, folder: Path, now: float | None = None) -> list[Path]:
    """The folder's delivery files that are ready, in file-name order: data files (files:) and
    deletes files (deletes:), none unfinished or modified within settle_seconds."""
    if not folder.is_dir():
        raise SourceFileError(f"source {name!r}: delivery folder not found: {folder} (path:)")
    spec = source.deliveries
    now = time.time() if now is None else now
    data_glob = spec.data_glob(source.format or "csv")
    ready = []
    for path in folder.iterdir():
        if not path.is_file() or is_unfinished(path.name):
            continue
        if not (fnmatch.fnmatchcase(path.name, data_glob) or spec.is_deletes_file(path.name)):
            continue
        if now - path.stat().st_mtime < spec.settle_seconds:
            continue
        ready.append(path)
    return sorted(ready, key=lambda p: p.name)


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes: a delivery is the same delivery while this holds."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- one delivery -------------------------------------------------------------------------------

@dataclass
class Delivery:
    """One delivery file read: the records it brings, the keys it deletes, what it set aside."""

    file: str
    records: pd.DataFrame          # standardised domain rows (delivery columns not yet set)
    deleted_keys: pd.DataFrame     # the kind's key columns, one row per key to delete
    held_keys: pd.DataFrame        # the key of every row read, loaded or quarantined (snapshots)
    rejects: list[dict]
    rows_read: int
    units_in_file: int             # counted without the parser (see assets.file_units)
    positions: pd.DataFrame        # source_row, source_lines, quarantined: every row of the file
    invalid_values: dict[str, int] = field(default_factory=dict)
    file_size: int = 0             # the file's size and mtime when it was read (the ledger keeps them)
    file_mtime_ns: int = 0
    read_as: dict = field(default_factory=dict)
    columns_ignored: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        """Rows applied: records and deletions."""
        return int((~self.positions["quarantined"]).sum())


def key_source(source: Source) -> Source:
    """The source as a deletes file is read: its key columns only."""
    tags = KEY_TAGS[source.kind]
    return source.model_copy(update={
        "columns": {c: t for c, t in source.columns.items() if t in tags}, "attributes": {}})


def read_delivery(name: str, source: Source, path: Path) -> Delivery:
    """A delivery file read and standardised: a deletes file's keys, or a data file's records
    (and, with a deleted flag, the keys its flagged rows delete)."""
    stat = path.stat()
    read = _read_deletes if source.deliveries.is_deletes_file(path.name) else _read_records
    delivery = read(name, source, path)
    delivery.file_size, delivery.file_mtime_ns = stat.st_size, stat.st_mtime_ns
    return delivery


def _read_records(name: str, source: Source, path: Path) -> Delivery:
    batch = read_source_file(name, source, path)
    header = [c for c in batch.rows.columns if c not in SOURCE_POSITION]
    flag = source.deliveries.deleted_flag
    if flag is not None and flag not in header:
        raise SourceFileError(f"source {name!r}: {path}: the deleted flag column {flag!r} "
                              f"(deliveries.deleted_flag) is not in the file (it has {header})")
    rows_read = len(batch.rows) + len(batch.rejects)  # before the standardiser sets rows aside
    deleting = (is_true(batch.rows[flag]) if flag is not None
                else pd.Series(False, index=batch.rows.index))
    held = held_keys(batch.rows, source)
    changes = Batch(name, batch.rows[~deleting], rejects=batch.rejects, read_as=batch.read_as,
                    unit=batch.unit)
    records = STANDARDISERS[source.kind](changes, source).reset_index(drop=True)
    deletions = Batch(name, batch.rows[deleting], unit=batch.unit)
    keys = deletion_keys(deletions, source)
    rejects = changes.rejects + deletions.rejects
    return Delivery(
        file=path.name, records=records, deleted_keys=keys, held_keys=held, rejects=rejects,
        rows_read=rows_read, units_in_file=file_units(source, path),
        positions=positions(records, keys, rejects), invalid_values=changes.invalid_values,
        read_as=batch.read_as, columns_ignored=ignored_columns(source, header))


def _read_deletes(name: str, source: Source, path: Path) -> Delivery:
    keyed = key_source(source)
    batch = read_source_file(name, keyed, path)
    header = [c for c in batch.rows.columns if c not in SOURCE_POSITION]
    rows_read = len(batch.rows) + len(batch.rejects)
    keys = deletion_keys(batch, source)
    records = pd.DataFrame(columns=[*KEY_COLUMNS[source.kind], *SOURCE_POSITION])
    return Delivery(
        file=path.name, records=records.iloc[0:0], deleted_keys=keys, held_keys=keys.iloc[0:0],
        rejects=batch.rejects,
        rows_read=rows_read, units_in_file=file_units(keyed, path),
        positions=positions(records.iloc[0:0], keys, batch.rejects), read_as=batch.read_as,
        columns_ignored=ignored_columns(keyed, header))


def is_true(values: pd.Series) -> pd.Series:
    """A deleted flag's rows that delete (1, true, yes, y, t; any case)."""
    text = std.blank_to_none(values)
    return text.map(lambda v: isinstance(v, str) and v.lower() in TRUE_FLAGS).astype(bool)


def deletion_keys(batch: Batch, source: Source) -> pd.DataFrame:
    """The keys of a batch's rows, read as the standardiser reads them; a row without its key
    goes to quarantine. Columns: the kind's key columns and the rows' positions."""
    mapping = {source.column_for(tag): column
               for tag, column in zip(KEY_TAGS[source.kind], KEY_COLUMNS[source.kind])}
    if None in mapping:
        missing = [t for t in KEY_TAGS[source.kind] if source.column_for(t) is None]
        raise SourceFileError(f"source {batch.source!r}: deleting {source.kind.value} records needs "
                              f"columns tagged {missing} (columns:)")
    df = batch.rows[[*mapping, *SOURCE_POSITION]].rename(columns=mapping)
    for column in KEY_COLUMNS[source.kind]:
        if column == "line_number":
            number, bad = std.numbers(df[column])
            df = _reject_unparseable(batch, df, column, number, bad, required=True)
            df[column] = df[column].astype("int64")
        else:
            df = _require(batch, df, column, column.replace("_", " "))
    return df.reset_index(drop=True)


def held_keys(rows: pd.DataFrame, source: Source) -> pd.DataFrame:
    """The keys of rows as the standardiser reads them, whether or not the row is then loaded: a
    snapshot holds a record it quarantines (a bad amount), whose previous version stays."""
    mapping = {source.column_for(tag): column
               for tag, column in zip(KEY_TAGS[source.kind], KEY_COLUMNS[source.kind]) if source.column_for(tag)}
    df = rows[list(mapping)].rename(columns=mapping)
    out = pd.DataFrame(index=df.index)
    for column in KEY_COLUMNS[source.kind]:
        if column == "line_number":  # as standardise_items numbers the lines of an order
            number = std.numbers(df[column])[0] if column in df else pd.Series(float("nan"), index=df.index)
            out[column] = number.where(number.notna(), out.groupby("order_id").cumcount() + 1)
            out = out.dropna(subset=[column]).astype({column: "int64"})
        else:
            out[column] = std.identifier(df[column])
            out = out[out[column].notna()]
    return out.drop_duplicates().reset_index(drop=True)


def positions(records: pd.DataFrame, keys: pd.DataFrame, rejects: list[dict]) -> pd.DataFrame:
    """Where every row of a delivery went, by its position in the file."""
    kept = pd.concat([records[list(SOURCE_POSITION)], keys[list(SOURCE_POSITION)]], ignore_index=True)
    kept["quarantined"] = False
    set_aside = pd.DataFrame({"source_row": [r["source_row"] for r in rejects], "source_lines": 1,
                              "quarantined": True})
    out = pd.concat([kept, set_aside], ignore_index=True) if rejects else kept
    return out.astype({"source_row": "int64", "source_lines": "int64", "quarantined": bool})
