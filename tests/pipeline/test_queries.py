"""Saved and ad hoc queries in Presto SQL: transpiled to DuckDB by sqlglot, read-only."""

import datetime as dt

import dagster as dg
import duckdb
import pytest

from cdp.cli import main as cdp
from cdp.stages.activation.queries import QueryError, parse_presto, run_query


@pytest.fixture()
def shop():
    con = duckdb.connect()
    con.execute("create schema c360; create schema interactions")
    con.execute("""create table c360.customer_360 as select * from (values
        ('P1', 'ann@gmail.com'), ('P2', 'bob@example.com'), ('P3', 'cy@gmail.com')) t(cdp_id, email)""")
    con.execute("""create table interactions.unified_transactions as select * from (values
        ('o1', 'P1', date '2026-01-05', 'web', 10.0),
        ('o2', 'P1', date '2026-03-01', 'store', 30.0),
        ('o3', 'P2', date '2026-01-20', 'web', 5.0),
        ('o4', 'P3', date '2026-02-10', 'web', 20.0),
        ('o5', 'P3', date '2026-02-11', 'web', 40.0)) t(order_id, cdp_id, order_date, channel, net_revenue)""")
    yield con
    con.close()


def rows(con, sql):
    return [tuple(r) for r in run_query(con, sql).itertuples(index=False)]


def test_presto_functions_give_the_expected_results(shop):
    # DATE_DIFF with a unit first, date_add with a unit first (Presto argument order)
    assert rows(shop, """SELECT cdp_id, date_diff('day', min(order_date), max(order_date)) AS span
                          FROM interactions.unified_transactions GROUP BY cdp_id ORDER BY cdp_id""") == [
        ("P1", 55), ("P2", 0), ("P3", 1)]
    assert rows(shop, "SELECT date_add('month', 1, DATE '2026-01-31') AS d")[0][0].date() \
        == dt.date(2026, 2, 28)
    # Presto counts whole units: Jan 31 -> Mar 1 is 1 month (DuckDB's date_diff would say 2)
    assert rows(shop, """SELECT date_diff('month', DATE '2026-01-31', DATE '2026-03-01'),
                                date_diff('day', TIMESTAMP '2026-01-01 10:00:00', TIMESTAMP '2026-01-02 09:00:00'),
                                date_diff('day', DATE '2026-01-03', DATE '2026-01-01')""") == [(1, 0, -2)]
    assert rows(shop, "SELECT format_datetime(TIMESTAMP '2026-03-04 05:06:07', 'yyyy-MM-dd HH:mm')") == \
        [("2026-03-04 05:06",)]
    assert rows(shop, "SELECT date_format(TIMESTAMP '2026-03-04 05:06:07', '%Y-%m-%d %H:%i')") == \
        [("2026-03-04 05:06",)]
    assert rows(shop, "SELECT approx_distinct(cdp_id) FROM interactions.unified_transactions") == [(3,)]
    agg = rows(shop, """SELECT cdp_id, array_agg(order_id ORDER BY order_id) AS orders
                         FROM interactions.unified_transactions GROUP BY cdp_id ORDER BY cdp_id""")
    assert [(c, list(o)) for c, o in agg] == [("P1", ["o1", "o2"]), ("P2", ["o3"]), ("P3", ["o4", "o5"])]
    assert rows(shop, """SELECT cdp_id FROM c360.customer_360
                          WHERE regexp_like(email, '@gmail\\.com$') ORDER BY 1""") == [("P1",), ("P3",)]


def test_ctes_and_window_functions(shop):
    got = rows(shop, """
        WITH spend AS (SELECT cdp_id, sum(net_revenue) AS total FROM interactions.unified_transactions
                       GROUP BY cdp_id)
        SELECT s.cdp_id, s.total,
               rank() OVER (ORDER BY s.total DESC) AS spend_rank,
               sum(s.total) OVER () AS all_spend
        FROM spend s JOIN c360.customer_360 c ON c.cdp_id = s.cdp_id
        ORDER BY spend_rank""")
    assert got == [("P3", 60.0, 1, 105.0), ("P1", 40.0, 2, 105.0), ("P2", 5.0, 3, 105.0)]
    lag = rows(shop, """SELECT order_id, date_diff('day', lag(order_date) OVER (PARTITION BY cdp_id
                               ORDER BY order_date), order_date) AS gap
                         FROM interactions.unified_transactions WHERE cdp_id = 'P1' ORDER BY order_id""")
    assert lag[1] == ("o2", 55)


def test_tables_read_are_found_outside_ctes():
    q = parse_presto("""WITH a AS (SELECT * FROM interactions.unified_transactions)
                        SELECT * FROM a JOIN c360.customer_360 USING (cdp_id)
                        UNION ALL SELECT * FROM a JOIN predictive.recommendations USING (cdp_id)""")
    assert q.tables == (("c360", "customer_360"), ("interactions", "unified_transactions"),
                        ("predictive", "recommendations"))


@pytest.mark.parametrize("sql", [
    "INSERT INTO c360.customer_360 VALUES ('x', 'y')",
    "DROP TABLE c360.customer_360",
    "DELETE FROM c360.customer_360",
    "UPDATE c360.customer_360 SET email = NULL",
    "CREATE TABLE x AS SELECT 1",
    "SELECT 1; DROP TABLE c360.customer_360",
    "ATTACH 'other.duckdb' AS o",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
])
def test_anything_but_a_select_is_refused(shop, sql):
    with pytest.raises(QueryError, match="SELECT|statement|table functions|Presto"):
        run_query(shop, sql)
    assert shop.execute("select count(*) from c360.customer_360").fetchone()[0] == 3


def test_saved_queries_are_assets_with_their_tables_as_deps(pipeline_run, warehouse):
    defs = pipeline_run.defs
    spec = defs.resolve_assets_def(dg.AssetKey(["queries", "monthly_buyers_by_channel"]))
    deps = {k.to_user_string() for k in spec.asset_deps[dg.AssetKey(["queries", "monthly_buyers_by_channel"])]}
    assert deps == {"interactions/unified_transactions"}
    got = warehouse.execute("select sum(orders) from queries.monthly_buyers_by_channel").fetchone()[0]
    want = warehouse.execute("""select count(*) from interactions.unified_transactions
                                where not is_cancelled and not is_fully_returned""").fetchone()[0]
    assert got == want > 0
    assert warehouse.execute("select count(*) from queries.lapsed_gmail_buyers").fetchone()[0] >= 0


def test_cdp_query_prints_and_writes_csv(pipeline_run, demo_tenant, tmp_path, capsys):
    assert cdp(["query", "--config", str(demo_tenant),
                "SELECT count(*) AS people FROM c360.customer_360"]) == 0
    assert "people" in capsys.readouterr().out
    f = tmp_path / "q.sql"
    f.write_text("SELECT cdp_id, email FROM c360.customer_360 ORDER BY cdp_id")
    out = tmp_path / "out.csv"
    assert cdp(["query", "--config", str(demo_tenant), "--file", str(f), "--csv", str(out)]) == 0
    assert out.read_text().startswith("cdp_id,email\n")
    assert cdp(["query", "--config", str(demo_tenant), "DROP TABLE c360.customer_360"]) == 2
    assert "only SELECT" in capsys.readouterr().err
