"""Incremental runs against full runs of the same data, delivery after delivery: the Stitch alone
and the whole pipeline from the delivery folders to the customer 360 databases.

    .venv/bin/python -m benchmarks.incremental [--records 1000000] [--deltas 5] [--share 0.01]
                                               [--seed 3] [--data DIR] [--work DIR] [--keep-states]

1. a customers-only tenant of about --records source records (generated with ground truth, or
   the files of --data copied: the originals are never changed); the people of a reserve are
   held back, to arrive later as new people;
2. two tenants on the same records:
   * incremental: each customer source is a folder of delivery files (`deliveries: mode: delta`,
     deletions by a flag column); the first delivery is the whole file; `stitch.incremental` on;
   * full: each source is one file re-read whole every run, a full Stitch every run and the
     customer 360 databases built whole (their tables dropped before each run, as
     `--full-refresh` would): how cdp ran before deliveries;
   the first run of the incremental tenant (full: no state yet) trains the model; its warehouse
   and model are copied to the full tenant, so both start from the same ids;
3. --deltas deliveries of --share each: a third of it new people from the reserve, the rest
   existing people's records edited, added or deleted (cdp.demo.generate.perturb_demo_data),
   ground truth kept. The full tenant's files are the new snapshot; the incremental tenant gets
   the difference to the last snapshot as a delivery file per source (new and changed rows, and
   the deleted keys flagged). Per delivery, in fresh processes, each through Dagster: the
   incremental tenant's run of sources -> Stitch -> customer 360 databases, then the full one's;
   wall time of the whole run and of its Stitch steps;
4. after the last delivery: the share of records whose cdp_id equals the full rebuild's, the
   pairwise F1 of both against the truth, and whether every customer_360 row is equal.
With --keep-states the incremental tenant's folder is copied to inc_before_<n>/ before delivery n
is processed: copy it back over inc/ to replay that delivery (profiling one step, not a figure).
Targets: incremental Stitch <= 10% of the full Stitch's time, the whole incremental pipeline <= 15%
of a full one, >= 99.9% same cdp_id, F1 within 0.002.
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

from benchmarks.harness import customers_only_tenant, ensure_customer_sources, machine_line, run_measured

FLAG = "_deleted"
DATABASE_GROUPS_OF = "c360"   # the customer 360 databases' groups: c360 and <database>_c360

PIPELINE_JOB = """
import json, sys, time
import dagster as dg
from cdp.config import load_config
from cdp.definitions import build_definitions
cfg = load_config(sys.argv[1])
defs = build_definitions(cfg)
graph = defs.resolve_asset_graph()
groups = {k: graph.get(k).group_name for k in graph.get_all_asset_keys()}
wanted = {g for g in groups.values() if g in ("sources", "stitch") or g == "c360" or g.endswith("_c360")}
selection = sorted(k for k, g in groups.items() if g in wanted)
job = defs.resolve_implicit_global_asset_job_def()
t0 = time.perf_counter()
with dg.instance_for_test() as instance:
    result = job.execute_in_process(instance=instance, asset_selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    step_group, phases = {}, {}
    for m in result.get_asset_materialization_events():
        step_group[m.step_key] = groups[m.asset_key]
        if m.asset_key == dg.AssetKey(["stitch", "unified_scores"]):
            phases = m.materialization.metadata["seconds"].value
    times = {}
    for e in instance.all_logs(result.run_id):
        ev = e.dagster_event
        if ev and ev.step_key and ev.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            times.setdefault(ev.step_key, []).append(e.timestamp)
assert result.success
steps = {k: round(v[-1] - v[0], 2) for k, v in times.items() if len(v) == 2}
per_group = {}
for k, s in steps.items():
    g = step_group.get(k, "checks")
    g = "c360" if g.endswith("c360") else g
    per_group[g] = round(per_group.get(g, 0) + s, 2)
import resource
print(json.dumps({"seconds": time.perf_counter() - t0, "groups": per_group, "steps": steps,
                  "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "stitch_match_phases": phases}))
"""


def write_tenants(root: Path, data: Path) -> tuple[Path, Path]:
    """tenant_inc.yaml (delivery folders, incremental Stitch) and tenant_full.yaml (one file per
    source, full Stitch), both customers-only."""
    inc, full = customers_only_tenant(), customers_only_tenant()
    for doc, folder, incremental in ((inc, "inc", True), (full, "full", False)):
        doc["warehouse"] = f"{folder}/warehouse.duckdb"
        doc["stitch"] = {**(doc.get("stitch") or {}), "incremental": incremental, "full_rebuild_every": 1000}
    for name, source in inc["sources"].items():
        file = Path(source["path"]).name
        full["sources"][name]["path"] = str(data / file)
        source["path"] = str(root / "deliveries" / name)
        source["deliveries"] = {"mode": "delta", "files": f"*{Path(file).suffix}", "deleted_flag": FLAG,
                                "settle_seconds": 0}
    (root / "tenant_inc.yaml").write_text(yaml.safe_dump(inc, sort_keys=False))
    (root / "tenant_full.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    return root / "tenant_inc.yaml", root / "tenant_full.yaml"


def write_delivery(snapshot: Path, previous: Path | None, folder: Path, n: int, pk: str) -> int:
    """The delivery that turns `previous` (a copy of the last snapshot; None: the first, whole) into
    `snapshot`: new and changed rows, and the rows of deleted keys with FLAG set. Returns its rows.
    Rows as the file holds them (the demo's malformed lines included: csv module, no sniffing)."""
    from cdp.demo.generate import _read_rows

    folder.mkdir(parents=True, exist_ok=True)
    header, now = _read_rows(snapshot)
    at = header.index(pk)
    if previous is None:
        rows = [r + ["0"] for r in now]
    else:
        # by key: a key whose rows changed (the demo's files hold duplicate and malformed rows)
        # is delivered with all its rows now, or flagged deleted when it has none
        _, before = _read_rows(previous)
        rows_of: dict[str, list] = {}
        for r in before:
            rows_of.setdefault(r[at] if len(r) > at else "", []).append(("before", tuple(r)))
        for r in now:
            rows_of.setdefault(r[at] if len(r) > at else "", []).append(("now", tuple(r)))
        changed = {k for k, rs in rows_of.items()
                   if sorted(repr(r) for w, r in rs if w == "before") != sorted(repr(r) for w, r in rs if w == "now")}
        rows = [r + ["0"] for r in now if (r[at] if len(r) > at else "") in changed]
        rows += [list(rs[0][1]) + ["1"] for k, rs in rows_of.items()
                 if k in changed and k and all(w == "before" for w, _ in rs)]
    out = folder / f"delivery_{n:04d}{snapshot.suffix}"
    if snapshot.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cdp.demo.generate import LOYALTY_SCHEMA

        schema = LOYALTY_SCHEMA.append(pa.field(FLAG, pa.string()))
        pq.write_table(pa.Table.from_pylist([dict(zip([*header, FLAG], r)) for r in rows], schema=schema), out)
    else:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*header, FLAG])
            writer.writerows(rows)
    return len(rows)


def deliver(data: Path, root: Path, n: int) -> dict[str, int]:
    """A delivery file per source from the difference between data/ and root/last/ (the snapshot
    of the last delivery), which then becomes data/'s copy."""
    from cdp.demo.generate import PK_COLUMN, SOURCE_OF_FILE

    last = root / "last"
    last.mkdir(exist_ok=True)
    rows = {}
    for file, pk in PK_COLUMN.items():
        before = last / file if n else None
        rows[SOURCE_OF_FILE[file]] = write_delivery(data / file, before, root / "deliveries" / SOURCE_OF_FILE[file], n, pk)
        shutil.copy(data / file, last / file)
    return rows


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



def drop_databases(warehouse: Path, config: Path) -> None:
    """Drop every table of the customer 360 databases: the next run builds them whole, as a
    first build or `--full-refresh` does."""
    import duckdb

    from cdp.config import load_config

    schemas = ["c360", *load_config(config).databases]
    with duckdb.connect(str(warehouse)) as con:
        for schema, name, kind in con.execute(
                "select table_schema, table_name, table_type from information_schema.tables "
                f"where table_schema in (select unnest(?))", [schemas]).fetchall():
            con.execute(f'drop {"view" if kind == "VIEW" else "table"} if exists "{schema}"."{name}" cascade')


def assigned(warehouse: Path):
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()


def customer_360_differences(inc: Path, full: Path, config: Path) -> dict[str, tuple[int, int]]:
    """Per database: (customer_360 rows that differ between the tenants, of them rows of people
    whose records have other cdp_ids in the two: a difference the ids explain)."""
    import duckdb

    from cdp.config import load_config

    out = {}
    with duckdb.connect(str(inc), read_only=True) as con:
        con.execute(f"attach '{full}' as twin (read_only)")
        con.execute("""create temp table _moved as select distinct cdp_id from (
                         select i.cdp_id from stitch.unified_coalesced i join twin.stitch.unified_coalesced f
                         using (source, pk) where i.cdp_id <> f.cdp_id
                         union all select f.cdp_id from stitch.unified_coalesced i
                         join twin.stitch.unified_coalesced f using (source, pk) where i.cdp_id <> f.cdp_id)""")
        for schema in ["c360", *load_config(config).databases]:
            differ = con.execute(f"""create or replace temp table _differ as
                                     (select * from "{schema}".customer_360 except all
                                      select * from twin."{schema}".customer_360) union all
                                     (select * from twin."{schema}".customer_360 except all
                                      select * from "{schema}".customer_360)""")
            out[schema] = con.execute("select count(*), count(*) filter (where cdp_id in (select cdp_id from _moved)) "
                                      "from _differ").fetchall()[0]
    return out


def stitch_seconds(run: dict) -> float:
    return run["groups"].get("stitch", 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--deltas", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.01, help="people touched per delivery")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--data", help="a folder of generated customer sources to start from (copied)")
    parser.add_argument("--work", help="working folder (default: a temp dir)")
    parser.add_argument("--keep-states", action="store_true",
                        help="copy inc/ to inc_before_<n>/ before each delivery (for replaying one)")
    args = parser.parse_args()

    root = Path(args.work or tempfile.mkdtemp(prefix="cdp_incremental_")).resolve()
    data = root / "data"
    for folder in ("data", "deliveries", "last", "inc", "full"):
        shutil.rmtree(root / folder, ignore_errors=True)
    t0 = time.perf_counter()
    if args.data:
        shutil.copytree(Path(args.data), data)
    else:
        ensure_customer_sources(data, args.records, args.seed)
    new_share = args.share / 3
    reserve = hold_back(data, new_share * args.deltas * 1.2, args.seed)
    for folder in ("inc", "full"):
        (root / folder).mkdir()
    inc_cfg, full_cfg = write_tenants(root, data)
    deliver(data, root, 0)
    first, _ = run_measured(PIPELINE_JOB, str(inc_cfg))
    shutil.copy(root / "inc" / "warehouse.duckdb", root / "full" / "warehouse.duckdb")
    shutil.copytree(root / "inc" / "stitch_artefacts", root / "full" / "stitch_artefacts")
    print(f"setup {time.perf_counter() - t0:.0f}s; first run (whole delivery, Stitch trains) "
          f"{first['seconds']:.1f}s {first['groups']}", flush=True)

    reserve_people = sorted({t["person_id"] for t in reserve})
    rng = random.Random(args.seed)
    rows = []
    for n in range(1, args.deltas + 1):
        people = set(rng.sample(reserve_people, min(len(reserve_people), round(len(reserve_people) / (args.deltas * 1.2)))))
        reserve_people = [p for p in reserve_people if p not in people]
        release(data, reserve, people)
        from cdp.demo.generate import perturb_demo_data
        perturb_demo_data(data, share=args.share - new_share, seed=args.seed * 100 + n)
        delivered = deliver(data, root, n)
        if args.keep_states:
            shutil.rmtree(root / f"inc_before_{n}", ignore_errors=True)
            shutil.copytree(root / "inc", root / f"inc_before_{n}")
        inc, _ = run_measured(PIPELINE_JOB, str(inc_cfg))
        drop_databases(root / "full" / "warehouse.duckdb", full_cfg)
        full, _ = run_measured(PIPELINE_JOB, str(full_cfg))
        rows.append((n, sum(delivered.values()), inc, full))
        print(f"  delivery {n} ({sum(delivered.values()):,} rows): incremental {inc['seconds']:.1f}s "
              f"{inc['groups']}, full {full['seconds']:.1f}s {full['groups']}; "
              f"incremental Stitch phases {inc['stitch_match_phases']}", flush=True)

    import pandas as pd

    from cdp.stages.stitch import pairwise_quality

    a_inc, a_full = assigned(root / "inc" / "warehouse.duckdb"), assigned(root / "full" / "warehouse.duckdb")
    both = a_inc.merge(a_full, on=["source", "pk"], suffixes=("_inc", "_full"))
    same = float((both["cdp_id_inc"] == both["cdp_id_full"]).mean())
    truth = pd.read_csv(data / "ground_truth.csv", dtype=str)
    q_inc, q_full = pairwise_quality(a_inc, truth), pairwise_quality(a_full, truth)
    differ = customer_360_differences(root / "inc" / "warehouse.duckdb", root / "full" / "warehouse.duckdb", full_cfg)
    whole = sum(i["seconds"] for _, _, i, _ in rows) / sum(f["seconds"] for _, _, _, f in rows)
    stitch = sum(stitch_seconds(i) for _, _, i, _ in rows) / sum(stitch_seconds(f) for _, _, _, f in rows)
    print(f"# incremental runs - {len(a_inc):,} records, {args.deltas} deliveries of {args.share:.1%}")
    print(machine_line(memory=True, load=True))
    print(f"{'delivery':>8}{'rows':>8}{'Stitch inc':>12}{'full':>9}{'share':>8}{'pipeline inc':>14}{'full':>9}{'share':>8}")
    for n, delivered, inc, full in rows:
        si, sf = stitch_seconds(inc), stitch_seconds(full)
        print(f"{n:>8}{delivered:>8,}{si:>11.1f}s{sf:>8.1f}s{si / sf:>8.1%}"
              f"{inc['seconds']:>13.1f}s{full['seconds']:>8.1f}s{inc['seconds'] / full['seconds']:>8.1%}")
    print(f"Stitch, incremental / full, all deliveries: {stitch:.1%} (target <= 10%)")
    print(f"sources -> customer 360, incremental / full, all deliveries: {whole:.1%} (target <= 15%)")
    print(f"same cdp_id as the full rebuild: {same:.4%} of {len(both):,} records (target >= 99.9%)")
    print(f"pairwise F1: incremental {q_inc['f1']:.4f} (P {q_inc['precision']:.4f} R {q_inc['recall']:.4f}), "
          f"full {q_full['f1']:.4f} (P {q_full['precision']:.4f} R {q_full['recall']:.4f}); "
          f"difference {abs(q_inc['f1'] - q_full['f1']):.4f} (target <= 0.002)")
    print("customer_360 rows unlike the full run's (of them, people with another cdp_id): "
          + ", ".join(f"{k} {d:,} ({m:,})" for k, (d, m) in differ.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
