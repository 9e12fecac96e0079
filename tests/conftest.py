"""Shared fixtures: a small generated tenant, materialized once through the real graph
(real Splink, real dbt, real DuckDB) for the tests that inspect its output."""

import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cdp_assets.config import DEFAULT_CONFIG

SMALL_PEOPLE = 400


@pytest.fixture(scope="session")
def demo_tenant(tmp_path_factory) -> Path:
    """The demo tenant config copied beside freshly generated data for SMALL_PEOPLE people."""
    from cdp_assets.generate import generate_demo_data

    root = tmp_path_factory.mktemp("tenant")
    shutil.copy(DEFAULT_CONFIG, root / "tenant.yaml")
    generate_demo_data(root / "data", people=SMALL_PEOPLE, seed=7)
    return root / "tenant.yaml"


@pytest.fixture(scope="session")
def dagster_instance(tmp_path_factory):
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        yield instance


@pytest.fixture(scope="session")
def pipeline_run(demo_tenant, dagster_instance):
    """One full materialization of the demo graph; returns the run result."""
    from cdp_assets.cli import run_tenant

    os.environ.pop("CDP_WAREHOUSE", None)
    result = run_tenant(str(demo_tenant), quiet=True, instance=dagster_instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


@pytest.fixture()
def warehouse(pipeline_run, demo_tenant):
    con = duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"), read_only=True)
    yield con
    con.close()
