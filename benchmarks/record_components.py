"""Record components of a deterministic / threshold customer 360 database at scale (DuckDB).

`<db>/record_components` finds the connected components of a database's links with Splink's
clustering (cdp/stages/c360/assets.py). Before, the unified_records model found them with a recursive
UNION CTE in which every record reaches every record of its component: quadratic in the size of
a component. This benchmark builds a synthetic Stitch output - clusters of a given size, each a
star of links (what deterministic rules make: every record of a key linked to its lowest) or a
chain (the longest path a component can have: the worst case for label propagation, which needs
a round per step of the path) - and times both, checking they give the same components.

    .venv/bin/python -m benchmarks.record_components [--records N] [--cluster-size K]
        [--shape star|chain] [--old]
"""

import argparse
import time

import duckdb

from cdp.stages.c360.assets import database_links_sql, write_record_components


def synthetic_stitch(con, records: int, cluster_size: int, shape: str) -> int:
    con.execute("create schema if not exists stitch")
    con.execute(f"""
        create or replace table stitch.unified_coalesced as
        select 'c' || (i // {cluster_size}) as cdp_id, 'src' as source, lpad(i::varchar, 9, '0') as pk
        from range({records}) t(i)""")
    # inside each cluster: a chain i - i+1, or a star: the cluster's first record - i
    left = "i" if shape == "chain" else f"i - i % {cluster_size}"
    right = "i + 1" if shape == "chain" else "i"
    where = (f"(i + 1) % {cluster_size} <> 0 and i + 1 < {records}" if shape == "chain"
             else f"i % {cluster_size} <> 0")
    con.execute(f"""
        create or replace table stitch.unified_scores as
        select 'src' as source_l, lpad(({left})::varchar, 9, '0') as pk_l, 'src' as source_r,
               lpad(({right})::varchar, 9, '0') as pk_r, 0.999 as match_probability,
               'same email' as deterministic_rule, null::varchar as label, true as linked,
               true as same_cdp_id
        from range({records}) t(i)
        where {where}""")
    return con.execute("select count(*) from stitch.unified_scores").fetchone()[0]


def old_recursive(con) -> list:
    return con.execute(f"""
        with recursive records as (select source || '|' || pk as record_key from stitch.unified_coalesced),
        links as ({database_links_sql('deterministic')}),
        edges as (select record_key_l as a, record_key_r as b from links
                  union all select record_key_r, record_key_l from links),
        reach(record_key, root) as (
            select record_key, record_key from records
            union
            select e.b, r.root from reach r join edges e on e.a = r.record_key)
        select record_key, min(root) from reach group by record_key order by 1""").fetchall()


def new_components(con) -> list:
    return con.execute("""
        select r.record_key, coalesce(c.component, r.record_key)
        from (select source || '|' || pk as record_key from stitch.unified_coalesced) r
        left join bench.record_components c using (record_key) order by 1""").fetchall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cluster-size", type=int, default=4)
    parser.add_argument("--shape", choices=["star", "chain"], default="star")
    parser.add_argument("--old", action="store_true", help="also time the recursive UNION CTE")
    args = parser.parse_args()
    con = duckdb.connect()
    links = synthetic_stitch(con, args.records, args.cluster_size, args.shape)
    start = time.perf_counter()
    counts = write_record_components(con, "bench", "deterministic")
    new_s = time.perf_counter() - start
    print(f"records {args.records:,}  clusters of {args.cluster_size} ({args.shape})  links {links:,}")
    print(f"splink clustering: {new_s:.2f}s  ({counts['components']:,} components of linked records, "
          f"largest {counts['largest_component']})")
    if args.old:
        start = time.perf_counter()
        old = old_recursive(con)
        old_s = time.perf_counter() - start
        print(f"recursive UNION:   {old_s:.2f}s  same components: {old == new_components(con)}")


if __name__ == "__main__":
    main()
