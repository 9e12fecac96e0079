"""The code location is the merge of one `definitions(cfg)` per stage (cdp/definitions.py
STAGES): loaded for the demo tenant and the tiny tenant, each stage brings its own asset
groups, jobs and sensors, nothing is lost in the merge and the shared part (resources,
executor, left-out metadata) is there once."""

import shutil

import dagster as dg
import pytest

from cdp.config import DEFAULT_CONFIG, load_config
from cdp.definitions import STAGES, build_definitions
from cdp.stages import activation, bi, c360, custom, interactions, predictive, sources, stitch

from tests.conftest import TINY

# stage -> the asset groups it contributes, per tenant (c360: one group per customer 360 database)
DEMO_GROUPS = {sources: {"sources"}, stitch: {"stitch"},
               c360: {"c360", "email_c360", "operations_c360", "paid_media_c360"},
               interactions: {"interactions"}, predictive: {"predictive"}, bi: {"bi"},
               custom: {"custom"}, activation: {"activation"}}
TINY_GROUPS = {**DEMO_GROUPS, c360: {"c360"}}


def _copy(folder, root):
    shutil.copytree(folder, root, ignore=shutil.ignore_patterns("*.duckdb*", "data", ".dbt_project"))
    return load_config(root / "tenant.yaml")


@pytest.fixture(scope="module")
def demo_cfg(tmp_path_factory):
    return _copy(DEFAULT_CONFIG.parent, tmp_path_factory.mktemp("defs") / "demo")


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    return _copy(TINY, tmp_path_factory.mktemp("defs") / "tiny")


def _asset_groups(defs: dg.Definitions) -> dict[dg.AssetKey, str]:
    """asset key -> group of the assets a Definitions object defines (not resolved: a stage alone
    has no resources)."""
    return {key: group for asset in defs.assets for key, group in asset.group_names_by_key.items()}


def _check_keys(defs: dg.Definitions) -> set[dg.AssetCheckKey]:
    return {key for d in [*defs.assets, *(defs.asset_checks or [])] for key in d.check_keys}


def _groups(defs: dg.Definitions) -> set[str]:
    return set(_asset_groups(defs).values())


def test_stages_run_in_pipeline_order():
    assert STAGES == (sources, stitch, c360, interactions, predictive, bi, custom, activation)


@pytest.mark.parametrize("tenant, expected", [("demo_cfg", DEMO_GROUPS), ("tiny_cfg", TINY_GROUPS)])
def test_each_stage_contributes_its_groups(request, tenant, expected):
    cfg = request.getfixturevalue(tenant)
    per_stage = {stage: stage.definitions(cfg) for stage in STAGES}
    for stage, defs in per_stage.items():
        assert _groups(defs) == expected[stage], stage.__name__
        assert not defs.resources and defs.executor is None, f"{stage.__name__}: shared parts come once"

    whole = build_definitions(cfg)
    graph = whole.resolve_asset_graph()
    assert {graph.get(key).group_name for key in graph.materializable_asset_keys} == set().union(*expected.values())
    stage_keys = [key for defs in per_stage.values() for key in _asset_groups(defs)]
    assert len(stage_keys) == len(set(stage_keys)), "an asset in two stages"
    assert set(stage_keys) == set(graph.materializable_asset_keys)
    assert set().union(*map(_check_keys, per_stage.values())) == set(graph.asset_check_keys)
    assert set(whole.resources) == {"warehouse", "dbt"}
    assert whole.executor is dg.in_process_executor
    assert "cdp/left_out" in whole.metadata


@pytest.mark.parametrize("tenant, sensors, jobs", [
    ("demo_cfg", {"export_on_c360_customer_360_refresh", "export_on_custom_households_refresh",
                  "export_on_paid_media_c360_customer_360_refresh", "orchestrate_bakery_fans_to_drop"},
     {"activation_exports", "orchestration_bakery_fans_to_drop", "rebuild_customer_360"}),
    ("tiny_cfg", {"publish_warehouse_bi_when_its_tables_refresh"}, {"activation_exports", "rebuild_customer_360"}),
])
def test_activation_brings_the_jobs_sensors_and_schedule(request, tenant, sensors, jobs):
    cfg = request.getfixturevalue(tenant)
    stage = activation.definitions(cfg)
    assert {s.name for s in stage.sensors} == sensors
    assert {j.name for j in stage.jobs} == jobs
    assert [s.name for s in stage.schedules] == ["daily_rebuild"]
    whole = build_definitions(cfg)
    assert {s.name for s in whole.sensors} == sensors
    assert {j.name for j in whole.resolve_all_job_defs()} == jobs | {"__ASSET_JOB"}
