"""Customer 360 databases and custom tables in the materialized demo graph: one asset group per
database, custom dbt models as assets with lineage and exports, and a config change that makes
stale only the database it touches."""

import shutil

import dagster as dg
import pandas as pd
import yaml

DATABASES = ["c360", "email_c360", "paid_media_c360", "operations_c360"]
TABLES = ["unified_records", "merged_customers", "merged_customers_provenance", "customer_360"]


def test_each_database_is_its_own_asset_group_with_its_tables(pipeline_run):
    graph = pipeline_run.defs.resolve_asset_graph()
    materialized = {m.asset_key for m in pipeline_run.get_asset_materialization_events()}
    for db in DATABASES:
        for table in TABLES:
            key = dg.AssetKey([db, table])
            assert key in materialized, key
            assert graph.get(key).group_name == db
        assert dg.AssetKey(["stitch", "unified_coalesced"]) in graph.get(
            dg.AssetKey([db, "unified_records"])).parent_keys
    # deterministic mode: its links' components, from Stitch's pair table, found before dbt
    components = dg.AssetKey(["operations_c360", "record_components"])
    assert components in graph.get(dg.AssetKey(["operations_c360", "unified_records"])).parent_keys
    assert dg.AssetKey(["stitch", "unified_scores"]) in graph.get(components).parent_keys
    assert graph.get(components).group_name == "operations_c360" and components in materialized
    checks = pipeline_run.get_asset_check_evaluations()
    assert [c.passed for c in checks if c.asset_key == components] == [True]


def test_databases_differ_by_their_rules(warehouse):
    c = warehouse.execute("select * from c360.merged_customers").df().set_index("cdp_id")
    e = warehouse.execute("select * from email_c360.merged_customers").df().set_index("cdp_id")
    assert set(c.index) == set(e.index)  # the same people (both probabilistic)
    # email_c360 takes the email platform's given name first; c360 the most recent
    esp = e[e["given_name__from"].str.startswith("email_subscribers|", na=False)]
    assert len(esp) > 0
    differ = (c.loc[esp.index, "given_name"] != esp["given_name"]).sum()
    assert differ > 0
    # paid media: every email with its sources, and at least one person with several
    pm = warehouse.execute("""select cdp_id, email, email__all from paid_media_c360.customer_360
                              where len(email__all) > 1""").df()
    assert len(pm) > 0
    for _, row in pm.head(20).iterrows():
        assert row["email"] in [v["value"] for v in row["email__all"]]
    # deterministic matching: at least as many people as Stitch found, each a part of one of them
    n = {db: warehouse.execute(f"select count(*) from {db}.customer_360").fetchone()[0]
         for db in ["c360", "operations_c360"]}
    assert n["operations_c360"] > n["c360"]
    mixed = warehouse.execute("""select count(*) from (select cdp_id from operations_c360.unified_records
                                 group by cdp_id having count(distinct stitch_cdp_id) > 1)""").fetchone()[0]
    assert mixed == 0
    # every merged field's provenance row points at a record that holds that value
    wrong = warehouse.execute("""
        select count(*) from email_c360.merged_customers_provenance p
        join stitch.unified_coalesced u on u.source = p.source and u.pk = p.pk
        where p.field = 'email' and p.value is distinct from u.email""").fetchone()[0]
    assert wrong == 0


def test_custom_tables_are_assets_with_lineage_and_export(pipeline_run, warehouse, demo_tenant):
    graph = pipeline_run.defs.resolve_asset_graph()
    for table in ["households", "customer_lifecycle"]:
        node = graph.get(dg.AssetKey(["custom", table]))
        assert node.group_name == "custom"
        assert dg.AssetKey(["c360", "customer_360"]) in node.parent_keys
    households = warehouse.execute("select * from custom.households").df()
    assert households["household_id"].is_unique and (households["member_count"] >= 1).all()
    people_with_address = warehouse.execute(
        "select count(*) from c360.customer_360 where address is not null and postal is not null").fetchone()[0]
    assert households["member_count"].sum() == people_with_address
    stages = warehouse.execute("select lifecycle_stage, count(*) from custom.customer_lifecycle "
                               "group by 1").fetchall()
    assert {s for s, _ in stages} <= {"prospect", "new", "active", "at_risk", "lapsed"} and len(stages) > 1
    files = list((demo_tenant.parent / "exports" / "households").glob("*.csv"))
    assert files and len(pd.read_csv(files[0])) == len(households)
    assert list((demo_tenant.parent / "exports" / "paid_media").glob("*.parquet"))


