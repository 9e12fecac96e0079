"""Incremental Stitch against a full Stitch of the same data, delivery after delivery.

    .venv/bin/python -m benchmarks.incremental [--records 1000000] [--deltas 5] [--share 0.01]
                                               [--seed 3] [--data DIR] [--work DIR]

1. a customers-only tenant of about --records source records (generated with ground truth, or
   the files of --data copied: the originals are never changed); the people of a reserve are
   held back, to arrive later as new people;
2. the first Stitch (full: no state yet) with stitch.incremental on; its warehouse and model are
   copied to a twin tenant with stitch.incremental off, so both start from the same ids;
3. --deltas deliveries of --share each: a third of it new people from the reserve, the rest
   existing people's records edited, added or deleted (cdp.demo.generate.perturb_demo_data),
   ground truth kept; per delivery the domain tables are rebuilt (not timed, then copied to the
   twin), and in fresh processes, each through Dagster: the incremental Stitch, then the full
   Stitch of the twin on the same data (timed: the stitch asset group, the saved model reused);
4. after the last delivery: the share of records whose cdp_id equals the full rebuild's, and the
   pairwise F1 of both against the truth.
Targets: incremental <= 10% of the full Stitch's time, >= 99.9% same cdp_id, F1 within 0.002.
"""

import argparse
import csv
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import (STITCH_GROUP_JOB, customers_only_tenant, ensure_customer_sources, machine_line,
                                run_measured)


def write_tenant(path: Path, warehouse: str, incremental: bool) -> None:
    doc = customers_only_tenant()
    doc["warehouse"] = warehouse
    doc["stitch"] = {**(doc.get("stitch") or {}), "incremental": incremental, "full_rebuild_every": 1000}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def hold_back(data: Path, share: float, seed: int) -> list[dict]:
    """Take `share` of the people out of the files and the truth; returns their truth rows
    (the records are kept in data/reserve/)."""
    from cdp.demo.generate import PK_COLUMN, SOURCE_OF_FILE, _read_rows, _write_rows

    truth = list(csv.DictReader(open(data / "ground_truth.csv", newline="", encoding="utf-8")))
    people = sorted({t["person_id"] for t in truth})
    reserve = set(random.Random(seed).sample(people, round(len(people) * share)))
    held = {(t["source"], t["pk"]) for t in truth if t["person_id"] in reserve}
    (data / "reserve").mkdir(exist_ok=True)
    for name, pk_column in PK_COLUMN.items():
        header, rows = _read_rows(data / name)
        at = header.index(pk_column)
        keep = [r for r in rows if (SOURCE_OF_FILE[name], str(r[at])) not in held]
        out = [r for r in rows if (SOURCE_OF_FILE[name], str(r[at])) in held]
        _write_rows(data / name, header, keep)
        _write_rows(data / "reserve" / name, header, out)
    _write_truth(data / "ground_truth.csv", [t for t in truth if t["person_id"] not in reserve])
    return [t for t in truth if t["person_id"] in reserve]


def release(data: Path, reserve: list[dict], people: set[str]) -> None:
    """The reserve's records of these people arrive (files and truth)."""
    from cdp.demo.generate import PK_COLUMN, SOURCE_OF_FILE, _read_rows, _write_rows

    arriving = {(t["source"], t["pk"]) for t in reserve if t["person_id"] in people}
    for name, pk_column in PK_COLUMN.items():
        header, rows = _read_rows(data / name)
        _, held = _read_rows(data / "reserve" / name)
        at = header.index(pk_column)
        _write_rows(data / name, header, rows + [r for r in held if (SOURCE_OF_FILE[name], str(r[at])) in arriving])
    truth = list(csv.DictReader(open(data / "ground_truth.csv", newline="", encoding="utf-8")))
    _write_truth(data / "ground_truth.csv", truth + [t for t in reserve if t["person_id"] in people])


def _write_truth(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "pk", "person_id", "household_id"])
        writer.writeheader()
        writer.writerows(rows)


def build_domain(config: Path) -> None:
    import dagster as dg

    from cdp.config import load_config
    from cdp.definitions import build_definitions

    defs = build_definitions(load_config(config))
    with dg.instance_for_test() as instance:
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            asset_selection=sorted(dg.AssetSelection.groups("sources").resolve(defs.resolve_asset_graph())),
        ).success


def copy_domain(source: Path, target: Path) -> None:
    import duckdb

    with duckdb.connect(str(target)) as con:
        con.execute(f"attach '{source}' as src (read_only)")
        for (name,) in con.execute("select table_name from information_schema.tables "
                                   "where table_catalog = 'src' and table_schema = 'domain'").fetchall():
            con.execute(f'create or replace table domain."{name}" as select * from src.domain."{name}"')


