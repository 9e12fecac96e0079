"""Predictive tables on a tenant too new for them: the tiny tenant's few weeks of purchases
cannot train and check a propensity model. The step writes empty tables and warns, through
real Dagster, instead of failing the run and everything downstream of it."""

import shutil

import dagster as dg
import duckdb

from cdp.config import load_config
from cdp.definitions import build_definitions


def test_too_little_history_writes_empty_propensities_and_warns(tiny_tenant, tmp_path, dagster_instance):
    shutil.copytree(tiny_tenant.base_dir, tmp_path / "tiny")
    cfg = load_config(tmp_path / "tiny" / "tenant.yaml")
    defs = build_definitions(cfg)
    key = dg.AssetKey(["predictive", "product_category_propensity"])
    result = defs.get_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[key, dg.AssetKey(["predictive", "recommendations"])], instance=dagster_instance)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("not evaluated: the tenant's purchases do not cover two windows "
                                        "of predictive.holdout_days (60 days)")
    [mat] = [m for m in result.asset_materializations_for_node("category_propensity_model")
             if m.asset_key == key]
    assert mat.metadata["dagster/row_count"].value == 0 and "not_trained" in mat.metadata
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    try:
        columns = [c[0] for c in con.execute("describe predictive.product_category_propensity").fetchall()]
        assert columns == ["cdp_id", "product_category", "propensity", "rank", "as_of_date"]
        assert con.execute("select count(*) from predictive.recommendations").fetchone() == (0,)
    finally:
        con.close()
