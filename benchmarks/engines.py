"""The same stitch on both engines: DuckDB (embedded) and Spark (local[2]), one run.

    .venv/bin/python -m benchmarks.engines [--records 1000000] [--seed 3] [--data DIR] [--spark-master local[2]]

1. generates customer sources for about --records source records (customers only; the
   generator of benchmarks/stitch_scale.py, in benchmarks/harness.py),
2. materializes the domain tables on each engine through Dagster (DuckDB warehouse file; Spark
   Parquet lakehouse) - reported, not part of the stitch times,
3. trains the Splink model once (untimed): the model JSON serves both engines,
4. in a fresh process each: materializes the stitch asset group through Dagster - on DuckDB, then
   with CDP_ENGINE=spark - from a first-run state (no id history), the saved model reused by
   both. Wall time of the job and peak RSS of the whole process tree (Python + Spark's JVM),
   sampled from /proc every 0.2 s.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

from benchmarks.harness import (STITCH_GROUP_JOB, ensure_customer_sources, machine_line, run_measured,
                                write_customers_only_tenant)

SCALE_OUT_NOTE = """\
How the Spark path scales out: every step of Stitch on Spark is a Spark SQL job over Parquet
(Splink's blocking, scoring and connected components included), so on a cluster
(`spark.master: spark://...`, `yarn`, `k8s://...`, or Databricks) the work spreads across
executors; the lakehouse folder must then be a filesystem path every node sees (a shared
mount; object-store URIs like s3:// are not supported yet - tables are replaced with local
file operations). On local[2] it
shares the same 2 cores DuckDB uses, and pays for Spark's per-job scheduling and Parquet
round trips: DuckDB is the faster engine on one machine. What comes to the driver: values
shared by several given names (blocklist), contested stable-id choices, labels and the model
charts - per value or per record, never per pair; and the Sources standardisation (pandas)."""


def materialize(cfg_path: str, engine: str, groups: tuple[str, ...]) -> float:
    import dagster as dg

    from cdp.config import load_config
    from cdp.definitions import build_definitions

    os.environ["CDP_ENGINE"] = engine
    try:
        defs = build_definitions(load_config(cfg_path))
        t0 = time.perf_counter()
        with dg.instance_for_test() as instance:
            job = defs.resolve_implicit_global_asset_job_def()
            assert job.execute_in_process(
                instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                asset_selection=sorted(dg.AssetSelection.groups(*groups).resolve(defs.resolve_asset_graph())),
            ).success
        return time.perf_counter() - t0
    finally:
        os.environ.pop("CDP_ENGINE", None)


def main() -> int:
    from cdp.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--data", help="folder for the tenant (default: a temp dir)")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-driver-memory", default="12g")
    args = parser.parse_args()

    root = Path(args.data or tempfile.mkdtemp(prefix="cdp_engines_"))
    root.mkdir(parents=True, exist_ok=True)
    write_customers_only_tenant(root / "tenant.yaml", spark={
        "master": args.spark_master, "shuffle_partitions": 8,
        "conf": {"spark.driver.memory": args.spark_driver_memory}})
    config = str(root / "tenant.yaml")
    os.environ.pop("CDP_WAREHOUSE", None)
    os.environ.pop("CDP_ENGINE", None)

    gen_s = ensure_customer_sources(root / "data", args.records, args.seed)
    cfg = load_config(config)
    domain_s = {engine: materialize(config, engine, ("sources",)) for engine in ("duckdb", "spark")}
    import duckdb

    models = cfg.warehouse_path.parent / "stitch_artefacts" / "models"
    t0 = time.perf_counter()
    if not (models / "current.json").exists():
        materialize(config, "duckdb", ("stitch",))
    train_s = time.perf_counter() - t0

    def first_run_state():
        """No id history, no stitch tables, on either engine; the saved model stays."""
        with duckdb.connect(str(cfg.warehouse_path)) as con:
            con.execute("drop schema if exists stitch cascade")
        shutil.rmtree(cfg.lakehouse_path / "stitch", ignore_errors=True)

    runs = {}
    first_run_state()
    for engine in ("duckdb", "spark"):
        runs[engine], _ = run_measured(STITCH_GROUP_JOB, config, env={"CDP_ENGINE": engine}, tree_rss=True,
                                       failure=f"{engine} stitch failed")
        print(f"  {engine}: {runs[engine]['seconds']:.1f}s, peak {runs[engine]['peak_gib']:.2f} GiB", flush=True)

    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        on_duckdb = con.execute("select source || '|' || pk as uid, cdp_id from stitch.unified_coalesced").df()
    on_spark = duckdb.sql(f"select source || '|' || pk as uid, cdp_id from "
                          f"read_parquet('{cfg.lakehouse_path / 'stitch' / 'unified_coalesced'}/*.parquet')").df()

    def people(frame):
        return {frozenset(g) for _, g in frame.groupby("cdp_id")["uid"]}

    same = people(on_duckdb) == people(on_spark)
    duck, spark = runs["duckdb"], runs["spark"]
    print(f"# engines - the same stitch of {len(on_duckdb):,} source records -> "
          f"{on_duckdb['cdp_id'].nunique():,} cdp_ids (DuckDB) / {on_spark['cdp_id'].nunique():,} (Spark)")
    print(machine_line(memory=True))
    print(f"data generated in {gen_s:.0f}s; domain tables: DuckDB {domain_s['duckdb']:.0f}s, "
          f"Spark {domain_s['spark']:.0f}s; model trained in {train_s:.0f}s (not timed below)")
    print(f"{'stitch asset group':34}{'wall':>10}{'peak RSS':>12}")
    print(f"{'DuckDB':34}{duck['seconds']:>9.1f}s{duck['peak_gib']:>10.2f}GiB")
    print(f"{'Spark ' + args.spark_master:34}{spark['seconds']:>9.1f}s{spark['peak_gib']:>10.2f}GiB")
    print(f"ratio Spark / DuckDB: time {spark['seconds'] / duck['seconds']:.2f}x, "
          f"memory {spark['peak_gib'] / duck['peak_gib']:.2f}x; same people on both: {same}")
    print("DuckDB stitch_match phases:", ", ".join(f"{k} {v}s" for k, v in duck["stitch_match_phases"].items()))
    print("Spark stitch_match phases:", ", ".join(f"{k} {v}s" for k, v in spark["stitch_match_phases"].items()))
    print(SCALE_OUT_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
