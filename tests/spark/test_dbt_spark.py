"""The dbt models on Spark: the same model files built by dbt-spark (session mode, local[2]) from
the same inputs as the DuckDB run give the same customer 360.

Inputs: one snapshot of what the models read - domain.*, stitch.* and the Python assets'
tables of the small demo tenant's DuckDB pipeline run (conftest) - exported to a lakehouse folder
as Parquet, the layout the Spark engine writes, and loaded from there into a fresh DuckDB
warehouse. The record components of the deterministic and threshold databases are found on each
engine by the code of their Dagster assets (Splink's clustering on DuckDB, and on Spark through
the Spark connection). dbt builds the customer 360 databases, interactions, bi and custom models
on both; Spark's tables (Parquet in the lakehouse folder) are compared value for value with
DuckDB's."""

import math
import numbers

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("dbt.adapters.spark")
pytest.importorskip("pyspark")

# the demo tenant's databases - probabilistic, and operations_c360 deterministic - plus one with a
# match-probability threshold of its own, added to the test's copies of the config
STRICT = {"strict_c360": {"description": "links at or above 0.99 only", "stitch_mode": 0.99,
                          "merge": {"default": {"rule": "most_recent"}}}}
SPARK_DATABASES = ("c360", "email_c360", "paid_media_c360", "operations_c360", "strict_c360")


# what the dbt models read besides their own tables: the Python assets' outputs
SOURCE_TABLES = """
    table_schema in ('domain', 'stitch')
    or (table_schema, table_name) in (('bi', 'holiday_calendar'), ('predictive', 'predicted_clv_attributes'))
"""


def _export_inputs(warehouse, lakehouse) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for schema, table in con.execute(
                f"select table_schema, table_name from information_schema.tables where {SOURCE_TABLES}").fetchall():
            folder = lakehouse / schema / table
            folder.mkdir(parents=True)
            con.execute(f"copy {schema}.{table} to '{folder}/part-0.parquet' (format parquet)")
    finally:
        con.close()


SELECT = " ".join(["interactions", *(f"databases.{db}" for db in SPARK_DATABASES), "bi", "custom"])


def _dbt_build(cfg, select: str) -> None:
    from cdp.dbt.project import buildable_tests_only, dbt_resource, dbt_target, dbt_vars_arg, warehouse_env

    with warehouse_env(cfg), buildable_tests_only(), dbt_target(cfg, "test") as target:
        invocation = dbt_resource(cfg).cli(["build", "--select", select, *dbt_vars_arg(cfg)],
                                           target_path=target, raise_on_error=False)
        invocation.wait()
    assert invocation.is_successful(), invocation.get_error()


def _tenant(root, demo_tenant, engine: str):
    from cdp.config import load_config
    from cdp.dbt.project import prepare_manifest

    root.mkdir()
    doc = yaml.safe_load(demo_tenant.read_text())
    doc["databases"].update(STRICT)
    doc["spark"] = {"shuffle_partitions": 2, "conf": {"spark.driver.memory": "2g"}}  # small data, as the other Spark tests
    (root / "tenant.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDP_ENGINE", engine)
        env.delenv("CDP_WAREHOUSE", raising=False)
        cfg = load_config(root / "tenant.yaml")
        prepare_manifest(cfg)
    return cfg


def _record_components(cfg, con) -> None:
    """What the <db>/record_components assets do, on the connection's engine."""
    from cdp.stages.c360.assets import links_its_own_way, write_record_components

    for name, db in cfg.customer_databases.items():
        if links_its_own_way(db):
            write_record_components(con, name, db.stitch_mode)


def _spark_record_components(cfg) -> None:
    from cdp.engine.spark import SparkConnection, spark_session

    session = spark_session(cfg)
    try:
        _record_components(cfg, SparkConnection(session, cfg.lakehouse_path))
    finally:
        session.stop()


@pytest.fixture(scope="module")
def engines(pipeline_run, demo_tenant, tmp_path_factory):
    """The demo tenant's dbt models built from one snapshot of their inputs, on DuckDB (a fresh
    warehouse loaded from the Parquet inputs) and on Spark; returns (DuckDB file, lakehouse)."""
    root = tmp_path_factory.mktemp("engines")
    duck_cfg = _tenant(root / "duckdb", demo_tenant, "duckdb")
    spark_cfg = _tenant(root / "spark", demo_tenant, "spark")
    lakehouse = root / "spark" / "lakehouse"
    _export_inputs(demo_tenant.parent / "warehouse.duckdb", lakehouse)
    con = duckdb.connect(str(duck_cfg.warehouse_path))
    for folder in sorted(lakehouse.glob("*/*")):
        con.execute(f'create schema if not exists "{folder.parent.name}"')
        con.execute(f'create table "{folder.parent.name}"."{folder.name}" as '
                    f"select * from read_parquet('{folder}/*.parquet')")
    _record_components(duck_cfg, con)
    con.close()
    _spark_record_components(spark_cfg)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CDP_WAREHOUSE", raising=False)
        env.setenv("CDP_ENGINE", "duckdb")
        _dbt_build(duck_cfg, SELECT)
        env.setenv("CDP_ENGINE", "spark")
        _dbt_build(spark_cfg, SELECT)
    return duck_cfg.warehouse_path, lakehouse


