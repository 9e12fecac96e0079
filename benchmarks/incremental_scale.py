"""Incremental customer 360 at scale: a full build of a database's models over ~1,000,000 source
records, then an incremental build after 1% of the people changed, time per model.

    .venv/bin/python -m benchmarks.incremental_scale [--records 1000000] [--seed 5] [--keep DIR]
                                                     [--no-check]

1. synthesises stitch.unified_coalesced as benchmarks/merge_scale.py does (people with 1-4
   records from four sources) for one probabilistic database, c360 (merge_scale's rules);
2. `dbt run` of c360's models - unified_records, touched_people, merged_customers,
   merged_customers_provenance, customer_360, built_records - from nothing (a full build);
3. changes 1% of the people in stitch.unified_coalesced in one statement each: 0.4% get a new
   email on every record, 0.2% have a record moved to the next person, 0.2% lose every record
   (they are gone), 0.2% get a new record;
4. the same `dbt run` again: incremental (only the touched people recomputed);
5. unless --no-check: a copy of the warehouse rebuilt with --full-refresh, and every row of
   each table compared with the incremental result (0 differences expected).
Times are dbt's per model (run_results.json) and the dbt process's wall time.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from benchmarks.harness import machine_line
from benchmarks.merge_scale import DATABASES, SOURCES, synthesise
from cdp.config import load_config
from cdp.dbt.project import dbt_resource, dbt_target, dbt_vars_arg, prepare_manifest, warehouse_env

DB = "c360"
MODELS = ["unified_records", "touched_people", "merged_customers", "merged_customers_provenance",
          "customer_360", "built_records"]
OUTPUTS = ["merged_customers", "merged_customers_provenance", "customer_360"]

# one statement per kind of change; a person is in the 1% when hash(cdp_id) % 500 < 5
CHANGES = {
    "new email": """update stitch.unified_coalesced set email = 'changed.' || pk || '@example.com'
                    where hash(cdp_id) % 500 in (0, 1)""",
    "record moved": """update stitch.unified_coalesced
                       set cdp_id = md5('person' || (split_part(pk, '-', 1)::bigint + 1))::uuid::varchar
                       where hash(cdp_id) % 500 = 2 and pk like '%-0'""",
    "person gone": "delete from stitch.unified_coalesced where hash(cdp_id) % 500 = 3",
    "record added": """insert into stitch.unified_coalesced
                       select * replace (pk || '-new' as pk, now()::timestamp as updated_at)
                       from stitch.unified_coalesced where hash(cdp_id) % 500 = 4 and pk like '%-0'""",
}


def dbt_run(cfg, *extra: str) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    with warehouse_env(cfg), dbt_target(cfg, "benchmark") as target:
        dbt_resource(cfg).cli(["run", "--quiet", "--select", " ".join(f"{DB}__{m}" for m in MODELS), *extra,
                               *dbt_vars_arg(cfg)], target_path=target, raise_on_error=True).wait()
        wall = time.perf_counter() - t0
        results = json.loads((target / "run_results.json").read_text())["results"]
    return wall, {r["unique_id"].split(".")[-1].removeprefix(f"{DB}__"): r["execution_time"]
                  for r in results}


def tenant(root: Path):
    doc = {"tenant": "bench", "warehouse": "warehouse.duckdb",
           "sources": {s: {"path": f"data/{s}.csv", "kind": "customers",
                           "columns": {"id": "pk", "mail": "email"}} for s in SOURCES},
           "stitch": {"match_threshold": 0.9}, "databases": {DB: DATABASES[DB]}}
    (root / "tenant.yaml").write_text(yaml.safe_dump(doc))
    return load_config(root / "tenant.yaml")


def change_one_percent(cfg) -> dict[str, int]:
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        return {kind: con.execute(sql).fetchone()[0] for kind, sql in CHANGES.items()}


def differences(incremental: Path, full: Path) -> dict[str, int]:
    with duckdb.connect(str(incremental), read_only=True) as con:
        con.execute(f"attach '{full}' as full_build (read_only)")
        return {t: con.execute(f"""select count(*) from (
                    (select * from {DB}.{t} except all select * from full_build.{DB}.{t})
                    union all
                    (select * from full_build.{DB}.{t} except all select * from {DB}.{t}))""").fetchone()[0]
                for t in OUTPUTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--keep", help="folder for the warehouse (default: a temp folder)")
    ap.add_argument("--no-check", action="store_true", help="skip the full rebuild compared row by row")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="incremental_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = tenant(root)
    cfg.warehouse_path.unlink(missing_ok=True)
    n_records, n_people = synthesise(cfg.warehouse_path, args.records, args.seed)
    print(f"synthesised {n_records:,} records of {n_people:,} people")
    prepare_manifest(cfg)
    print(machine_line())
    full_wall, full = dbt_run(cfg)
    changed = change_one_percent(cfg)
    print("changed rows: " + ", ".join(f"{k} {v:,}" for k, v in changed.items()))
    inc_wall, inc = dbt_run(cfg)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        touched = con.execute(f"select count(*) from {DB}.touched_people").fetchone()[0]
    print(f"touched people: {touched:,} of {n_people:,} ({touched / n_people:.2%})")
    print(f"{'model':<30} {'full build':>11} {'incremental':>12} {'ratio':>7}")
    for m in MODELS:
        print(f"{m:<30} {full[m]:>10.2f}s {inc[m]:>11.2f}s {inc[m] / full[m]:>6.0%}")
    outputs_full, outputs_inc = sum(full[m] for m in OUTPUTS), sum(inc[m] for m in OUTPUTS)
    book_full = full["touched_people"] + full["built_records"]
    book_inc = inc["touched_people"] + inc["built_records"]
    print(f"{'the three outputs':<30} {outputs_full:>10.2f}s {outputs_inc:>11.2f}s "
          f"{outputs_inc / outputs_full:>6.0%}")
    print(f"{'+ touched_people, built_records':<30} {outputs_full + book_full:>10.2f}s "
          f"{outputs_inc + book_inc:>11.2f}s {(outputs_inc + book_inc) / (outputs_full + book_full):>6.0%}")
    print(f"{'dbt wall':<30} {full_wall:>10.1f}s {inc_wall:>11.1f}s")
    if not args.no_check:
        copy = root / "full_copy"
        copy.mkdir(exist_ok=True)
        shutil.copy(cfg.warehouse_path, copy / "warehouse.duckdb")
        copy_cfg = tenant(copy)
        prepare_manifest(copy_cfg)
        dbt_run(copy_cfg, "--full-refresh")
        print(f"rows differing from a --full-refresh rebuild: {differences(cfg.warehouse_path, copy / 'warehouse.duckdb')}")
    print(f"warehouse {cfg.warehouse_path}")


if __name__ == "__main__":
    main()
