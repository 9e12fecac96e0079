"""What the Python side knows of the incremental per-person models
(dbt_project/macros/incremental_people.sql): the digest of the macro files dbt gets as
var('cdp_code_digest') - a changed macro rebuilds those models whole - and how a model is built
on the tenant's engine, for its materialization's metadata."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdp.paths import DBT_PROJECT_DIR


def macros_digest() -> str:
    """sha256 (16 hex digits) of the content of dbt_project/macros/, as of its files' mtimes."""
    macros = sorted((DBT_PROJECT_DIR / "macros").glob("*.sql"))
    return _macros_digest(tuple((str(p), p.stat().st_mtime_ns) for p in macros))


@functools.lru_cache(maxsize=4)
def _macros_digest(stamp: tuple) -> str:
    text = "\n".join(f"{Path(p).name}\n{Path(p).read_text()}" for p, _ in stamp)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def how_built(props: Mapping[str, Any], spark: bool) -> str | None:
    """How a per-person incremental model (meta cdp_incremental) is built, for its
    materialization's metadata; None for any other model."""
    if not props.get("config", {}).get("meta", {}).get("cdp_incremental"):
        return None
    if spark:
        return ("full rebuild: on Spark the table is rewritten whole each run (dbt-spark's "
                "parquet tables cannot delete or merge rows)")
    whole = "whole on a first build, --full-refresh or a model or settings change"
    if props.get("config", {}).get("unique_key") == "stitch_cdp_id":  # a linking database's unified_records
        return ("incremental: only the Stitch clusters whose records or components changed "
                f"recomputed (delete+insert on stitch_cdp_id); {whole}")
    return f"incremental: only the people in touched_people recomputed (delete+insert on cdp_id); {whole}"
