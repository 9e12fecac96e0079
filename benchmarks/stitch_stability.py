"""ID stability: perturb 1% of the input (edit, add, delete records) and report the share of
untouched people whose cdp_id changed (target 0).

    .venv/bin/python -m benchmarks.stitch_stability [--people 2000] [--share 0.01] [--seed 42]
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

from cdp.cli import run_tenant
from cdp.config import DEFAULT_CONFIG
from cdp.demo.generate import generate_demo_data, perturb_demo_data
from cdp.stages.stitch.quality import id_stability


def assigned(root: Path) -> pd.DataFrame:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cdp_stability_"))
    shutil.copy(DEFAULT_CONFIG, root / "tenant.yaml")
    os.environ.pop("CDP_WAREHOUSE", None)
    generate_demo_data(root / "data", people=args.people, seed=args.seed)
    with dg.instance_for_test() as instance:
        assert run_tenant(str(root / "tenant.yaml"), quiet=True, instance=instance).success
        before = assigned(root)
        touched = perturb_demo_data(root / "data", share=args.share, seed=args.seed)
        t0 = time.perf_counter()
        assert run_tenant(str(root / "tenant.yaml"), quiet=True, instance=instance).success
        rerun_s = time.perf_counter() - t0
    after = assigned(root)
    truth = pd.read_csv(root / "data" / "ground_truth.csv", dtype=str, keep_default_na=False)
    result = id_stability(before, after, truth, touched)
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    changes = con.execute("select change, count(*) from stitch.unified_changes_clusters "
                          "group by 1 order by 1").fetchall()
    reasons = con.execute("select reason, count(*) from stitch.unified_changes_pks "
                          "group by 1 order by 1").fetchall()
    con.close()
    print(f"# cdp_id stability - {args.people:,} people, {args.share:.1%} touched, seed {args.seed}")
    print(f"people touched: {result['people_touched']}, untouched: {result['people_untouched']:,}")
    print(f"untouched people whose id changed: {result['untouched_with_changed_id']} "
          f"(share {result['share_changed']:.6f}; target 0)")
    print("cluster changes:", ", ".join(f"{k} {v}" for k, v in changes))
    print("record changes:", ", ".join(f"{k} {v}" for k, v in reasons))
    print(f"second run (model reused): {rerun_s:.1f}s")
    shutil.rmtree(root, ignore_errors=True)
    return 0 if result["untouched_with_changed_id"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
