"""Merge at scale: merged_customers of three customer 360 databases over ~1,000,000 source
records, time per database.

    .venv/bin/python -m benchmarks.merge_scale [--records 1000000] [--seed 5] [--keep DIR]
                                               [--engine duckdb|spark]

1. synthesises stitch.unified_coalesced (people with 1-4 records from four sources, values that
   disagree, some nulls) and stitch.unified_scores (links between a person's records: a share
   by deterministic rule, the rest Splink scores from 0.9 to 1) straight into a DuckDB
   warehouse - Stitch itself is benchmarked in stitch_scale.py;
2. generates the dbt models of three databases from a tenant config:
     c360            probabilistic, most_recent + source_priority for email/phone/birthdate
     email_c360      probabilistic, source_priority email platform first, most_frequent names,
                     longest address
     paid_media_c360 match probability >= 0.99 (its own people: connected components in SQL),
                     all_values emails and phones, most_frequent primary values
3. per database, `dbt run` of <db>.unified_records + <db>.merged_customers (timed from dbt's
   run_results.json, and wall time of the dbt process), then of merged_customers_provenance and
   customer_360 (reported apart).

With --engine spark the same models run on Spark (dbt-spark session mode, local[2]): the
synthesised stitch tables are exported to the lakehouse folder as Parquet first, and databases
whose stitch_mode is not probabilistic are skipped (their connected components need a recursive
UNION, which Spark SQL does not run).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from benchmarks.harness import machine_line
from cdp.config import load_config
from cdp.dbt.project import (dbt_resource, dbt_target, dbt_vars_arg, lakehouse_path, lakehouse_relation,
                             prepare_manifest, warehouse_env)
from cdp.stages.c360.assets import write_record_components

SOURCES = ["pos_customers", "ecommerce_customers", "email_subscribers", "loyalty_members"]
DATABASES = {
    "c360": {"stitch_mode": "probabilistic", "merge": {
        "default": {"rule": "most_recent"},
        "fields": {"email": {"rule": "source_priority",
                             "sources": ["email_subscribers", "ecommerce_customers"]},
                   "phone": {"rule": "source_priority", "sources": ["loyalty_members"]},
                   "birthdate": {"rule": "source_priority", "sources": ["loyalty_members"]},
                   "address_group": {"rule": "most_recent"}}}},
    "email_c360": {"stitch_mode": "probabilistic", "merge": {
        "default": {"rule": "most_recent"},
        "fields": {"email": {"rule": "source_priority", "sources": ["email_subscribers"]},
                   "given_name": {"rule": "most_frequent"}, "surname": {"rule": "most_frequent"},
                   "birthdate": {"rule": "min"}, "loyalty_id": {"rule": "max"},
                   "address_group": {"rule": "longest"}}}},
    "paid_media_c360": {"stitch_mode": 0.99, "merge": {
        "default": {"rule": "most_recent"},
        "fields": {"email": {"rule": "all_values", "fallback": "most_frequent"},
                   "phone": {"rule": "all_values", "fallback": "most_frequent"},
                   "address_group": {"rule": "first_seen"}}}},
}


def synthesise(path: Path, records: int, seed: int) -> tuple[int, int]:
    people = int(records / 2.5)  # 1-4 records each, 2.5 on average
    con = duckdb.connect(str(path))
    con.execute(f"select setseed({seed / 100})")
    con.execute("create schema stitch")
    con.execute(f"""
        create table stitch.unified_coalesced as
        with p as (select range as i from range({people})),
        r as (select i, unnest(range(1 + (hash(i, {seed}) % 4)::int)) as j from p),
        v as (select i, j, hash(i, j, {seed}) as h from r)
        select
            md5('person' || i)::uuid::varchar as cdp_id,
            {SOURCES}[1 + (j + i) % 4] as source,
            i || '-' || j as pk,
            ['Ann', 'Anne', 'Bob', 'Robert', 'Jon', 'Jonathan', 'Li', 'Maria'][1 + (h % 8)::int] as given_name,
            ['Smith', 'Smyth', 'Lee', 'Garcia', 'Nguyen', 'Brown'][1 + ((h >> 3) % 6)::int] as surname,
            null::varchar as full_name,
            case when h % 5 = 0 then null
                 else 'p' || i || (case when h % 7 = 0 then '.alt' else '' end) || '@example.com' end as email,
            case when h % 3 = 0 then null else '+1555' || lpad((i % 10000000)::varchar, 7, '0') end as phone,
            case when h % 4 = 0 then null else (h % 999)::int || ' Main St' || (case when h % 6 = 0 then ' Apt 2' else '' end) end as address,
            ['Albany', 'Buffalo', 'Troy', 'Utica'][1 + ((h >> 5) % 4)::int] as city,
            'NY' as state,
            lpad(((h >> 7) % 99999)::varchar, 5, '0') as postal,
            'US' as country,
            case when h % 2 = 0 then null else date '1950-01-01' + (i % 20000)::int end as birthdate,
            case when h % 3 = 1 then 'F' when h % 3 = 2 then 'M' end as gender,
            case when j = 0 and i % 2 = 0 then 'L' || i end as loyalty_id,
            timestamp '2018-01-01' + to_seconds((h % 100000000)::bigint) as created_at,
            case when h % 9 = 0 then null else timestamp '2022-01-01' + to_seconds(((h >> 11) % 60000000)::bigint) end as updated_at
        from v""")
    con.execute(f"""
        create table stitch.unified_scores as
        with r as (select cdp_id, source, pk, row_number() over (partition by cdp_id order by pk) as n
                   from stitch.unified_coalesced),
        pairs as (select l.source as source_l, l.pk as pk_l, r2.source as source_r, r2.pk as pk_r,
                         hash(l.pk, r2.pk, {seed}) as h
                  from r l join r r2 on r2.cdp_id = l.cdp_id and r2.n = l.n + 1)
        select source_l, pk_l, source_r, pk_r,
               0.9 + (h % 100000) / 1000000.0 as match_probability,
               case when h % 3 = 0 then 'same email' end as deterministic_rule,
               null::varchar as label, true as linked, true as same_cdp_id
        from pairs""")
    n_records = con.execute("select count(*) from stitch.unified_coalesced").fetchone()[0]
    n_people = con.execute("select count(distinct cdp_id) from stitch.unified_coalesced").fetchone()[0]
    con.close()
    return n_records, n_people


def export_to_lakehouse(cfg) -> None:
    """The synthesised stitch.* tables as Parquet folders for the Spark engine's dbt run."""
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    for table in ("unified_coalesced", "unified_scores"):
        folder = lakehouse_path(cfg) / "stitch" / table
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(f"copy stitch.{table} to '{folder}/part-00000.parquet' (format parquet)")
    con.close()


