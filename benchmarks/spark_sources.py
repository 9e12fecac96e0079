"""Domain tables on both engines: every source of the demo tenant standardised in this process
(the DuckDB engine's path) and as a Spark job (local[2], cdp/stages/sources/spark.py), timed, and
checked equal - the same domain rows and values, the same quarantined rows and reasons, the same
invalid-value counts.

    .venv/bin/python -m benchmarks.spark_sources [--people N] [--driver-memory 2g]

Spark's time includes reading the file, the shuffle into key buckets and collecting the result
for the comparison (not writing Parquet); a few malformed lines are appended to pos_customers.csv.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from cdp.config import DEFAULT_CONFIG, load_config
from cdp.demo.generate import generate_demo_data
from cdp.stages.sources.assets import DOMAIN_COLUMNS, build_domain_table
from cdp.stages.sources.spark import INVALID_COLUMN, INVALID_COUNT, RAW_ROW, REASON, ROW_KIND, standardise_on_spark


def _cells(frame: pd.DataFrame) -> list[tuple]:
    def cell(v):
        if v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return None
        return pd.Timestamp(v).isoformat() if hasattr(v, "isoformat") else v
    return [tuple(cell(v) for v in row) for row in frame.astype(object).itertuples(index=False)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--driver-memory", default="2g")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    root = Path(tempfile.mkdtemp(prefix="cdp_spark_sources_"))
    shutil.copy(DEFAULT_CONFIG, root / "tenant.yaml")
    generate_demo_data(root / "data", people=args.people, seed=3)
    with open(root / "data" / "pos_customers.csv", "a", encoding="utf-8") as fh:
        fh.write("\nonly,three,fields\n,NoKey,Person,,,,,,,,,,\n")
    cfg = load_config(root / "tenant.yaml")
    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", args.driver_memory)
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "4")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    print(f"{'source':22} {'rows':>8} {'quarantined':>11} {'here s':>7} {'spark s':>7}  equal")
    try:
        for name, source in cfg.sources.items():
            path = cfg.resolve(source.path)
            start = time.perf_counter()
            domain, batch, _ = build_domain_table(name, source, path)
            here_s = time.perf_counter() - start
            start = time.perf_counter()
            raw, out = standardise_on_spark(spark, name, source, path, 4)
            rows = out.toPandas()
            read_rejects = raw.filter(f"{REASON} is not null").select("source_row", RAW_ROW, REASON).toPandas()
            spark_s = time.perf_counter() - start
            columns = DOMAIN_COLUMNS[source.kind]
            same_domain = (_cells(rows[rows[ROW_KIND] == "domain"][columns].sort_values("source_row"))
                           == _cells(domain.sort_values("source_row")))
            quarantined = pd.concat([read_rejects, rows[rows[ROW_KIND] == "quarantine"][["source_row", RAW_ROW, REASON]]])
            same_quarantine = (sorted(zip(quarantined["source_row"].astype(int), quarantined[RAW_ROW], quarantined[REASON]))
                               == sorted((r["source_row"], r["raw_row"], r["reason"]) for r in batch.rejects))
            invalid = rows[rows[ROW_KIND] == "invalid"].groupby(INVALID_COLUMN)[INVALID_COUNT].sum().to_dict()
            same_invalid = invalid == batch.invalid_values
            print(f"{name:22} {len(domain):>8,} {len(batch.rejects):>11,} {here_s:>7.1f} {spark_s:>7.1f}  "
                  f"{same_domain and same_quarantine and same_invalid}")
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
