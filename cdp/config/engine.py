"""`engine:` and `spark:` - which engine computes the tables (DuckDB embedded, Spark scale-out)
and where and how Spark runs."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from cdp.config.common import StrictModel


EngineName = Literal["duckdb", "spark"]


class SparkSettings(StrictModel):
    """Where and how the Spark engine runs (used when engine is spark)."""
    master: str = Field(default="local[2]", description="Spark master URL, e.g. local[2], spark://host:7077")
    lakehouse: str | None = Field(
        default=None, description="folder of the Spark tables (Parquet, one folder per schema/table), "
                                  "relative to the config; default: 'lakehouse' next to the warehouse")
    shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark configuration")

    @field_validator("master")
    @classmethod
    def _master_url(cls, v: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)(,\d+)?\])?|(spark|yarn|k8s|mesos)(://\S+)?)$", v):
            raise ValueError(f"{v!r} is not a Spark master URL (local[N], spark://host:port, yarn, "
                             "k8s://...)")
        return v


class DuckDBSettings(StrictModel):
    """How the embedded engine's connections to the warehouse file use memory and disk (cdp's own
    and dbt's). DuckDB spills to temp_directory what does not fit in memory_limit, so a step
    larger than memory (a 10M-record Stitch) runs, more slowly, instead of failing."""
    memory_limit: str | None = Field(
        default=None, description="most memory DuckDB takes for its data, e.g. 12GB, 8GiB or 60% (of "
                                  "this machine's); default DuckDB's: 80%. Python's own memory "
                                  "(pandas, Splink's model) comes on top")
    temp_directory: str | None = Field(
        default=None, description="folder DuckDB spills to, relative to the config; default: "
                                  "<warehouse file>.tmp beside the warehouse")

    @field_validator("memory_limit")
    @classmethod
    def _a_size(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(%|[KMGT]i?B)\s*", v, flags=re.IGNORECASE):
            raise ValueError(f"{v!r} is not a memory size (e.g. 12GB, 8GiB, 500MB or 60%)")
        return v.strip() if v else v
