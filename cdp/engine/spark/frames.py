"""Frames across the boundary: pandas -> Spark (column types, nulls) and Spark -> Arrow/DuckDB
(type names, naive timestamps), so values keep the types the DuckDB warehouse gives them."""

from __future__ import annotations

import datetime as dt

import pandas as pd


def spark_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_integer_dtype(column):
        return "bigint"
    if pd.api.types.is_float_dtype(column):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "timestamp"
    present = column.dropna()
    if present.empty:
        return "string"
    value = present.iloc[0]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    return "string"


def spark_schema(frame: pd.DataFrame) -> str:
    return ", ".join(f"`{c}` {spark_type(frame[c])}" for c in frame.columns)


def spark_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, so Spark infers nullable columns instead of NaN doubles."""
    out = frame.astype(object).where(frame.notna(), None)
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            out[col] = frame[col]
    return out


def duckdb_type_name(dtype) -> str:
    from pyspark.sql.types import ArrayType, StringType

    if isinstance(dtype, ArrayType):
        return duckdb_type_name(dtype.elementType) + "[]"
    if isinstance(dtype, StringType):
        return "VARCHAR"
    return dtype.simpleString().upper()


def arrow_naive_timestamps(table):
    """Spark hands timestamps to Arrow as UTC instants (the session time zone is UTC); the
    warehouse's timestamps are naive: the same wall-clock values without a zone."""
    import pyarrow as pa

    columns = [col.cast(pa.timestamp(col.type.unit)) if pa.types.is_timestamp(col.type) and col.type.tz
               else col for col in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)
