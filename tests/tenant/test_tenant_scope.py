"""Tenants without all kinds of sources, end to end through `cdp run` (real Splink, real dbt,
real DuckDB) on the session's generated demo data:

  * customers only (a CRM export): sources, Stitch, customer_360, a segment, a file export, a
    saved query and the profile store are built; interactions, bi and predictive are left out
    of the graph, with a message;
  * customers and orders, without order lines or products: the order-based interactions, bi and
    predictive tables are built, the item-based ones left out.
"""

import contextlib
import io
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from cdp.config import ConfigError, load_config
from cdp.stages.activation.profile_store import read_store
from cdp.config.scope import CATEGORY_COLUMNS, PURCHASE_COLUMNS, TABLE_NEEDS

# every test reads a tenant of its own run through the whole graph (the crm and shop fixtures)
pytestmark = pytest.mark.slow

DEMO_SOURCES = {"customers": ["pos_customers", "ecommerce_customers", "email_subscribers"],
                "orders": ["pos_orders", "ecommerce_orders"]}
PEOPLE_BY_STATE = "-- People per state\nSELECT state, count(*) AS people FROM c360.customer_360 GROUP BY state\n"
KEY = "4d8b2f6a0c3e7194b5d1f8a2c6e0b4d7f9a3c5e1b7d9f2a4"   # strong: weak keys are refused


def scoped_tenant(root, demo_tenant, name: str, sources: list[str], **sections):
    """A tenant of `sources` of the demo config (their files: the session's generated data),
    one customer 360 database, a file export of it and the saved queries of the demo plus one
    on customer_360 alone."""
    demo = yaml.safe_load(demo_tenant.read_text())
    data = demo_tenant.parent / "data"
    doc = {"tenant": name,
           "sources": {n: {**demo["sources"][n], "path": str(data / demo["sources"][n]["path"].split("/")[-1])}
                       for n in sources},
           "stitch": demo["stitch"], "interactions": demo["interactions"],
           "destinations": {"c360_drop": {"table": "c360.customer_360", "path": "exports/c360"}},
           "queries": {"folder": "queries"}, **sections}
    root.mkdir(parents=True)
    shutil.copytree(demo_tenant.parent / "queries", root / "queries")
    (root / "queries" / "people_by_state.sql").write_text(PEOPLE_BY_STATE)
    (root / "tenant.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "tenant.yaml"


def _run(config, dagster_instance, quiet=True):
    from cdp.cli import run_tenant

    with pytest.MonkeyPatch.context() as env:  # run_tenant points $CDP_CONFIG at its tenant
        env.delenv("CDP_CONFIG", raising=False)
        env.delenv("CDP_WAREHOUSE", raising=False)
        result = run_tenant(str(config), quiet=quiet, instance=dagster_instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _keys(result) -> set[str]:
    return {k.to_user_string() for k in result.defs.resolve_asset_graph().get_all_asset_keys()}


def _materialized(result) -> set[str]:
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}


def _failed_checks(result, ignore=()) -> list:
    return [(c.asset_key.to_user_string(), c.check_name) for c in result.get_asset_check_evaluations()
            if not c.passed and c.check_name not in ignore]


@pytest.fixture(scope="module")
def scope_instance(tmp_path_factory):
    """An instance of this module's own: these tenants share the demo's asset keys, and their
    runs must not make the demo's tables look stale to tests sharing the session's instance."""
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("scope_home"))) as instance:
        yield instance


@pytest.fixture(scope="module")
def crm(demo_tenant, scope_instance, tmp_path_factory):
    """A customers-only tenant, run with `cdp run`'s terminal output (returned as text)."""
    config = scoped_tenant(tmp_path_factory.mktemp("scope") / "crm", demo_tenant, "crm",
                           DEMO_SOURCES["customers"],
                           segments={"reachable_by_email": {"column": "email", "op": "not_null"}})
    terminal = io.StringIO()
    with contextlib.redirect_stdout(terminal):
        result = _run(config, scope_instance, quiet=False)
    return load_config(config), result, terminal.getvalue()


