"""The Spark engine (local[2]): the same asset graph - domain tables, Stitch and a deterministic
database's record components - on Spark, through dagster-pyspark, gives the same domain rows,
quarantine and people as on DuckDB.

One generated tenant (customers only) is materialized twice through Dagster: on DuckDB (which
trains and saves the Splink model) and with CDP_ENGINE=spark (which reuses the saved model, as a
second run of either engine does). The Spark session is shared by every test of this module."""

import csv
import math
import numbers
import os
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from cdp.config import DEFAULT_CONFIG, ConfigError, load_config

pyspark = pytest.importorskip("pyspark")

PEOPLE = 60
GROUPS = ("sources", "stitch")
# a deterministic database: its record components (a Python asset, Splink's clustering) run on
# Spark through the same resource; its dbt models are tested on Spark in test_dbt_spark.py
COMPONENTS = dg.AssetKey(["operations_c360", "record_components"])


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    """A customers-only tenant for PEOPLE people, Spark kept small (2 shuffle partitions)."""
    from cdp.demo.generate import generate_demo_data

    root = tmp_path_factory.mktemp("spark_tenant")
    generate_demo_data(root / "data", people=PEOPLE, seed=11, customers_only=True)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["sources"] = {n: s for n, s in raw["sources"].items() if s["kind"] == "customers"}
    for key in ("databases", "destinations", "segments", "orchestrations", "queries", "merge",
                "profile_api"):
        raw.pop(key, None)
    raw["databases"] = {"operations_c360": {"stitch_mode": "deterministic"}}
    raw["spark"] = {"master": "local[2]", "shuffle_partitions": 2, "conf": {"spark.driver.memory": "2g"}}
    (root / "tenant.yaml").write_text(yaml.safe_dump(raw))
    with open(root / "data" / "pos_customers.csv", "a", encoding="utf-8") as fh:
        first = (root / "data" / "pos_customers.csv").read_text().splitlines()[1]
        fields = len(next(csv.reader([first])))
        fh.write(first + "\n")                                   # a duplicate pk
        fh.write("\n")                                           # a blank line
        fh.write("only,three,fields\n")                          # a wrong field count
        fh.write("," + ",".join(["Nokey"] * (fields - 1)) + "\n")  # a missing pk
    return root / "tenant.yaml"


def _materialize(config_path, instance, engine: str):
    from cdp.definitions import build_definitions

    os.environ["CDP_ENGINE"] = engine
    try:
        cfg = load_config(config_path)
        defs = build_definitions(cfg)
        selection = dg.AssetSelection.groups(*GROUPS) | dg.AssetSelection.keys(COMPONENTS)
        job = dg.define_asset_job(f"stitch_{engine}", selection=selection)
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def(f"stitch_{engine}").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    finally:
        os.environ.pop("CDP_ENGINE", None)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return cfg, result


@pytest.fixture(scope="module")
def runs(tenant, dagster_instance):
    """(DuckDB run, Spark run) of sources + stitch; the Spark session stopped at the end."""
    duck = _materialize(tenant, dagster_instance, "duckdb")
    spark = _materialize(tenant, dagster_instance, "spark")
    yield duck, spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def _people(frame: pd.DataFrame) -> set[frozenset]:
    """The partition of records into people, whatever the ids are."""
    frame = frame.assign(uid=frame["source"] + "|" + frame["pk"].astype(str))
    return {frozenset(g) for _, g in frame.groupby("cdp_id")["uid"]}


