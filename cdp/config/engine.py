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