def test_customers_only_tenant_runs_and_says_what_it_leaves_out(crm):
    _, result, out = crm
    assert "cdp: run succeeded" in out
    assert "cdp: no transactions sources: interactions, bi and predictive tables are left out" in out
    assert "custom.customer_lifecycle is left out: it needs orders (no transactions sources)" in out
    assert ("queries.monthly_buyers_by_channel is left out: it reads interactions.unified_transactions, "
            "which is left out (no transactions sources)") in out
    keys = _keys(result)
    assert not [k for k in keys if k.split("/")[0] in ("interactions", "bi", "predictive")], keys
    assert not {"custom/customer_lifecycle", "queries/monthly_buyers_by_channel"} & keys
    assert {"stitch/unified_coalesced", "c360/customer_360", "custom/households", "queries/people_by_state",
            "activation/c360_drop", "activation/segments",
            "activation/profile_store"} <= _materialized(result)
    assert not _failed_checks(result), _failed_checks(result)


def test_run_output_is_a_line_per_step_and_a_summary(crm):
    """What `cdp run` prints: a line per step with what it wrote, checks counted (not a line
    each), quarantined rows per source, no third-party noise."""
    _, result, out = crm
    lines = out.splitlines()
    steps = [line for line in lines if line.startswith("  ✓ ")]
    assert steps and all(" rows" in line or "s)" in line for line in steps), steps
    assert "  ✓ stitch_match (" in out and ": domain/pos_customers, " in out
    assert not [line for line in lines if "passed" in line and not line.startswith("cdp: checks:")]
    checks = next(line for line in lines if line.startswith("cdp: checks: "))
    evaluated = len(result.get_asset_check_evaluations())
    assert checks.startswith(f"cdp: checks: {evaluated} passed, 0 warnings, 0 failed"), checks
    assert "cdp: quarantined rows (domain.quarantine): " in out and "pos_customers " in out
    assert not [line for line in lines if "Warning" in line]
    assert len(lines) < 45, out


def test_customers_only_customer_360_is_the_merged_profile(crm):
    cfg, _, _ = crm
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        people = con.execute("select count(distinct cdp_id) from stitch.unified_coalesced").fetchone()[0]
        rows = con.execute("select count(*) from c360.customer_360").fetchone()[0]
        columns = {c[0] for c in con.execute("describe c360.customer_360").fetchall()}
        members = con.execute("select count(*) from activation.segment_reachable_by_email").fetchone()[0]
        by_state = con.execute("select sum(people) from queries.people_by_state").fetchone()[0]
        schemas = {r[0] for r in con.execute("select distinct table_schema from information_schema.tables").fetchall()}
    assert rows == people > 100
    assert {"cdp_id", "email", "surname", "sources"} <= columns and not set(PURCHASE_COLUMNS) & columns
    assert 0 < members <= rows and by_state == rows
    assert not {"interactions", "bi", "predictive"} & schemas
    exported = pd.read_csv(sorted((cfg.base_dir / "exports" / "c360").glob("*.csv"))[0])
    assert len(exported) == rows and exported["cdp_id"].is_unique