def assigned(warehouse: Path):
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--deltas", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.01, help="people touched per delivery")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--data", help="a folder of generated customer sources to start from (copied)")
    parser.add_argument("--work", help="working folder (default: a temp dir)")
    args = parser.parse_args()

    root = Path(args.work or tempfile.mkdtemp(prefix="cdp_incremental_"))
    data = root / "data"
    if data.exists():
        shutil.rmtree(data)
    t0 = time.perf_counter()
    if args.data:
        shutil.copytree(Path(args.data), data)
    else:
        ensure_customer_sources(data, args.records, args.seed)
    new_share = args.share / 3
    reserve = hold_back(data, new_share * args.deltas * 1.2, args.seed)
    for folder in ("inc", "full"):
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir()
    write_tenant(root / "tenant_inc.yaml", "inc/warehouse.duckdb", incremental=True)
    write_tenant(root / "tenant_full.yaml", "full/warehouse.duckdb", incremental=False)
    inc_cfg, full_cfg = str(root / "tenant_inc.yaml"), str(root / "tenant_full.yaml")
    build_domain(root / "tenant_inc.yaml")
    first, _ = run_measured(STITCH_GROUP_JOB, inc_cfg)
    shutil.copy(root / "inc" / "warehouse.duckdb", root / "full" / "warehouse.duckdb")
    shutil.copytree(root / "inc" / "stitch_artefacts", root / "full" / "stitch_artefacts")
    print(f"setup {time.perf_counter() - t0:.0f}s; first Stitch (full, trains) {first['seconds']:.1f}s", flush=True)

    reserve_people = sorted({t["person_id"] for t in reserve})
    rng = random.Random(args.seed)
    rows = []
    for n in range(1, args.deltas + 1):
        people = set(rng.sample(reserve_people, min(len(reserve_people), round(len(reserve_people) / (args.deltas * 1.2)))))
        reserve_people = [p for p in reserve_people if p not in people]
        release(data, reserve, people)
        from cdp.demo.generate import perturb_demo_data
        perturb_demo_data(data, share=args.share - new_share, seed=args.seed * 100 + n)
        build_domain(root / "tenant_inc.yaml")
        copy_domain(root / "inc" / "warehouse.duckdb", root / "full" / "warehouse.duckdb")
        inc, _ = run_measured(STITCH_GROUP_JOB, inc_cfg)
        full, _ = run_measured(STITCH_GROUP_JOB, full_cfg)
        rows.append((n, inc, full))
        print(f"  delivery {n}: incremental {inc['seconds']:.1f}s, full {full['seconds']:.1f}s "
              f"({inc['seconds'] / full['seconds']:.1%}); incremental steps {inc['steps']}; "
              f"match phases {inc['stitch_match_phases']}", flush=True)

    import pandas as pd

    from cdp.stages.stitch import pairwise_quality

    a_inc, a_full = assigned(root / "inc" / "warehouse.duckdb"), assigned(root / "full" / "warehouse.duckdb")
    both = a_inc.merge(a_full, on=["source", "pk"], suffixes=("_inc", "_full"))
    same = float((both["cdp_id_inc"] == both["cdp_id_full"]).mean())
    truth = pd.read_csv(data / "ground_truth.csv", dtype=str)
    q_inc, q_full = pairwise_quality(a_inc, truth), pairwise_quality(a_full, truth)
    ratio = sum(i["seconds"] for _, i, _ in rows) / sum(f["seconds"] for _, _, f in rows)
    print(f"# incremental Stitch - {len(a_inc):,} records, {args.deltas} deliveries of {args.share:.1%}")
    print(machine_line(memory=True))
    print(f"{'delivery':>8}{'incremental':>13}{'full':>9}{'share':>8}")
    for n, inc, full in rows:
        print(f"{n:>8}{inc['seconds']:>12.1f}s{full['seconds']:>8.1f}s{inc['seconds'] / full['seconds']:>8.1%}")
    print(f"incremental / full, all deliveries: {ratio:.1%} (target <= 10%)")
    print(f"same cdp_id as the full rebuild: {same:.4%} of {len(both):,} records (target >= 99.9%)")
    print(f"pairwise F1: incremental {q_inc['f1']:.4f} (P {q_inc['precision']:.4f} R {q_inc['recall']:.4f}), "
          f"full {q_full['f1']:.4f} (P {q_full['precision']:.4f} R {q_full['recall']:.4f}); "
          f"difference {abs(q_inc['f1'] - q_full['f1']):.4f} (target <= 0.002)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
