"""Stage 1 on Spark: domain tables as Spark jobs (the Spark loader of the sources stage).

With `engine: spark` a source file is read by Spark and standardised on the executors by the same
Python code as on DuckDB (sources.py, standardize.py), run over pandas batches of the rows:

    file --Spark--> raw rows (every column as text, numbered as in the file; unreadable ones set
         aside with the reason, by sources.csv_batch)
      -> bucket of the row's key (the key as the standardiser normalises it: all rows that share a
         key meet in one bucket, so duplicate keys are found exactly as on DuckDB)
      -> applyInPandas: each bucket, in file order, through the source kind's standardiser
      -> domain.<source> and the source's rows of domain.quarantine, written by Spark.

Nothing row by row comes to the driver: it reads a CSV file's header (to know the columns) and
collects the counts for the asset's metadata. A CSV file is parsed by one task (its rows are
numbered in file order, and a quoted field may span lines, so it is read whole - a file must fit
one executor's memory); the standardising - the costly part - runs in parallel. Parquet is read by
Spark directly; Delta tables (Spark needs the delta-spark package for them) are read on the driver
and handed to Spark.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdp.stages.sources import standardize as std
from cdp.config import ATTRIBUTE_TYPES, Source, SourceKind
from cdp.stages.sources import files as source_files
from cdp.stages.sources.assets import (SOURCE_POSITION, STANDARDISERS, Batch, SourceFileError, cell_text, check_columns,
                                       csv_batch, domain_columns, ignored_columns, position_unit, read_source_file,
                                       reason_key, replace_quarantine_rows)

# the tag of the column whose duplicates the standardiser rejects (rows sharing it meet in one bucket)
KEY_TAG = {SourceKind.customers: "pk", SourceKind.transactions: "order-id",
           SourceKind.transaction_items: "order-id", SourceKind.products: "product-id"}

# Spark types of the domain columns (what the DuckDB warehouse holds; every other column is text)
DOMAIN_TYPES = {
    "birthdate": "date", "created_at": "timestamp", "updated_at": "timestamp",
    "order_datetime": "timestamp", "order_revenue": "double", "order_discount": "double",
    "return_amount": "double", "line_number": "bigint", "item_quantity": "double",
    "item_unit_price": "double", "item_revenue": "double", "product_price": "double",
    "source_row": "bigint", "source_lines": "bigint", "arrived_at": "timestamp",
}

# one output row of the standardiser: a domain row, a quarantined row, or a count of invalid values
ROW_KIND, RAW_ROW, REASON, INVALID_COLUMN, INVALID_COUNT = (
    "_row_kind", "_raw_row", "_reason", "_invalid_column", "_invalid_count")


def column_types(source: Source) -> dict[str, str]:
    """Spark types of the domain columns that are not text, custom attributes by their type."""
    return {**DOMAIN_TYPES, **{c: ATTRIBUTE_TYPES[t] for c, t in source.tenant_attributes.items()}}


def _domain_schema(source: Source) -> str:
    types = column_types(source)
    return ", ".join(f"`{c}` {types.get(c, 'string')}" for c in domain_columns(source))


def _output_schema(source: Source) -> str:
    return (f"`{ROW_KIND}` string, {_domain_schema(source)}, `{RAW_ROW}` string, `{REASON}` string, "
            f"`{INVALID_COLUMN}` string, `{INVALID_COUNT}` bigint")


def _raw_schema(columns: list[str]) -> str:
    return ", ".join([*(f"`{c}` string" for c in columns), "`source_row` bigint", "`source_lines` bigint",
                      f"`{RAW_ROW}` string", f"`{REASON}` string"])


# ---- reading ------------------------------------------------------------------------------------

def _csv_header(name: str, source: Source, path: Path) -> list[str]:
    """The file's column names, from its first megabyte (the driver reads no more of it)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    try:
        return source_files.read_header(head, source.encoding, source.delimiter)
    except source_files.FileFormatError as exc:
        raise SourceFileError(f"source {name!r}: cannot read {path}: {exc}") from None


def _with_rejects(batch: Batch, columns: list[str]) -> pd.DataFrame:
    """A batch's rows and its set-aside rows in one frame of the raw schema."""
    rows = batch.rows.reindex(columns=[*columns, *SOURCE_POSITION])
    rows[RAW_ROW] = None
    rows[REASON] = None
    rejects = pd.DataFrame(batch.rejects, columns=["source_row", "raw_row", "reason"]).rename(
        columns={"raw_row": RAW_ROW, "reason": REASON})
    out = pd.concat([rows, rejects.reindex(columns=rows.columns)], ignore_index=True)
    out["source_row"] = out["source_row"].astype("int64")
    out["source_lines"] = out["source_lines"].fillna(1).astype("int64")
    return out


def read_raw_rows(spark, name: str, source: Source, path: Path):
    """(Spark DataFrame of the file's rows - its columns as text, source_row, and for a row that
    could not be read the raw row and the reason -, the file's columns)."""
    if not path.exists():
        raise SourceFileError(f"source {name!r}: file not found: {path}")
    if source.format == "parquet":
        try:
            frame = spark.read.parquet(str(path))
        except Exception as exc:  # noqa: BLE001 - any reader error means the file is unreadable
            raise SourceFileError(f"source {name!r}: cannot read parquet {path}: {exc}") from exc
        columns = list(frame.columns)
        numbered = spark.createDataFrame(frame.rdd.zipWithIndex().map(lambda p: (*p[0], p[1] + 1)),
                                         frame.schema.add("source_row", "long"))

        def as_text(frames):  # each value as text, as sources.read_source_file turns it
            for part in frames:
                for col in columns:
                    part[col] = part[col].astype(object).map(cell_text)
                yield part.assign(**{"source_lines": 1, RAW_ROW: None, REASON: None})

        raw = numbered.mapInPandas(as_text, _raw_schema(columns))
    elif source.format == "delta":
        batch = read_source_file(name, source, path)
        columns = [c for c in batch.rows.columns if c not in SOURCE_POSITION]
        raw = spark.createDataFrame(_with_rejects(batch, columns), _raw_schema(columns))
    else:
        columns = _csv_header(name, source, path)

        def parse(frames):  # the file's bytes, decoded and split into records as on DuckDB
            for frame in frames:
                for data in frame["content"]:
                    yield _with_rejects(csv_batch(name, source, bytes(data), where=path), columns)

        raw = (spark.read.format("binaryFile").load(str(path)).select("content")
               .mapInPandas(parse, _raw_schema(columns)))
    check_columns(name, source, columns, path)
    return raw, columns