def test_customers_only_profile_api_answers_a_lookup(crm):
    from cdp.serve.api import create_app

    cfg, _, _ = crm
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        cdp_id, email = con.execute("select cdp_id, email from c360.customer_360 where email is not null "
                                    "order by cdp_id limit 1").fetchone()
    client = TestClient(create_app(cfg, api_key=KEY))
    r = client.get("/profiles/lookup", params={"email": email}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["cdp_id"] == cdp_id and doc["customer"]["email"] == email
    assert doc["segments"] == ["reachable_by_email"]
    assert not {"transaction_attributes", "predicted_clv", "recommendations"} & set(doc)


def test_entries_on_left_out_custom_tables_and_queries_fail_before_the_run(crm):
    """What only the dbt manifest and the queries folder tell: refused when the graph is built."""
    from cdp.definitions import build_definitions

    cfg, _, _ = crm
    doc = yaml.safe_load(cfg.config_path.read_text())
    for mutate, expected in [
        (lambda d: d["destinations"].update(stages={"table": "custom.customer_lifecycle", "path": "x"}),
         "destinations.stages.table: custom.customer_lifecycle is not built for this tenant (it needs "
         "orders (no transactions sources))"),
        (lambda d: d.update(orchestrations={"monthly": {"query": "monthly_buyers_by_channel",
                                                        "destination": "c360_drop"}}),
         "orchestrations.monthly.query: saved query 'monthly_buyers_by_channel' is not built for this "
         "tenant (it reads interactions.unified_transactions"),
    ]:
        changed = yaml.safe_load(yaml.safe_dump(doc, sort_keys=False))
        mutate(changed)
        path = cfg.config_path.parent / "changed.yaml"   # same folder: same warehouse and dbt project
        path.write_text(yaml.safe_dump(changed, sort_keys=False))
        with pytest.raises(ConfigError) as err:
            build_definitions(load_config(path))
        assert str(path) in str(err.value) and expected in str(err.value), str(err.value)


def test_every_purchase_stage_model_says_what_it_needs(crm):
    """scope.TABLE_NEEDS lists every dbt model of the interactions and bi folders."""
    from cdp.dbt.project import load_manifest, relation_name, target_path

    cfg, _, _ = crm
    nodes = load_manifest(target_path(cfg) / "manifest.json")["nodes"].values()
    models = {relation_name(n) for n in nodes if n["resource_type"] == "model"
              and n["fqn"][1] in ("interactions", "bi")}
    assert models and models <= set(TABLE_NEEDS), models - set(TABLE_NEEDS)


# ---- customers and orders, no order lines or products -------------------------------------------

@pytest.fixture(scope="module")
def shop(demo_tenant, scope_instance, tmp_path_factory):
    config = scoped_tenant(
        tmp_path_factory.mktemp("scope") / "shop", demo_tenant, "shop",
        DEMO_SOURCES["customers"] + DEMO_SOURCES["orders"],
        segments={"web_buyers": {"all": [
            {"table": "interactions.transaction_attributes_extended", "column": "preferred_channel",
             "op": "=", "value": "web"},
            {"column": "lifetime_revenue", "op": ">", "value": 0}]}})
    return load_config(config), _run(config, scope_instance)


def test_orders_without_items_build_the_order_based_tables(shop):
    from cdp.cli import left_out_notes

    _, result = shop
    assert any(n.startswith("no transaction_items sources: item-based tables are left out")
               for n in left_out_notes(result.defs)), left_out_notes(result.defs)
    built = {"interactions/unified_transactions", "interactions/transaction_attributes",
             "interactions/transaction_attributes_extended", "bi/dim_date", "bi/dim_customer",
             "bi/fact_sales", "predictive/predicted_clv_attributes", "custom/customer_lifecycle",
             "queries/monthly_buyers_by_channel", "activation/segments", "activation/profile_store"}
    assert built <= _materialized(result)
    left_out = {k.replace(".", "/") for k, need in TABLE_NEEDS.items() if need.name == "order_lines"}
    assert not left_out & _keys(result), left_out & _keys(result)
    # the CLV model's baseline check may lose on a few hundred buyers: that is not this test's concern
    assert not _failed_checks(result, ignore={"beats_naive_baseline"}), _failed_checks(result)


def test_orders_without_items_attributes_and_profiles(shop):
    cfg, _ = shop
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        orders, c360_orders = con.execute("""
            select (select sum(order_count) from interactions.transaction_attributes),
                   (select sum(order_count) from c360.customer_360)""").fetchone()
        extended = {c[0] for c in con.execute("describe interactions.transaction_attributes_extended").fetchall()}
        members = con.execute("select count(*) from activation.segment_web_buyers").fetchone()[0]
        sales = con.execute("select count(*) from bi.fact_sales").fetchone()[0]
        transactions = con.execute("select count(*) from interactions.unified_transactions").fetchone()[0]
    assert orders == c360_orders > 0 and sales == transactions
    assert {"preferred_channel", "is_one_and_done"} <= extended and not set(CATEGORY_COLUMNS) & extended
    assert members > 0
    with contextlib.closing(read_store(cfg.resolve(cfg.profile_api.store))) as store:
        profile = store.execute("select profile from profiles where profile like '%\"transaction_attributes\":{%' "
                                "limit 1").fetchone()
    assert profile is not None and "category_propensity" not in profile[0]
