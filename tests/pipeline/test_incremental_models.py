"""Incremental customer 360 and interaction models (dbt_project/macros/incremental_people.sql)
on the tiny tenant, built by real dbt on DuckDB: after a change to a few records and orders, an
incremental run recomputes only the touched people, and every row of every table equals a full
rebuild's."""

import shutil

import duckdb
import pytest

from cdp.config import load_config
from cdp.dbt.project import dbt_resource, dbt_target, dbt_vars_arg, prepare_manifest, warehouse_env
from tests.conftest import _load_tiny_sources

# three dbt invocations and two parses each, ~40 s on the 2-core CI machine
pytestmark = pytest.mark.slow

PEOPLE = {"c1": "P1", "c2": "P1", "c3": "P2", "c4": "P3", "c5": "P4", "c6": "P5"}
TABLES = ["c360.merged_customers", "c360.merged_customers_provenance", "c360.customer_360",
          "interactions.transaction_attributes", "interactions.transaction_attributes_extended",
          "c360.built_records", "interactions.built_orders"]
SELECT = "+fqn:cdp.databases.* +fqn:cdp.interactions.*"


def dbt(cfg, *extra: str) -> None:
    with warehouse_env(cfg), dbt_target(cfg, "test") as target:
        dbt_resource(cfg).cli(["run", "--quiet", "--select", SELECT, *extra, *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()


def dbt_test(cfg, model: str) -> bool:
    """Whether the data tests of `model` pass."""
    with warehouse_env(cfg), dbt_target(cfg, "test") as target:
        run = dbt_resource(cfg).cli(["test", "--quiet", "--select", model, "--indirect-selection", "cautious",
                                     *dbt_vars_arg(cfg)],
                                    target_path=target, raise_on_error=False).wait()
        return run.is_successful()


def seed(cfg) -> None:
    """The tiny tenant's domain tables, and a Stitch output with every customer column: the four
    customers and two more people of their own (P4 buys later, P5 never changes)."""
    _load_tiny_sources(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("drop table c360.customer_360")  # the fixture's stand-in, not a model's table
        con.execute("""insert into domain.shop_customers by name
                       select * replace ('c5' as pk, 'dee@example.com' as email) from domain.shop_customers where pk = 'c4'
                       union all
                       select * replace ('c6' as pk, 'eve@example.com' as email) from domain.shop_customers where pk = 'c4'""")
        pairs = ", ".join(f"('{pk}', '{p}')" for pk, p in PEOPLE.items())
        con.execute(f"""create or replace table stitch.unified_coalesced as
                        select m.cdp_id, d.* from domain.shop_customers d
                        join (values {pairs}) m(pk, cdp_id) using (pk)""")


def change(con) -> None:
    """A field changed (c1's email), a record moved to another person (c2: P1 -> P3), a person's
    only record deleted (c3: P2 is gone), an order added for P4 (no record of P4 changed)."""
    con.execute("update stitch.unified_coalesced set email = 'ann.new@example.com' where pk = 'c1'")
    con.execute("update stitch.unified_coalesced set cdp_id = 'P3' where pk = 'c2'")
    con.execute("delete from stitch.unified_coalesced where pk = 'c3'")
    con.execute("""insert into domain.shop_orders by name
                   select * replace ('O9' as order_id, 'c5' as customer_pk) from domain.shop_orders
                   where order_id = 'O6'""")
    con.execute("""insert into domain.shop_items by name
                   select * replace ('O9' as order_id) from domain.shop_items where order_id = 'O6'""")


def differences(con, table: str) -> int:
    """Rows in one of the two copies and not the other (multiset), with the column order checked."""
    mine = con.execute(f"select * from {table} limit 0").description
    theirs = con.execute(f"select * from full_build.{table} limit 0").description
    assert [c[0] for c in mine] == [c[0] for c in theirs], table
    return con.execute(f"""select count(*) from (
        (select * from {table} except all select * from full_build.{table})
        union all
        (select * from full_build.{table} except all select * from {table}))""").fetchone()[0]


@pytest.fixture()
def tiny_cfg(tiny_copy):
    cfg = load_config(tiny_copy)
    seed(cfg)
    prepare_manifest(cfg)
    return cfg


def test_incremental_run_equals_a_full_rebuild(tiny_cfg, tmp_path):
    cfg = tiny_cfg
    dbt(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        before = con.execute("select record_count from c360.merged_customers where cdp_id = 'P5'").fetchone()[0]
        # a mark on a person no change touches: an incremental run leaves their rows alone
        con.execute("update c360.merged_customers set record_count = 99 where cdp_id = 'P5'")
        change(con)
    dbt(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        touched = {r[0] for r in con.execute("select cdp_id from c360.touched_people").fetchall()}
        assert touched == {"P1", "P2", "P3"}
        orders = {r[0] for r in con.execute("select cdp_id from interactions.touched_people").fetchall()}
        assert orders == {"P1", "P2", "P3", "P4"}  # P1/P3: c2's orders moved; P2's orders lost their person
        assert con.execute("select record_count from c360.merged_customers where cdp_id = 'P5'").fetchone()[0] == 99
        assert con.execute("select count(*) from c360.merged_customers where cdp_id = 'P2'").fetchone()[0] == 0
        assert con.execute("select order_count from c360.customer_360 where cdp_id = 'P4'").fetchone()[0] == 1
        assert con.execute("select email from c360.customer_360 where cdp_id = 'P1'").fetchone()[0] == "ann.new@example.com"
        con.execute("update c360.merged_customers set record_count = ? where cdp_id = 'P5'", [before])
    # the incremental models' data tests check the touched people's rows (and any without a
    # person): a duplicate of a touched person fails them
    assert dbt_test(cfg, "c360__customer_360")
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("insert into c360.customer_360 select * from c360.customer_360 where cdp_id = 'P1'")
    assert not dbt_test(cfg, "c360__customer_360")
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("delete from c360.customer_360 where rowid = "
                    "(select max(rowid) from c360.customer_360 where cdp_id = 'P1')")
    full = tmp_path / "full"
    full.mkdir()
    shutil.copy(cfg.warehouse_path, full / "warehouse.duckdb")
    shutil.copy(cfg.config_path, full / "tenant.yaml")
    for f in cfg.config_path.parent.glob("*.csv"):
        shutil.copy(f, full / f.name)
    full_cfg = load_config(full / "tenant.yaml")
    prepare_manifest(full_cfg)
    dbt(full_cfg, "--full-refresh")
    with duckdb.connect(str(full / "warehouse.duckdb"), read_only=True) as con:
        # a whole rebuild touches (and so tests) every person, though a state was there
        assert {r[0] for r in con.execute("select cdp_id from c360.touched_people").fetchall()} == \
            {"P1", "P3", "P4", "P5"}
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute(f"attach '{full / 'warehouse.duckdb'}' as full_build (read_only)")
        assert {t: differences(con, t) for t in TABLES} == {t: 0 for t in TABLES}


def test_a_model_change_rebuilds_whole(tiny_cfg):
    cfg = tiny_cfg
    dbt(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute("update c360.merged_customers set record_count = 99 where cdp_id = 'P5'")
    text = cfg.config_path.read_text() + "merge:\n  default: {rule: first_seen}\n"
    cfg.config_path.write_text(text)
    cfg = load_config(cfg.config_path)
    prepare_manifest(cfg)
    dbt(cfg)  # no record changed, but the merge rules did: the state's fingerprint differs
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        assert con.execute("select record_count from c360.merged_customers where cdp_id = 'P5'").fetchone()[0] == 1
        # ... and every person is touched, so the models' data tests check every row
        assert con.execute("select count(*) from c360.touched_people").fetchone()[0] == len(set(PEOPLE.values()))


def test_a_linking_database_finds_parts_again_only_in_changed_stitch_clusters(tiny_copy, tmp_path):
    """A deterministic database's unified_records is incremental: a record whose content,
    Stitch cluster or component changed, a Stitch cluster gone and a new link are found again,
    a cluster nothing touched keeps its rows (a mark on one stays), and every row then equals
    a full rebuild's."""
    import yaml

    doc = yaml.safe_load(tiny_copy.read_text())
    doc["databases"] = {"ops_c360": {"stitch_mode": "deterministic"}}
    tiny_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load_config(tiny_copy)
    seed(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        # P1's c1 and c2 linked; the rest parts of their own
        con.execute("create schema ops_c360")
        con.execute("create table ops_c360.record_components as select * from (values "
                    "('shop_customers|c1', 'shop_customers|c1'), ('shop_customers|c2', 'shop_customers|c1')) "
                    "v(record_key, component)")
    prepare_manifest(cfg)
    dbt(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        assert con.execute("select count(distinct cdp_id) from ops_c360.unified_records "
                           "where stitch_cdp_id = 'P1'").fetchone()[0] == 1
        # a mark on P5's record, which nothing changes; built_records is told of it, so the
        # merged models do not take it for a change of their own
        con.execute("update ops_c360.unified_records set cdp_id = 'MARK' where pk = 'c6'")
        con.execute("""update ops_c360.built_records set cdp_id = 'MARK', digest = (
                         select hash(r) from ops_c360.unified_records r where pk = 'c6')
                       where record_key = 'shop_customers|c6'""")
        change(con)  # c1's email; c2 moves to P3 (with c4); P2 (c3) is gone
        # c2's link to c1 goes; c2 and c4 are linked in P3
        con.execute("delete from ops_c360.record_components")
        con.execute("insert into ops_c360.record_components values ('shop_customers|c2', 'shop_customers|c2'), "
                    "('shop_customers|c4', 'shop_customers|c2')")
    dbt(cfg)
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        rows = dict(con.execute("select pk, cdp_id from ops_c360.unified_records").fetchall())
        assert rows["c6"] == "MARK" and "c3" not in rows
        assert rows["c2"] == rows["c4"] == "P3"
        assert con.execute("select email from ops_c360.unified_records where pk = 'c1'").fetchone()[0] == \
            "ann.new@example.com"
        con.execute("update ops_c360.unified_records set cdp_id = 'P5' where pk = 'c6'")
    full = tmp_path / "full"
    full.mkdir()
    shutil.copy(cfg.warehouse_path, full / "warehouse.duckdb")
    shutil.copy(cfg.config_path, full / "tenant.yaml")
    for f in cfg.config_path.parent.glob("*.csv"):
        shutil.copy(f, full / f.name)
    full_cfg = load_config(full / "tenant.yaml")
    prepare_manifest(full_cfg)
    dbt(full_cfg, "--full-refresh")
    tables = ["ops_c360.unified_records", "ops_c360.merged_customers", "ops_c360.customer_360"]
    with duckdb.connect(str(cfg.warehouse_path)) as con:
        con.execute(f"attach '{full / 'warehouse.duckdb'}' as full_build (read_only)")
        assert {t: differences(con, t) for t in tables} == {t: 0 for t in tables}