def test_a_config_change_makes_only_its_database_stale(pipeline_run, dagster_instance, demo_tenant):
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    from cdp.config import load_config
    from cdp.definitions import build_definitions

    def status(defs, key):
        resolver = CachingStaleStatusResolver(dagster_instance, defs.resolve_asset_graph(),
                                              LoadingContextForTest(dagster_instance))
        return resolver.get_status(dg.AssetKey(key))

    same = build_definitions(load_config(demo_tenant))
    for db in DATABASES:
        assert status(same, [db, "merged_customers"]) == StaleStatus.FRESH, db
    # what is stale before the change (other tests' runs on this session's instance can leave
    # an upstream view newer than its last build) is not the change's doing
    before = {k.to_user_string() for k in same.resolve_asset_graph().get_all_asset_keys()
              if (k.path[0] in DATABASES or k.path[0] == "custom") and status(same, k.path) == StaleStatus.STALE}
    assert not any(k.endswith(("merged_customers", "merged_customers_provenance", "customer_360")) for k in before)

    # the email team changes its email rule: a copy of the config beside the same data
    changed = demo_tenant.parent / "tenant_changed.yaml"
    shutil.copy(demo_tenant, changed)
    doc = yaml.safe_load(changed.read_text())
    doc["databases"]["email_c360"]["merge"]["fields"]["email"] = {"rule": "most_frequent"}
    changed.write_text(yaml.safe_dump(doc))
    try:
        defs = build_definitions(load_config(changed))
        dbt_keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys()
                    if k.path[0] in DATABASES or k.path[0] == "custom"]
        stale = {k.to_user_string() for k in dbt_keys if status(defs, k.path) == StaleStatus.STALE} - before
        # the two models whose SQL carries email_c360's rules; everything else is untouched
        assert stale == {"email_c360/merged_customers", "email_c360/merged_customers_provenance"}
        # rebuilding the stale assets and what reads them leaves everything fresh
        rebuild = dg.AssetSelection.keys(*[dg.AssetKey(k.split("/")) for k in stale]).downstream()
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance, asset_selection=list(rebuild.resolve(defs.resolve_asset_graph())))
        assert result.success
        rebuilt = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
        # and what reads them: customer_360, and the record state the incremental models keep
        assert rebuilt == stale | {"email_c360/customer_360", "email_c360/built_records"}
        assert all(status(defs, k.path) == StaleStatus.FRESH for k in dbt_keys if k.to_user_string() not in before)
    finally:
        changed.unlink()
        # the demo's own model files back, and its email_c360 tables rebuilt with its own rule,
        # so later tests reading the shared warehouse see the demo's customer 360
        original = build_definitions(load_config(demo_tenant))
        restore = dg.AssetSelection.keys(dg.AssetKey(["email_c360", "merged_customers"]),
                                         dg.AssetKey(["email_c360", "merged_customers_provenance"])).downstream()
        assert original.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance,
            asset_selection=list(restore.resolve(original.resolve_asset_graph()))).success


def test_every_model_is_documented_and_tested(pipeline_run, demo_tenant):
    import json

    from cdp.config import load_config
    from cdp.dbt.project import target_path

    manifest = json.loads((target_path(load_config(demo_tenant)) / "manifest.json").read_text())
    models = {k: n for k, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    tested = {dep for n in manifest["nodes"].values() if n["resource_type"] == "test"
              for dep in n["depends_on"]["nodes"]}
    assert len(models) >= 4 * len(DATABASES) + 2
    for key, node in models.items():
        assert node["description"].strip(), f"{key} has no description"
        assert key in tested, f"{key} has no dbt test"
