"""Reading lakehouse tables: a Parquet file, a folder of Parquet part files (hive-partitioned
`key=value/` folders too: the keys become columns) or a Delta table (a folder with
`_delta_log/`, read with the `deltalake` package - no Spark needed), as pyarrow.

The sources stage reads such a source's `path` with it, and the lakehouse sync
(cdp/stages/activation/lakehouse_sync.py) reads back what it wrote; both sit above it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

def is_delta_table(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def lakehouse_dataset(path: Path, fmt: str) -> ds.Dataset:
    """A Parquet file or folder (hive partitions discovered; files starting with _ or . such as
    _SUCCESS are skipped) or a Delta table, as a pyarrow dataset."""
    if fmt == "delta":
        if not is_delta_table(path):
            raise ValueError(f"{path} is not a Delta table (no _delta_log folder)")
        from deltalake import DeltaTable

        return DeltaTable(str(path)).to_pyarrow_dataset()
    if path.is_dir() and is_delta_table(path):
        raise ValueError(f"{path} is a Delta table: set the source's format: delta (reading its "
                         "Parquet files directly would include removed rows)")
    return ds.dataset(str(path), format="parquet", partitioning="hive" if path.is_dir() else None)


def read_lakehouse_table(path: Path, fmt: str) -> pa.Table:
    table = lakehouse_dataset(path, fmt).to_table()
    # hive partition keys come back dictionary-encoded: plain values like every other column
    return pa.table({name: (col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col)
                     for name, col in zip(table.column_names, table.columns)})


def count_lakehouse_rows(path: Path, fmt: str) -> int:
    return lakehouse_dataset(path, fmt).count_rows()
