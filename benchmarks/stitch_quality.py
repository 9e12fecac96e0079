"""Stitch quality on generated data with ground truth, and wall time per pipeline stage.

    .venv/bin/python -m benchmarks.stitch_quality [--people 2000] [--seed 42] [--keep DIR]

Generates the demo sources (households, movers, nicknames, typos, junk values), materializes
the whole demo graph into a fresh warehouse through Dagster (real Splink, real dbt), then prints
pairwise precision / recall / F1 of the cdp_ids against the generator's true person ids, and the
time each step took.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from benchmarks.harness import machine_line
from cdp.cli import run_tenant
from cdp.config import DEFAULT_CONFIG
from cdp.demo.generate import CUSTOMER_FILES, generate_demo_data
from cdp.stages.stitch import pairwise_quality


def step_timings(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    started, took = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            started[ev.step_key] = entry.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            took[ev.step_key] = entry.timestamp - started.get(ev.step_key, entry.timestamp)
    return took


SHARED_FIELDS = ("given_name", "surname", "email", "phone", "birthdate", "address", "postal", "loyalty_id")


def missed_pairs_by_shared_evidence(con, truth: pd.DataFrame) -> list[tuple[str, int]]:
    """True pairs given different cdp_ids, counted by which fields the two records have equal:
    pairs that share nothing or one weak field are out of any matcher's reach."""
    con.register("_truth", truth)
    shared = " || ".join(f"case when l.{f} = r.{f} then '{f} ' else '' end" for f in SHARED_FIELDS)
    rows = con.execute(f"""
        with p as (select p.*, c.cdp_id, t.person_id from stitch.unified_preprocessed_raw p
                   join stitch.unified_coalesced c using (source, pk) join _truth t using (source, pk))
        select trim({shared}) as shared, count(*) as n
        from p l join p r on l.person_id = r.person_id and l.unique_id < r.unique_id
                         and l.cdp_id <> r.cdp_id
        group by 1 order by n desc, shared""").fetchall()
    con.unregister("_truth")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", help="keep the tenant folder here instead of a temp dir")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cdp_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEFAULT_CONFIG, root / "tenant.yaml")
    os.environ.pop("CDP_WAREHOUSE", None)

    t0 = time.perf_counter()
    counts = generate_demo_data(root / "data", people=args.people, seed=args.seed)
    generate_s = time.perf_counter() - t0

    with dg.instance_for_test() as instance:
        t0 = time.perf_counter()
        result = run_tenant(str(root / "tenant.yaml"), quiet=True, instance=instance)
        total_s = time.perf_counter() - t0
        if not result.success:
            print("pipeline FAILED", file=sys.stderr)
            return 1
        timings = step_timings(instance, result.run_id)

    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    assigned = con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()
    blocklisted = con.execute("select count(*) from stitch.blocklist").fetchall()[0][0]
    truth = pd.read_csv(root / "data" / "ground_truth.csv", dtype=str)
    missed = missed_pairs_by_shared_evidence(con, truth)
    con.close()
    q = pairwise_quality(assigned, truth)

    print(f"# stitch quality - {args.people:,} people, seed {args.seed}")
    print(machine_line())
    print(f"source records: {sum(counts[f] for f in CUSTOMER_FILES):,}"
          f" (generated in {generate_s:.1f}s); blocklisted values: {blocklisted}")
    print(f"true people: {q['people_true']:,}   cdp_ids: {q['people_found']:,}")
    print(f"pairs: true {q['pairs_true']:,}, predicted {q['pairs_predicted']:,}, correct {q['pairs_correct']:,}")
    print(f"pairwise precision {q['precision']:.4f}  recall {q['recall']:.4f}  F1 {q['f1']:.4f}")
    print(f"cluster  precision {q['cluster_precision']:.4f}  recall {q['cluster_recall']:.4f}  "
          f"F1 {q['cluster_f1']:.4f}  ({q['clusters_exact']:,} clusters exactly one whole person)")
    print("missed pairs by the fields their two records share (after the blocklist):")
    for shared, n in missed[:8]:
        print(f"  {n:6,}  {shared or 'nothing'}")
    print("wall time per step:")
    for step, secs in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<45} {secs:7.2f}s")
    print(f"  {'whole run (incl. Dagster overhead)':<45} {total_s:7.2f}s")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