@pytest.fixture()
def duck(engines):
    con = duckdb.connect(str(engines[0]), read_only=True)
    yield con
    con.close()


@pytest.fixture()
def spark_build(engines):
    return engines[1]


def _value(v):
    """An engine-neutral value: numbers as floats (6 decimals), dates and times as ISO text,
    structs as sorted (key, value) tuples, lists as tuples, NaN/NaT/None as None."""
    if v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, numbers.Number) and not isinstance(v, (bool, np.bool_)):
        return round(float(v), 6)
    if hasattr(v, "isoformat"):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, dict):
        return tuple(sorted((k, _value(x)) for k, x in v.items()))
    if hasattr(v, "__len__") and not isinstance(v, str):
        return tuple(_value(x) for x in v)
    return v


def _columns(df: pd.DataFrame, key: str = "cdp_id") -> dict[str, list]:
    """column -> its normalised values, rows in key order."""
    df = df.sort_values(key, kind="stable")
    return {c: [_value(v) for v in df[c].astype(object)] for c in df.columns}


def _spark_table(lakehouse, schema: str, table: str) -> pd.DataFrame:
    return duckdb.sql(f"select * from read_parquet('{lakehouse}/{schema}/{table}/*.parquet')").df()


@pytest.mark.parametrize("database", SPARK_DATABASES)
def test_customer_360_on_spark_equals_duckdb(spark_build, duck, database):
    duck = duck.execute(f"select * from {database}.customer_360").df()
    spark = _spark_table(spark_build, database, "customer_360")
    assert list(spark.columns) == list(duck.columns)
    assert len(duck) > 100 and len(spark) == len(duck)
    duck, spark = _columns(duck), _columns(spark)
    assert spark["cdp_id"] == duck["cdp_id"]                     # same people
    for column in duck:                                          # same merged values
        differs = [(d, s) for d, s in zip(duck[column], spark[column]) if d != s]
        assert not differs, (column, len(differs), differs[:3])


def test_a_later_step_reads_earlier_steps_tables_and_replaces_its_own(spark_build, duck):
    """As Dagster runs it: one dbt process per step. A new process (new Spark session, empty
    catalog) rebuilding c360 finds interactions.* of the earlier step in the lakehouse, and
    overwrites its own tables in place."""
    from cdp.config import load_config

    before = {p.name for p in (spark_build / "c360" / "customer_360").glob("*.parquet")}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDP_ENGINE", "spark")
        env.delenv("CDP_WAREHOUSE", raising=False)
        _dbt_build(load_config(spark_build.parent / "tenant.yaml"), "databases.c360")
    after = {p.name for p in (spark_build / "c360" / "customer_360").glob("*.parquet")}
    assert after and not after & before                      # rewritten, not appended to
    expected = _columns(duck.execute("select * from c360.customer_360").df())
    assert _columns(_spark_table(spark_build, "c360", "customer_360")) == expected


@pytest.mark.parametrize("table, key", [
    ("interactions.transaction_attributes", "cdp_id"),
    ("interactions.transaction_attributes_extended", "cdp_id"),
    ("interactions.unified_itemized_transactions", "item_key"),
    ("bi.dim_date", "date_key"),
    ("bi.dim_customer", "customer_key"),
    ("bi.fact_sales", "order_key"),
    ("custom.households", "household_id"),
    ("custom.customer_lifecycle", "cdp_id"),
])
def test_other_models_on_spark_equal_duckdb(spark_build, duck, table, key):
    schema, name = table.split(".")
    duck = duck.execute(f"select * from {table}").df()
    spark = _spark_table(spark_build, schema, name)
    assert list(spark.columns) == list(duck.columns)
    assert len(duck) > 0 and len(spark) == len(duck)
    duck, spark = _columns(duck, key), _columns(spark, key)
    for column in duck:
        differs = [(d, s) for d, s in zip(duck[column], spark[column]) if d != s]
        assert not differs, (column, len(differs), differs[:3])


@pytest.mark.parametrize("database", ["operations_c360", "strict_c360"])
def test_record_components_on_spark_equal_duckdb(spark_build, duck, database):
    """Splink's clustering on Spark finds the components DuckDB finds, named alike; and they
    really split Stitch's people (the database has more people than c360)."""
    query = "select record_key, component from {} order by record_key"
    on_duckdb = duck.execute(query.format(f"{database}.record_components")).fetchall()
    on_spark = duckdb.sql(query.format(
        f"read_parquet('{spark_build}/{database}/record_components/*.parquet')")).fetchall()
    assert on_duckdb and on_spark == on_duckdb
    people = {db: duck.execute(f"select count(*) from {db}.customer_360").fetchone()[0]
              for db in ("c360", database)}
    assert people[database] > people["c360"]
