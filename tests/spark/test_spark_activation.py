"""Activation and the propensity model on the Spark engine (local[2]) give what they give on DuckDB.

Inputs: what these steps read - domain.*, stitch.unified_coalesced and stitch.blocklist (the
Profile API's store leaves blocklisted values out of its lookups), the customer 360 tables,
interactions.*, custom.* and the predicted CLV - exported from the small demo tenant's DuckDB
pipeline run (conftest) to a lakehouse folder as Parquet, the layout the Spark engine writes.
Then the predictive propensity model and the whole activation group (file drops, saved Presto
queries, segments, the orchestration's audience file, the Profile API's store) are materialized
through Dagster with CDP_ENGINE=spark, and their outputs compared with the DuckDB run's. The
inputs are copies, so the cdp_ids are the same on both sides."""

import gzip
import json
import os
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from cdp.stages.activation.profile_store import read_store  # noqa: E402

# the tables the Spark steps read, copied from the DuckDB run
INPUTS = """
    table_schema in ('domain', 'c360', 'paid_media_c360', 'interactions', 'custom')
    or (table_schema, table_name) in (('stitch', 'unified_coalesced'), ('stitch', 'blocklist'),
                                      ('predictive', 'predicted_clv_attributes'))
"""
PROPENSITY = [dg.AssetKey(["predictive", "product_category_propensity"]),
              dg.AssetKey(["predictive", "recommendations"])]


def _export_inputs(warehouse, lakehouse) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for schema, table in con.execute(
                f"select table_schema, table_name from information_schema.tables where {INPUTS}").fetchall():
            folder = lakehouse / schema / table
            folder.mkdir(parents=True)
            con.execute(f'copy "{schema}"."{table}" to \'{folder}/part-0.parquet\' (format parquet)')


