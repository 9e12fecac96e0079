"""Ways to score a delivery against every record, on a stitched warehouse: Splink link_only
with the delta as one input and, as the other, the records a blocking rule could pair with it
(what the incremental Stitch does) or every record; and dedupe_only over every record with
`(l.in_delta or r.in_delta)` added to each blocking rule.

    .venv/bin/python -m benchmarks.incremental_scoring CONFIG [--share 0.01] [--rounds 3]

CONFIG: a tenant whose Stitch has run (its warehouse and saved model are read, not changed).
A seeded sample of --share of the records stands for the delta. Each way runs in a fresh
process, alternating, --rounds times; the medians and both pair counts are printed (equal counts:
the two find the same pairs).
"""

import argparse
import statistics
import sys

from benchmarks.harness import machine_line, run_measured

COMMON = """
import json, logging, sys, time
import duckdb
from splink import DuckDBAPI, Linker
from cdp.config import load_config
from cdp.stages.stitch.model import DESIGN_KEY, ModelStore
from cdp.stages.stitch.assets import artefacts_dir
cfg = load_config(sys.argv[1])
model = ModelStore(artefacts_dir(cfg)).current().load()
con = duckdb.connect(str(cfg.warehouse_path))  # temp tables only: nothing is written to it
con.execute("create temp table _delta_ids as select unique_id from stitch.unified_preprocessed_raw "
            f"using sample {float(sys.argv[2]) * 100}% (bernoulli, 7)")
t0 = time.perf_counter()
"""

LINK_ONLY = COMMON + """
from cdp.stages.stitch import incremental as inc
from cdp.engine import warehouse_of
con.execute("create temp view prepared as select * from "
            + warehouse_of(con).scratch_visible(con, "stitch.unified_preprocessed_raw"))
con.execute(f"create temp table {inc.DELTA} as select * from prepared where unique_id in (select unique_id from _delta_ids)")
pairs = inc.score_delta(con, model, cfg.stitch.score_threshold, narrow=sys.argv[3] == "narrow")
print(json.dumps({"seconds": time.perf_counter() - t0, "pairs": pairs}))
"""

IN_DELTA = COMMON + """
con.execute("create temp table flagged as select *, unique_id in (select unique_id from _delta_ids) as in_delta "
            "from stitch.unified_preprocessed_raw")
settings = {k: v for k, v in model.items() if k != DESIGN_KEY}
settings["blocking_rules_to_generate_predictions"] = [
    {**r, "blocking_rule": f"({r['blocking_rule']}) and (l.in_delta or r.in_delta)"}
    for r in settings["blocking_rules_to_generate_predictions"]]
db_api = DuckDBAPI(connection=con)
linker = Linker(db_api.register("flagged", table_name="flagged_in"), settings, log_level=logging.ERROR)
predictions = linker.inference.predict(threshold_match_probability=cfg.stitch.score_threshold)
pairs = con.execute(f"select count(*) from {predictions.physical_name}").fetchall()[0][0]
print(json.dumps({"seconds": time.perf_counter() - t0, "pairs": int(pairs)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = {"link_only, narrowed (ours)": [], "link_only, every record": [], "dedupe_only + in_delta": []}
    for _ in range(args.rounds):
        for name, (code, how) in zip(runs, ((LINK_ONLY, "narrow"), (LINK_ONLY, "all"), (IN_DELTA, "-"))):
            result, _ = run_measured(code, args.config, str(args.share), how)
            runs[name].append(result)
            print(f"  {name}: {result['seconds']:.1f}s, {result['pairs']:,} pairs", flush=True)
    print(f"# scoring a {args.share:.0%} delivery against every record")
    print(machine_line())
    for name, results in runs.items():
        print(f"{name:28}{statistics.median(r['seconds'] for r in results):>8.1f}s"
              f"{results[-1]['pairs']:>14,} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
