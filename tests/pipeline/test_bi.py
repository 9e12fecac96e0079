"""The BI star schema (real dbt) on the tiny tenant, and BI Connect's PostgreSQL round trip."""

import os

import duckdb
import pytest

import dagster as dg
from dagster_duckdb import DuckDBResource

from cdp.stages.activation.bi_connect import build_postgres_asset, publish_to_postgres

PG_URL = os.environ.get("CDP_TEST_POSTGRES_URL")
TABLES = ["bi.dim_customer", "bi.dim_product", "bi.dim_date", "bi.fact_sales", "bi.fact_sales_items",
          "c360.customer_360"]


def test_dim_date_is_a_full_calendar_with_fiscal_periods_and_holidays(tiny):
    # tiny tenant: 30 years from 2000, fiscal year starting in February
    n, first, last = tiny.execute("select count(*), min(calendar_date), max(calendar_date) from bi.dim_date").fetchone()
    assert (str(first), str(last)) == ("2000-01-01", "2029-12-31") and n == 10958
    day = tiny.execute("select * from bi.dim_date where date_key = 20260126").df().iloc[0]
    assert (day["weekday_name"], day["day_of_week"], day["is_weekend"]) == ("Monday", 1, False)
    assert (day["fiscal_year"], day["fiscal_month"], day["fiscal_quarter"]) == (2026, 12, 4)
    feb = tiny.execute("select fiscal_year, fiscal_month, fiscal_quarter from bi.dim_date "
                       "where date_key = 20260201").fetchone()
    assert feb == (2027, 1, 1)
    july4 = tiny.execute("select is_holiday, holiday_name from bi.dim_date where date_key = 20260704").fetchone()
    assert july4[0] and "Independence" in july4[1]
    thanksgiving = tiny.execute("select calendar_date from bi.dim_date where year(calendar_date) = 2026 "
                                "and holiday_name like 'Thanksgiving%'").fetchone()[0]
    assert str(thanksgiving) == "2026-11-26"
    assert not tiny.execute("select is_holiday from bi.dim_date where date_key = 20260127").fetchone()[0]


def test_default_calendar_has_85_years(tiny_tenant):
    from cdp.config import BiSettings
    assert BiSettings().calendar_years == 85


def test_star_schema_keys_join(tiny):
    assert tiny.execute("select count(*) from bi.dim_customer").fetchone()[0] == 3
    p1 = tiny.execute("select is_buyer, order_count, preferred_category, email, clv_tier from bi.dim_customer "
                      "where customer_key = 'P1'").fetchone()
    assert p1 == (True, 3, "Bakery", "ann@example.com", "platinum")
    columns = [c[0] for c in tiny.execute("describe bi.dim_customer").fetchall()]
    assert len(columns) == len(set(columns)) and not any(c.endswith("_1") for c in columns)
    assert tiny.execute("select is_buyer from bi.dim_customer where customer_key = 'P3'").fetchone() == (False,)
    assert tiny.execute("select count(*) from bi.fact_sales").fetchone()[0] == 8
    assert tiny.execute("select count(*) from bi.fact_sales_items").fetchone()[0] == 10
    # net sales by category through the star: Bakery 60 + 50 (O3 net) + 10 (O7), orphan line excluded
    bakery = tiny.execute("""select sum(f.net_item_revenue) from bi.fact_sales_items f
                             join bi.dim_product p using (product_key)
                             join bi.dim_date d using (date_key)
                             where p.product_category = 'Bakery'""").fetchone()[0]
    assert bakery == pytest.approx(120.0)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="CDP_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL "
                                        "(source .ci/postgres.sh to run this test locally)")
def test_bi_connect_round_trip_to_postgres(tiny_tenant):
    import psycopg

    duck = duckdb.connect(str(tiny_tenant.warehouse_path), read_only=True)
    try:
        expected = {t: duck.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}
        fact_rows = duck.execute("select * from bi.fact_sales order by order_key").fetchall()
        sales_total = duck.execute("select round(sum(net_revenue), 2) from bi.fact_sales").fetchone()[0]
        first = publish_to_postgres(duck, PG_URL, TABLES)
        # a publish that fails half-way (the last table cannot be read) changes nothing
        with pytest.raises(duckdb.CatalogException):
            publish_to_postgres(duck, PG_URL, ["bi.fact_sales", "bi.no_such_table"])
    finally:
        duck.close()
    # again, as the Dagster asset of the tenant's postgres destination: idempotent, same rows
    asset = build_postgres_asset(tiny_tenant, "warehouse_bi", tiny_tenant.destinations["warehouse_bi"])
    result = dg.materialize([asset], resources={"warehouse": DuckDBResource(database=str(tiny_tenant.warehouse_path))},
                            selection=[asset.key])
    assert result.success
    second = result.asset_materializations_for_node(asset.node_def.name)[0].metadata["rows_per_table"].value
    assert first == second == expected

    # unchanged tables are not published again, unless a resend is asked for
    def publish(**tags):
        result = dg.materialize([asset], resources={"warehouse": DuckDBResource(
            database=str(tiny_tenant.warehouse_path))}, selection=[asset.key], tags=tags)
        assert result.success
        return result.asset_materializations_for_node(asset.node_def.name)[0].metadata["sent"].value

    with psycopg.connect(PG_URL) as pg:  # each publish creates the tables anew
        oid = pg.execute("select 'bi.fact_sales'::regclass::oid").fetchone()[0]
    assert publish() is False
    with psycopg.connect(PG_URL) as pg:
        assert pg.execute("select 'bi.fact_sales'::regclass::oid").fetchone()[0] == oid
    assert publish(**{"cdp/resend": "true"}) is True
    with psycopg.connect(PG_URL) as pg:
        assert pg.execute("select 'bi.fact_sales'::regclass::oid").fetchone()[0] != oid  # a new table
    with psycopg.connect(PG_URL) as pg:
        for t in TABLES:
            assert pg.execute(f"select count(*) from {t}").fetchone()[0] == expected[t], t
        assert float(pg.execute("select round(sum(net_revenue)::numeric, 2) from bi.fact_sales").fetchone()[0]) \
            == sales_total
        row = pg.execute("select calendar_date, is_holiday, fiscal_year from bi.dim_date "
                         "where date_key = 20260704").fetchone()
        assert str(row[0]) == "2026-07-04" and row[1] is True and row[2] == 2027
        # every value, null, boolean and timestamp of a table arrives as it was
        assert pg.execute("select * from bi.fact_sales order by order_key").fetchall() == fact_rows
        joined = pg.execute("""select count(*) from bi.fact_sales_items f
                               join bi.dim_product p on p.product_key = f.product_key
                               join bi.fact_sales s on s.order_key = f.order_key""").fetchone()[0]
        assert joined == 9
        staging = pg.execute("select count(*) from information_schema.schemata "
                             "where schema_name like '%__cdp_staging'").fetchone()[0]
        assert staging == 0
