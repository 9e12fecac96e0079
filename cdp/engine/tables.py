"""SQL helpers every engine's connection runs (transactions, whole-table replaces, previews): the
Spark connection accepts the same statements as DuckDB (cdp/engine/spark/connection.py)."""

from __future__ import annotations

import contextlib

import pandas as pd


@contextlib.contextmanager
def transaction(con):
    """Readers see all of the block's writes or none of them."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


@contextlib.contextmanager
def uncompressed_writes(con):
    """Tables written in the block are stored uncompressed. DuckDB's compression analysis is
    about a third of the time of writing a wide million-row table; for the QA tables Stitch
    rewrites on every run that time matters more than their size on disk (~1.5x)."""
    con.execute("set force_compression = 'uncompressed'")
    try:
        yield con
    finally:
        con.execute("reset force_compression")


def replace_table(con, schema: str, table: str, df: pd.DataFrame) -> None:
    """Atomically replace schema.table with the rows of df (one transaction)."""
    con.execute(f'create schema if not exists "{schema}"')
    con.register("_incoming", df)
    try:
        with transaction(con):
            con.execute(f'create or replace table "{schema}"."{table}" as select * from _incoming')
    finally:
        con.unregister("_incoming")


def preview_md(df: pd.DataFrame, rows: int = 5, *, raw: bool = False) -> str:
    """A markdown preview of the first rows, for the asset's metadata in the UI (and Dagster's
    event log). Personal data is masked (pii.py) unless `raw` (the tenant's
    `dagster.raw_previews`)."""
    if df.empty:
        return "_(no rows)_"
    head = df.head(rows)
    if not raw:
        from cdp.pii import mask_frame

        head = mask_frame(head)
    head = head.astype(object).where(head.notna(), "")
    cols = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in head.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|")[:40] for v in r.values) + " |")
    return "\n".join(lines)


def table_preview(con, relation: str, rows: int = 5, *, raw: bool = False) -> tuple[int, str]:
    """(row count, markdown preview) of a warehouse table; PII masked unless `raw`."""
    count = con.execute(f"select count(*) from {relation}").fetchone()[0]
    return count, preview_md(con.execute(f"select * from {relation} limit {rows}").df(), rows, raw=raw)