# ---- standardising on the executors -------------------------------------------------------------

def standardise_rows(name: str, source: Source, rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One bucket of rows through the source kind's standardiser (in file order, as on DuckDB):
    its domain rows, quarantined rows and invalid-value counts as one frame."""
    rows = rows.sort_values("source_row", kind="stable").reset_index(drop=True)
    batch = Batch(name, rows[[*columns, *SOURCE_POSITION]], unit=position_unit(source))
    domain = STANDARDISERS[source.kind](batch, source)
    domain = domain.assign(**{ROW_KIND: "domain"})
    rejects = pd.DataFrame(batch.rejects, columns=["source", "source_row", "raw_row", "reason"])
    rejects = rejects.rename(columns={"raw_row": RAW_ROW, "reason": REASON}).assign(**{ROW_KIND: "quarantine"})
    invalid = pd.DataFrame({INVALID_COLUMN: list(batch.invalid_values),
                            INVALID_COUNT: list(batch.invalid_values.values()), ROW_KIND: "invalid"})
    out = pd.concat([frame for frame in (domain, rejects, invalid) if len(frame)], ignore_index=True)
    out = out.reindex(columns=[ROW_KIND, *domain_columns(source), RAW_ROW, REASON,
                               INVALID_COLUMN, INVALID_COUNT])
    types = column_types(source)
    for column in out.columns:  # Arrow wants one type per column: missing values as None/NaN
        kind = types.get(column)
        if column == INVALID_COUNT or kind in ("bigint", "double"):
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(
                "Int64" if kind == "bigint" or column == INVALID_COUNT else "float64")
        elif kind == "timestamp":
            out[column] = pd.to_datetime(out[column])
        else:
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def normalised_key(values: pd.Series) -> pd.Series:
    """A key as the standardisers read it (sources._require): rows equal here are duplicates."""
    return std.identifier(values)


def standardise_on_spark(spark, name: str, source: Source, path: Path, buckets: int):
    """(raw rows, standardised rows) of a source, computed once (checkpointed)."""
    from pyspark.sql import functions as F

    raw, columns = read_raw_rows(spark, name, source, path)
    raw = raw.localCheckpoint(eager=True)
    key = source.column_for(KEY_TAG[source.kind])
    normalise = F.pandas_udf(normalised_key, "string")
    rows = (raw.filter(F.col(REASON).isNull()).drop(RAW_ROW, REASON)
            .withColumn("_bucket", F.pmod(F.hash(normalise(F.col(f"`{key}`"))), F.lit(buckets))))
    standardised = (rows.groupBy("_bucket")
                    .applyInPandas(lambda frame: standardise_rows(name, source, frame, columns),
                                   _output_schema(source))
                    .localCheckpoint(eager=True))
    return raw, standardised


def load_domain_table(con, name: str, source: Source, path: Path, buckets: int) -> dict:
    """Write domain.<name> and the source's rows of domain.quarantine on Spark (con: the
    SparkConnection); return what the asset reports (as sources.build_source_asset on DuckDB)."""
    from pyspark.sql import functions as F

    raw, standardised = standardise_on_spark(con.spark, name, source, path, buckets)
    domain = standardised.filter(F.col(ROW_KIND) == "domain").select(*domain_columns(source))
    con.write_table("domain", name, domain)
    quarantine = (raw.filter(F.col(REASON).isNotNull()).select("source_row", RAW_ROW, REASON)
                  .unionByName(standardised.filter(F.col(ROW_KIND) == "quarantine")
                               .select("source_row", RAW_ROW, REASON)))
    quarantine.select(F.lit(name).alias("source"), "source_row", F.col(RAW_ROW).alias("raw_row"),
                      F.col(REASON).alias("reason"),
                      F.current_timestamp().alias("quarantined_at")).createOrReplaceTempView("_quarantine_batch")
    replace_quarantine_rows(con, name, "_quarantine_batch")
    con.spark.catalog.dropTempView("_quarantine_batch")
    # the metadata key of a reason, as on DuckDB (a few distinct reasons come to the driver)
    reasons: dict[str, int] = {}
    for reason, count in quarantine.groupBy(REASON).count().collect():
        reasons[reason_key(reason)] = reasons.get(reason_key(reason), 0) + count
    invalid = {r[0]: int(r[1]) for r in standardised.filter(F.col(ROW_KIND) == "invalid")
               .groupBy(INVALID_COLUMN).agg(F.sum(INVALID_COUNT)).collect()}
    return {"rows_read": raw.count(), "rows_loaded": domain.count(),
            "rows_quarantined": sum(reasons.values()), "quarantine_reasons": reasons,
            "invalid_values_nulled": invalid,
            "columns_ignored": ignored_columns(source, [c for c in raw.columns if c not in (RAW_ROW, REASON)]),
            "preview": domain.limit(5).toPandas()}
