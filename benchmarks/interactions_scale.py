"""Interaction + attribute models at scale: 1,000,000 orders / 3,000,000 order lines.

    .venv/bin/python -m benchmarks.interactions_scale [--orders 1000000] [--people 250000]

1. builds a warehouse with domain tables (two order sources, one items source, a catalogue)
   and stitch.unified_coalesced for --people people, in DuckDB SQL (not timed);
2. times `dbt run` of every interaction model (unified_transactions,
   unified_itemized_transactions, unified_product_catalog, transaction_attributes,
   transaction_attributes_extended) exactly as the Dagster asset runs them, then their dbt
   tests separately. Target: models < 120 s on the 2-core CI machine.
3. with --incremental: a --full-refresh run, then 1% of the buyers changed (their orders'
   revenue, or their customer record moved to another person) and an incremental run, dbt's
   time per model for both;
4. with --bi: times the BI star schema models (`dbt run --select bi`) on top, and, when
   CDP_TEST_POSTGRES_URL is set, BI Connect's publish of the bi schema + customer_360 to
   PostgreSQL. customer_360 and the CLV table are minimal stand-ins here (cdp_id only /
   empty): this measures the star schema and the copy, not the merge or the model.
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
from cdp.dbt.project import dbt_resource, dbt_target, dbt_vars_arg, prepare_manifest, warehouse_env

TENANT = {
    "tenant": "bench",
    "warehouse": "warehouse.duckdb",
    "sources": {
        "shop_customers": {"path": "c.csv", "kind": "customers", "columns": {"id": "pk"}},
        "pos_orders": {"path": "p.csv", "kind": "transactions", "customer_source": "shop_customers",
                       "columns": {"o": "order-id", "c": "customer-pk", "t": "order-datetime",
                                   "r": "order-revenue", "d": "order-discount", "s": "order-status",
                                   "st": "store-id", "ra": "order-return-amount"}},
        "web_orders": {"path": "w.csv", "kind": "transactions", "customer_source": "shop_customers",
                       "columns": {"o": "order-id", "c": "customer-pk", "t": "order-datetime",
                                   "r": "order-revenue", "s": "order-status", "ch": "channel"}},
        "order_items": {"path": "i.csv", "kind": "transaction_items",
                        "columns": {"o": "order-id", "l": "line-number", "p": "product-id",
                                    "q": "item-quantity", "u": "item-unit-price", "r": "item-revenue"}},
        "products": {"path": "pr.csv", "kind": "products",
                     "columns": {"p": "product-id", "n": "product-name", "c": "product-category"}},
    },
    "interactions": {"as_of_date": "2026-10-31"},
}


def build_warehouse(path: Path, orders: int, people: int) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema domain; create schema stitch")
    con.execute(f"""
        create table stitch.unified_coalesced as
        select 'shop_customers' as source, 'C' || i as pk, 'P' || (i // 2) as cdp_id
        from range({people * 2}) t(i)""")  # two records per person
    con.execute("""
        create table domain.products as
        select 'products' as source, 'SKU' || i as product_id, 'Product ' || i as product_name,
               'Category ' || (i % 20) as product_category, null::varchar as product_brand,
               (1 + i % 50)::double as product_price, i as source_row
        from range(500) t(i)""")
    # orders: a person's rate is skewed (hash), dates over three years
    for name, share, offset in (("pos_orders", 0.6, 0), ("web_orders", 0.4, 10**8)):
        n = int(orders * share)
        con.execute(f"""
            create table domain.{name} as
            select '{name}' as source, 'O' || (i + {offset}) as order_id,
                   'shop_customers' as customer_source,
                   'C' || (hash(i * 7 + {offset}) % {people * 2}) as customer_pk,
                   timestamp '2023-11-01' + to_seconds((hash(i + {offset}) % (3 * 365 * 86400))::bigint)
                       as order_datetime,
                   (5 + hash(i * 3 + {offset}) % 200)::double as order_revenue,
                   0.0 as order_discount,
                   case when hash(i * 5 + {offset}) % 50 = 0 then 'cancelled'
                        when hash(i * 5 + {offset}) % 50 = 1 then 'returned' else 'completed' end as order_status,
                   {"'store'" if name == "pos_orders" else "case when i % 3 = 0 then 'app' else 'web' end"} as channel,
                   {"'S' || (i % 40)" if name == "pos_orders" else "null::varchar"} as store_id,
                   case when hash(i * 11 + {offset}) % 40 = 0 then 5.0 end as return_amount,
                   i as source_row
            from range({n}) t(i)""")
    con.execute("""
        create table domain.order_items as
        with o as (select order_id, order_revenue from domain.pos_orders
                   union all select order_id, order_revenue from domain.web_orders)
        select 'order_items' as source, o.order_id, l.line as line_number,
               'SKU' || (hash(o.order_id || l.line) % 500) as product_id,
               1.0 as item_quantity, round(o.order_revenue / 3, 2) as item_unit_price,
               round(o.order_revenue / 3, 2) as item_revenue, null::varchar as product_category,
               row_number() over () as source_row
        from o cross join (select unnest([1, 2, 3]) as line) l""")
    counts = {t: con.execute(f"select count(*) from domain.{t}").fetchone()[0]
              for t in ("pos_orders", "web_orders", "order_items")}
    con.close()
    print(f"orders {counts['pos_orders'] + counts['web_orders']:,}, items {counts['order_items']:,}, "
          f"people {people:,}")


def add_bi_inputs(cfg) -> None:
    from cdp.stages.bi.assets import write_holiday_calendar

    con = duckdb.connect(str(cfg.warehouse_path))
    con.execute("create schema c360; create schema predictive")
    con.execute("create table c360.customer_360 as select distinct cdp_id from stitch.unified_coalesced")
    con.execute("""create table predictive.predicted_clv_attributes (cdp_id varchar,
        predicted_orders_12m double, predicted_revenue_12m double, probability_alive double,
        clv_tier varchar)""")
    write_holiday_calendar(con, cfg)
    con.close()


def dbt(cfg, *args, select: str = "interactions") -> float:
    t0 = time.perf_counter()
    with warehouse_env(cfg), dbt_target(cfg, "benchmark") as target:
        dbt_resource(cfg).cli([*args, "--select", select, *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()
    return time.perf_counter() - t0


def dbt_models(cfg, *extra: str) -> dict[str, float]:
    """`dbt run` of the interaction models: dbt's execution time per model."""
    with warehouse_env(cfg), dbt_target(cfg, "benchmark") as target:
        dbt_resource(cfg).cli(["run", "--select", "interactions", *extra, *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()
        results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results}


# 1% of the buyers change: their orders' revenue (hash of the customer pk), and as many again
# get their orders' customer record moved to another person
ONE_PERCENT = [
    "update domain.{t} set order_revenue = order_revenue + 1 where hash(customer_pk) % 200 = 0",
    "update stitch.unified_coalesced set cdp_id = cdp_id || 'x' where hash(pk) % 200 = 1",
]


def incremental(cfg) -> None:
    """Per-model times of a `dbt run` after 1% of the buyers changed, against the full run's."""
    full = dbt_models(cfg, "--full-refresh")
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        for sql in ONE_PERCENT:
            for t in ("pos_orders", "web_orders"):
                con.execute(sql.format(t=t))
                if "{t}" not in sql:
                    break
    inc = dbt_models(cfg)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        touched = con.execute("select count(*) from interactions.touched_people").fetchone()[0]
        buyers = con.execute("select count(*) from interactions.transaction_attributes").fetchone()[0]
    print(f"after 1% changed: {touched:,} of {buyers:,} buyers touched")
    print(f"{'model':<34} {'full build':>11} {'incremental':>12}")
    for m in (m for m in full if not m.startswith("cdp-on-run")):
        print(f"{m:<34} {full[m]:>10.2f}s {inc.get(m, 0):>11.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=250_000)
    ap.add_argument("--bi", action="store_true", help="also time the bi models and BI Connect")
    ap.add_argument("--incremental", action="store_true",
                    help="then a full and an incremental run after 1%% of the buyers changed, per model")
    args = ap.parse_args()
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tenant.yaml").write_text(yaml.safe_dump(TENANT))
        cfg = load_config(root / "tenant.yaml")
        build_warehouse(cfg.warehouse_path, args.orders, args.people)
        prepare_manifest(cfg)
        models = dbt(cfg, "run")
        tests = dbt(cfg, "test")
        if args.incremental:
            incremental(cfg)
        if args.bi:
            add_bi_inputs(cfg)
            extra["bi models (dbt run --select bi)"] = dbt(cfg, "run", select="bi")
            url = os.environ.get("CDP_TEST_POSTGRES_URL")
            if url:
                from cdp.stages.bi.assets import publish_to_postgres
                from cdp.config import Postgres

                tables = Postgres(kind="postgres", url_env="X").tables
                con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
                t0 = time.perf_counter()
                published = publish_to_postgres(con, url, tables)
                extra["BI Connect publish to PostgreSQL"] = time.perf_counter() - t0
                con.close()
                print("published", published)
        con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
        rows = {t: con.execute(f"select count(*) from interactions.{t}").fetchone()[0] for t in (
            "unified_transactions", "unified_itemized_transactions", "unified_product_catalog",
            "transaction_attributes", "transaction_attributes_extended")}
        con.close()
    print(machine_line(duckdb=True))
    for t, n in rows.items():
        print(f"  interactions.{t:<34} {n:>10,} rows")
    print(f"interaction + attribute models (dbt run): {models:.1f} s  (target < 120 s)")
    print(f"their dbt tests (dbt test):               {tests:.1f} s")
    for what, seconds in extra.items():
        print(f"{what}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