def _spark_table(cfg, schema: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(cfg.lakehouse_path / schema / table)


def test_spark_stitch_finds_the_same_people_as_duckdb(runs):
    (cfg, _), (spark_cfg, spark_result) = runs
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        on_duckdb = con.execute("select cdp_id, source, pk from stitch.unified_coalesced").df()
        domain_rows = con.execute("select count(*) from domain.pos_customers").fetchone()[0]
    on_spark = _spark_table(spark_cfg, "stitch", "unified_coalesced")
    assert len(on_spark) == len(on_duckdb) > PEOPLE
    assert _people(on_spark) == _people(on_duckdb)
    assert len(_people(on_spark)) < len(on_spark)  # records were really linked
    # the domain tables were written by Spark into the lakehouse, the same rows
    assert len(_spark_table(spark_cfg, "domain", "pos_customers")) == domain_rows
    kinds = {k: v for m in spark_result.get_asset_materialization_events()
             for k, v in [(m.asset_key.to_user_string(), m)]}
    assert "stitch/unified_coalesced" in kinds and "domain/pos_customers" in kinds


def test_record_components_on_spark_equal_duckdb(runs):
    (cfg, _), (spark_cfg, spark_result) = runs
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        on_duckdb = con.execute("select record_key, component from operations_c360.record_components "
                                "order by record_key").fetchall()
    on_spark = _spark_table(spark_cfg, "operations_c360", "record_components").sort_values("record_key")
    assert on_duckdb and list(on_spark.itertuples(index=False, name=None)) == on_duckdb
    checks = [c for c in spark_result.get_asset_check_evaluations() if c.asset_key == COMPONENTS]
    assert [c.passed for c in checks] == [True]


def _values(frame: pd.DataFrame) -> list[tuple]:
    """Rows as engine-neutral tuples: missing values None, times as ISO text, numbers as floats."""
    def value(v):
        if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
            return None
        if hasattr(v, "isoformat"):
            return pd.Timestamp(v).isoformat()
        if isinstance(v, numbers.Number) and not isinstance(v, bool):
            return float(v)
        return v
    return [tuple(value(v) for v in row) for row in frame.astype(object).itertuples(index=False)]


def test_domain_tables_and_quarantine_are_equal_on_both_engines(runs):
    """Standardised on Spark's executors by the same code: the same rows, values, types' values
    and quarantined rows (with their reasons) as on DuckDB, and every row accounted for."""
    (cfg, _), (spark_cfg, spark_result) = runs
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        for name in cfg.sources:
            on_duckdb = con.execute(f"select * from domain.{name} order by source_row").df()
            on_spark = _spark_table(spark_cfg, "domain", name).sort_values("source_row")
            assert list(on_spark.columns) == list(on_duckdb.columns), name
            assert len(on_duckdb) > 0 and _values(on_spark) == _values(on_duckdb), name
        columns = "source, source_row, raw_row, reason"
        quarantine = con.execute(f"select {columns} from domain.quarantine order by source, source_row").df()
    on_spark = _spark_table(spark_cfg, "domain", "quarantine")[columns.split(", ")]
    assert _values(on_spark.sort_values(["source", "source_row"])) == _values(quarantine)
    reasons = set(quarantine[quarantine["source"] == "pos_customers"]["reason"].str.split(" [(0-9]").str[0])
    assert {"duplicate pk", "blank line", "expected", "missing pk"} <= reasons, reasons
    domain_runs = [m for m in spark_result.get_asset_materialization_events()
                   if m.asset_key.path[0] == "domain"]
    pos = next(m for m in domain_runs if m.asset_key.path[-1] == "pos_customers").materialization.metadata
    assert pos["rows_quarantined"].value == (quarantine["source"] == "pos_customers").sum()
    checks = [c for c in spark_result.get_asset_check_evaluations()
              if c.check_name == "every_row_accounted_for"]
    assert len(checks) == len(cfg.sources) and all(c.passed for c in checks)


def test_spark_run_reports_spark_kinds_and_passes_the_checks(runs):
    _, (spark_cfg, result) = runs
    from cdp.definitions import build_definitions

    os.environ["CDP_ENGINE"] = "spark"
    try:
        defs = build_definitions(spark_cfg)
    finally:
        os.environ.pop("CDP_ENGINE", None)
    graph = defs.resolve_asset_graph()
    for key in (dg.AssetKey(["stitch", "unified_coalesced"]), dg.AssetKey(["domain", "pos_customers"])):
        assert "dagster/kind/spark" in graph.get(key).tags
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks if c.check_name != "no_implausible_clusters")