def dbt_run(cfg, models: list[str]) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    with warehouse_env(cfg), dbt_target(cfg, "benchmark") as target:
        dbt_resource(cfg).cli(["run", "--quiet", "--select", " ".join(models), *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()
        wall = time.perf_counter() - t0
        results = json.loads((target / "run_results.json").read_text())["results"]
    return wall, {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--keep", help="folder for the warehouse (default: a temp folder)")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    args = ap.parse_args()
    os.environ["CDP_ENGINE"] = args.engine
    root = Path(args.keep or tempfile.mkdtemp(prefix="merge_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    doc = {"tenant": "bench", "warehouse": "warehouse.duckdb",
           "sources": {s: {"path": f"data/{s}.csv", "kind": "customers",
                           "columns": {"id": "pk", "mail": "email"}} for s in SOURCES},
           "stitch": {"match_threshold": 0.9}, "databases": DATABASES}
    (root / "tenant.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_config(root / "tenant.yaml")
    cfg.warehouse_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    n_records, n_people = synthesise(cfg.warehouse_path, args.records, args.seed)
    print(f"synthesised {n_records:,} records of {n_people:,} people in {time.perf_counter() - t0:.1f} s")
    if args.engine == "spark":
        export_to_lakehouse(cfg)
    prepare_manifest(cfg)  # a customers-only tenant: customer_360 is the merged profile alone

    print(machine_line())
    print(f"{'database':<17} {'stitch_mode':<14} {'people':>9} {'unified_records':>16} "
          f"{'merged_customers':>17} {'dbt wall':>9} {'provenance':>11} {'customer_360':>13}")
    for name, db in DATABASES.items():
        components_s = 0.0
        if db["stitch_mode"] != "probabilistic":
            if args.engine == "spark":
                print(f"{name:<17} {str(db['stitch_mode']):<14} skipped: its record_components asset runs "
                      "on the Spark connection (benchmarks/record_components.py), not here")
                continue
            # the database's own people first, as its record_components asset does before dbt
            t0 = time.perf_counter()
            with duckdb.connect(str(cfg.warehouse_path)) as con:
                write_record_components(con, name, db["stitch_mode"])
            components_s = time.perf_counter() - t0
        wall, times = dbt_run(cfg, [f"{name}__unified_records", f"{name}__merged_customers"])
        _, rest = dbt_run(cfg, [f"{name}__merged_customers_provenance", f"{name}__customer_360"])
        relation = (lakehouse_relation(cfg, name, "merged_customers") if args.engine == "spark"
                    else f"{name}.merged_customers")
        con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
        people = con.execute(f"select count(*) from {relation}").fetchone()[0]
        con.close()
        print(f"{name:<17} {str(db['stitch_mode']):<14} {people:>9,} "
              f"{times[f'{name}__unified_records']:>15.1f}s "
              f"{times[f'{name}__merged_customers']:>16.1f}s {wall:>8.1f}s "
              f"{rest[f'{name}__merged_customers_provenance']:>10.1f}s "
              f"{rest[f'{name}__customer_360']:>12.1f}s"
              + (f"  (record_components first: {components_s:.1f}s)" if components_s else ""), flush=True)
    print(f"engine: {args.engine}; target: unified_records + merged_customers < 60 s per database; "
          f"warehouse {cfg.warehouse_path}")


if __name__ == "__main__":
    main()