@pytest.fixture(scope="module")
def spark_run(pipeline_run, demo_tenant, dagster_instance, tmp_path_factory):
    """(DuckDB tenant root, Spark tenant config, Spark run result)."""
    import yaml

    from cdp.config import load_config
    from cdp.definitions import build_definitions

    root = tmp_path_factory.mktemp("spark_activation")
    raw = yaml.safe_load(demo_tenant.read_text())
    raw["spark"] = {"master": "local[2]", "shuffle_partitions": 2,
                    "conf": {"spark.driver.memory": "2g"}}
    raw["lakehouse"] = {"folder": "synced", "format": "delta", "tables": ["c360.customer_360"]}
    # data paths stay the DuckDB tenant's (nothing here reads them: sources are not rebuilt)
    (root / "tenant.yaml").write_text(yaml.safe_dump(raw))
    shutil.copytree(demo_tenant.parent / "queries", root / "queries")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDP_ENGINE", "spark")
        env.delenv("CDP_WAREHOUSE", raising=False)
        cfg = load_config(root / "tenant.yaml")
        _export_inputs(demo_tenant.parent / "warehouse.duckdb", cfg.lakehouse_path)
        defs = build_definitions(cfg)
        job = dg.define_asset_job("spark_activation",
                                  selection=dg.AssetSelection.assets(*PROPENSITY) | dg.AssetSelection.groups("activation"))
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("spark_activation").execute_in_process(
            instance=dagster_instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    result.defs = defs
    yield demo_tenant.parent, cfg, result
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.fixture()
def duck(pipeline_run, demo_tenant):
    con = duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"), read_only=True)
    yield con
    con.close()


def _lakehouse(cfg, schema: str, table: str) -> pd.DataFrame:
    return duckdb.sql(f"select * from read_parquet('{cfg.lakehouse_path / schema / table}/**/*.parquet')").df()


def test_every_activation_and_propensity_step_runs_on_spark(spark_run):
    _, _, result = spark_run
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    done = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    for key in ("predictive/product_category_propensity", "predictive/recommendations",
                "activation/c360_file_drop", "activation/paid_media_audience",
                "activation/households_file_drop", "activation/segments", "activation/send_bakery_fans_to_drop",
                "activation/profile_store", "queries/lapsed_gmail_buyers"):
        assert key in done, key
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["every_person_served"] and checks["beats_naive_baseline"]
    graph = result.defs.resolve_asset_graph()
    for key in (["activation", "segments"], ["queries", "lapsed_gmail_buyers"], PROPENSITY[0].path):
        assert "dagster/kind/spark" in graph.get(dg.AssetKey(key)).tags, key


def test_propensity_scores_equal_duckdb(spark_run, duck):
    _, cfg, _ = spark_run
    key = ["cdp_id", "product_category"]
    expected = duck.execute("select * from predictive.product_category_propensity").df().sort_values(key)
    got = _lakehouse(cfg, "predictive", "product_category_propensity").sort_values(key)
    assert len(expected) > 100 and len(got) == len(expected)
    assert got[key].values.tolist() == expected[key].values.tolist()
    assert (got["propensity"].to_numpy() - expected["propensity"].to_numpy()).__abs__().max() <= 1e-4
    assert (got["rank"].to_numpy() == expected["rank"].to_numpy()).mean() > 0.99
    recs = _lakehouse(cfg, "predictive", "recommendations")
    assert len(recs) == duck.execute("select count(*) from predictive.recommendations").fetchone()[0]


@pytest.mark.parametrize("segment", ["reachable_by_email", "bakery_fans", "lapsing_high_value"])
def test_segment_members_equal_duckdb(spark_run, duck, segment):
    _, cfg, _ = spark_run
    expected = set(duck.execute(f"select cdp_id from activation.segment_{segment}").df()["cdp_id"])
    got = set(_lakehouse(cfg, "activation", f"segment_{segment}")["cdp_id"])
    assert expected and got == expected
    counts = _lakehouse(cfg, "activation", "segment_counts")
    assert counts.loc[counts["segment"] == segment, "members"].tolist() == [len(expected)]


@pytest.mark.parametrize("query", ["lapsed_gmail_buyers", "monthly_buyers_by_channel"])
def test_saved_query_rows_equal_duckdb(spark_run, duck, query):
    """The Presto query transpiled to Spark SQL gives the rows the DuckDB transpilation gives."""
    _, cfg, _ = spark_run
    expected = duck.execute(f"select * from queries.{query}").df()
    got = _lakehouse(cfg, "queries", query)
    assert list(got.columns) == list(expected.columns) and len(expected) > 0
    if "buyers" in expected:  # approx_distinct: each engine's own HyperLogLog, near each other
        pair = got.merge(expected, on=["order_month", "channel"], suffixes=("", "_duckdb"))
        assert len(pair) == len(expected)
        assert ((pair["buyers"] - pair["buyers_duckdb"]).abs() <= (0.1 * pair["buyers_duckdb"]).clip(lower=2)).all()
        got, expected = got.drop(columns="buyers"), expected.drop(columns="buyers")

    def rows(frame):
        frame = frame.astype(object).where(frame.notna(), None)
        return sorted(tuple(pd.Timestamp(v).date().isoformat() if hasattr(v, "isoformat")
                            else round(float(v), 2) if isinstance(v, float) else v for v in r)
                      for r in frame.itertuples(index=False))
    assert rows(got) == rows(expected)


def _drop(folder, run_id: str):
    """The file a run dropped in the folder (other tests' runs drop theirs in the DuckDB
    tenant's folders too)."""
    files = sorted(p for p in folder.iterdir() if f"__{run_id[:8]}." in p.name)
    assert len(files) == 1, sorted(folder.iterdir())
    return files[0]


@pytest.mark.parametrize("folder", ["exports/c360", "exports/households", "exports/paid_media"])
def test_file_drops_equal_duckdb(spark_run, pipeline_run, folder):
    duck_root, cfg, result = spark_run
    expected, got = _drop(duck_root / folder, pipeline_run.run_id), _drop(cfg.resolve(folder), result.run_id)
    if expected.suffix == ".csv":
        assert got.read_text().splitlines()[0] == expected.read_text().splitlines()[0]  # header
        read = pd.read_csv
    else:
        read = pd.read_parquet
    e, g = read(expected), read(got)
    assert list(g.columns) == list(e.columns) and len(g) == len(e) > 0
    assert g.iloc[:, 0].tolist() == e.iloc[:, 0].tolist()   # the same rows, in the same order
    pd.testing.assert_frame_equal(g, e, check_dtype=False, check_exact=False, rtol=1e-9)


def test_orchestration_audience_file_equals_duckdb(spark_run, pipeline_run):
    duck_root, cfg, result = spark_run
    expected = gzip.decompress(_drop(duck_root / "exports/segments", pipeline_run.run_id).read_bytes()).decode()
    got = gzip.decompress(_drop(cfg.resolve("exports/segments"), result.run_id).read_bytes()).decode()
    assert got.splitlines()[0] == "email,first_name,last_name,postal_code"
    assert sorted(got.splitlines()) == sorted(expected.splitlines())


def test_profile_store_built_from_the_lakehouse_serves_the_same_profiles(spark_run):
    duck_root, cfg, _ = spark_run
    stores = [read_store(p) for p in (duck_root / "profile_store.sqlite", cfg.resolve(cfg.profile_api.store))]
    try:
        for table in ("by_email", "by_phone", "by_source_pk"):
            e, g = (sorted(s.execute(f"select * from {table}").fetchall()) for s in stores)
            assert g == e and len(e) > 0, table
        e, g = ({cdp: json.loads(doc) for cdp, doc in s.execute("select * from profiles").fetchall()}
                for s in stores)
    finally:
        for s in stores:
            s.close()
    assert g.keys() == e.keys()
    for cdp_id in e:
        assert g[cdp_id]["segments"] == e[cdp_id]["segments"]
        assert g[cdp_id]["customer"]["email"] == e[cdp_id]["customer"]["email"]
        assert (g[cdp_id]["recommendations"] and [r["product_category"] for r in g[cdp_id]["recommendations"]]) \
            == (e[cdp_id]["recommendations"] and [r["product_category"] for r in e[cdp_id]["recommendations"]])


def test_a_table_rewritten_by_another_process_is_read_afresh(spark_run):
    """A dbt-spark step (its own process) rewrites a lakehouse table this session has read: the
    next step's connection must see the new files, not the listing of the removed ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession

    from cdp.engine.spark import SparkConnection

    _, cfg, _ = spark_run
    spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    folder = cfg.lakehouse_path / "scratch" / "rewritten"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"cdp_id": ["a", "b"]}), folder / "part-old.parquet")
    assert SparkConnection(spark, cfg.lakehouse_path).execute(
        "select count(*) from scratch.rewritten").fetchone()[0] == 2
    (folder / "part-old.parquet").unlink()          # what another process's overwrite does
    pq.write_table(pa.table({"cdp_id": ["c", "d", "e"]}), folder / "part-new.parquet")
    assert SparkConnection(spark, cfg.lakehouse_path).execute(
        "select count(*) from scratch.rewritten").fetchone()[0] == 3


def test_named_parameters_are_bound_for_spark():
    """DuckDB's $name parameters (the propensity features) become literals before transpiling;
    text in quotes is left alone and a missing value is an error, not a silent null."""
    import datetime as dt

    from cdp.engine.spark import bind, to_spark_sql

    sql = bind("select '$cutoff' as s, $cutoff - interval 180 day as d, $n as n",
               {"cutoff": dt.date(2026, 10, 31), "n": 3})
    assert sql == "select '$cutoff' as s, date '2026-10-31' - interval 180 day as d, 3 as n"
    assert "DATEDIFF(DAY" in to_spark_sql("select date_diff('day', max(d), date '2026-10-31') from t")
    with pytest.raises(KeyError, match=r"\$missing"):
        bind("select $missing", {"cutoff": 1})


def test_lakehouse_sync_writes_the_spark_table_as_delta(spark_run, duck):
    from deltalake import DeltaTable

    _, cfg, result = spark_run
    assert "lakehouse/c360__customer_360" in {m.asset_key.to_user_string()
                                             for m in result.get_asset_materialization_events()}
    synced = DeltaTable(str(cfg.resolve("synced") / "c360" / "customer_360")).to_pandas()
    expected = duck.execute("select * from c360.customer_360").df()
    assert list(synced.columns) == list(expected.columns)
    assert sorted(synced["cdp_id"]) == sorted(expected["cdp_id"])


# ---- the read path on a Spark tenant: what the Spark run wrote, read without Spark -----------

def _lakehouse_ids(cfg, schema: str, table: str) -> set[str]:
    return set(_lakehouse(cfg, schema, table)["cdp_id"])


@pytest.fixture()
def spark_env(spark_run, monkeypatch):
    """The Spark tenant's config, as `cdp` sees it with CDP_ENGINE=spark: no DuckDB file exists,
    so whatever the read path reads comes from the lakehouse."""
    from cdp.config import load_config

    _, cfg, _ = spark_run
    monkeypatch.setenv("CDP_ENGINE", "spark")
    monkeypatch.delenv("CDP_WAREHOUSE", raising=False)
    assert not cfg.warehouse_path.exists()
    yield load_config(cfg.config_path)
    assert not cfg.warehouse_path.exists()


def test_cdp_query_reads_what_the_spark_run_wrote(spark_env, duck, tmp_path):
    import argparse

    from cdp.cli import cmd_query

    out = tmp_path / "people.csv"
    args = argparse.Namespace(config=str(spark_env.config_path), sql="select cdp_id from c360.customer_360",
                              file=None, csv=str(out), limit=50)
    assert cmd_query(args) == 0
    got = set(pd.read_csv(out)["cdp_id"])
    assert got == _lakehouse_ids(spark_env, "c360", "customer_360")
    assert got == {r[0] for r in duck.execute("select cdp_id from c360.customer_360").fetchall()} and len(got) > 100


def test_segment_preview_reads_the_spark_segments(spark_env, capsys):
    import argparse

    from cdp.cli import cmd_segment_preview

    members = _lakehouse_ids(spark_env, "activation", "segment_reachable_by_email")
    assert members
    args = argparse.Namespace(config=str(spark_env.config_path), name="reachable_by_email", sample=3)
    assert cmd_segment_preview(args) == 0
    assert f"segment reachable_by_email: {len(members):,} members" in capsys.readouterr().out


def test_workspace_reader_reads_the_lakehouse(spark_env):
    from cdp.serve.workspace.reader import read_warehouse, table_exists

    with read_warehouse(spark_env) as con:
        assert table_exists(con, "c360", "customer_360")
        got = {r[0] for r in con.execute("select cdp_id from c360.customer_360").fetchall()}
        # the workspace's reader refuses files outside the lakehouse (external access off)
        with pytest.raises(duckdb.PermissionException):
            con.execute("select * from read_csv('/etc/hostname')")
    assert got == _lakehouse_ids(spark_env, "c360", "customer_360")


def test_profile_store_serves_the_people_the_spark_run_wrote(spark_env):
    path = spark_env.resolve(spark_env.profile_api.store)
    served = read_store(path)
    try:
        got = {r[0] for r in served.execute("select cdp_id from profiles").fetchall()}
    finally:
        served.close()
    assert got == _lakehouse_ids(spark_env, "c360", "customer_360")