def test_customers_only_graph_is_the_same_on_both_engines(runs):
    """What a customers-only tenant leaves out (cdp/config/scope.py) does not depend on the engine:
    no interactions, bi or predictive asset on Spark either, every customer 360 database there."""
    from cdp.definitions import build_definitions

    graphs = {}
    for engine, (cfg, _) in zip(("duckdb", "spark"), runs):
        os.environ["CDP_ENGINE"] = engine
        try:
            graph = build_definitions(cfg).resolve_asset_graph()
        finally:
            os.environ.pop("CDP_ENGINE", None)
        graphs[engine] = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert graphs["spark"] == graphs["duckdb"]
    assert not [k for k in graphs["spark"] if k.split("/")[0] in ("interactions", "bi", "predictive")]
    assert {"c360/customer_360", "operations_c360/customer_360", "activation/profile_store"} <= graphs["spark"]


def test_engine_setting_is_validated(tenant, monkeypatch):
    monkeypatch.setenv("CDP_ENGINE", "presto")
    with pytest.raises(ConfigError, match="CDP_ENGINE"):
        load_config(tenant).active_engine
    monkeypatch.delenv("CDP_ENGINE")
    bad = yaml.safe_load(tenant.read_text())
    bad["spark"]["master"] = "localhost"
    path = tenant.parent / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="spark.master"):
        load_config(path)


def test_duckdb_sql_is_transpiled_for_spark():
    from cdp.engine.spark import bind, to_spark_sql

    sql = to_spark_sql("select list(x order by x), jaro_winkler_similarity(a, b) from t "
                       "anti join u using (k) qualify count(*) over (partition by k) > 1")
    assert "ARRAY_SORT(COLLECT_LIST(x))" in sql and "JARO_WINKLER(a, b)" in sql
    assert "ANTI JOIN" in sql and "QUALIFY" not in sql
    assert bind("select ? as a, 'x?' as b, ? in (select unnest(?))", ["it's", 1, ["p", "q"]]) == \
        "select 'it''s' as a, 'x?' as b, 1 in (select unnest(['p', 'q']))"


def test_country_defaults_reach_the_executors(runs, intl_tenant):
    """The tenant's and a source's country travel with the source to the executors: Australian,
    German and self-declared records standardise on Spark exactly as on DuckDB."""
    from pyspark.sql import functions as F

    from cdp.engine.spark import spark_session
    from cdp.stages.sources.assets import DOMAIN_COLUMNS, build_domain_table
    from cdp.stages.sources.spark import INVALID_COLUMN, INVALID_COUNT, ROW_KIND, standardise_on_spark

    _, (spark_cfg, _) = runs
    spark = spark_session(spark_cfg)
    cfg = load_config(intl_tenant)
    phones = set()
    for name, source in cfg.sources.items():
        path = cfg.resolve(source.path)
        here, batch, _ = build_domain_table(name, source, path)
        _, standardised = standardise_on_spark(spark, name, source, path, buckets=2)
        there = (standardised.filter(F.col(ROW_KIND) == "domain")
                 .select(*DOMAIN_COLUMNS[source.kind]).toPandas().sort_values("source_row"))
        # the standardised columns (the one-file load adds the delivery columns, null, after)
        here = here[DOMAIN_COLUMNS[source.kind]]
        assert _values(there) == _values(here.sort_values("source_row")), name
        invalid = {r[0]: r[1] for r in standardised.filter(F.col(ROW_KIND) == "invalid")
                   .groupBy(INVALID_COLUMN).agg(F.sum(INVALID_COUNT)).collect()}
        assert invalid == batch.invalid_values, name
        phones |= set(there["phone"].dropna())
    assert {"+61212345678", "+49301234567", "+442079460000"} <= phones
