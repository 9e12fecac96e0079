"""Segments: conditions, all/any/not algebra and segment references on tiny hand-made tables;
identifiers checked against the catalog, values bound (injection attempts find nobody)."""

import dagster as dg
import duckdb
import pytest

from cdp.config import ConfigError, TenantConfig, load_config
from cdp.stages.activation.segments import SegmentError, compile_segment, materialize_segment, preview_segment

# with orders and order lines: segments may read the predictive tables
SOURCES = {"shop": {"path": "x.csv", "kind": "customers", "columns": {"id": "pk"}},
           "orders": {"path": "o.csv", "kind": "transactions", "customer_source": "shop",
                      "columns": {"id": "order-id", "customer": "customer-pk", "at": "order-datetime",
                                  "total": "order-revenue"}},
           "lines": {"path": "l.csv", "kind": "transaction_items",
                     "columns": {"order": "order-id", "sku": "product-id", "qty": "item-quantity",
                                 "total": "item-revenue"}}}


def tenant(segments: dict) -> TenantConfig:
    return TenantConfig.model_validate({"tenant": "t", "sources": SOURCES, "segments": segments})


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("create schema c360; create schema predictive")
    con.execute("""create table c360.customer_360 as select * from (values
        ('P1', 'ann@example.com', 'IL', 5, ['pos', 'web']),
        ('P2', 'bob@example.com', 'NY', 1, ['web']),
        ('P3', null,              'IL', 0, ['pos']),
        ('P4', 'dee@gmail.com',   null, 9, ['loyalty'])) t(cdp_id, email, state, order_count, sources)""")
    con.execute("create table c360.stores as select 'S1' as store_id")
    con.execute("""create table predictive.product_category_propensity as select * from (values
        ('P1', 'Bakery', 0.80), ('P1', 'Snacks', 0.50),
        ('P2', 'Bakery', 0.70), ('P2', 'Snacks', 0.90),
        ('P3', 'Bakery', 0.95), ('P3', 'Snacks', 0.40),
        ('P4', 'Bakery', 0.10), ('P4', 'Snacks', 0.60)) t(cdp_id, product_category, propensity)""")
    yield con
    con.close()


def members(cfg, name, con):
    compiled = compile_segment(cfg, name, con)
    return [r[0] for r in con.execute(compiled.sql, compiled.params).fetchall()]


BAKERY = {"table": "predictive.product_category_propensity", "where": {"product_category": "Bakery"},
          "column": "propensity", "op": ">=", "value": 0.66}
SNACKS_MID = {"table": "predictive.product_category_propensity", "where": {"product_category": "Snacks"},
              "column": "propensity", "op": "between", "value": [0.33, 0.66]}


def test_the_issue_example_propensities_and_not(con):
    cfg = tenant({"reachable": {"column": "email", "op": "not_null"},
                  "bakery_fans": {"all": [BAKERY, SNACKS_MID, {"segment": "reachable"}]}})
    # P1: bakery .80, snacks .50, has email; P2 snacks too high; P3 no email; P4 bakery too low
    assert members(cfg, "bakery_fans", con) == ["P1"]


@pytest.mark.parametrize("rule,expected", [
    ({"column": "state", "op": "=", "value": "IL"}, ["P1", "P3"]),
    ({"column": "state", "op": "!=", "value": "IL"}, ["P2"]),          # null state is not "!= IL"
    ({"column": "order_count", "op": ">", "value": 1}, ["P1", "P4"]),
    ({"column": "order_count", "op": "<=", "value": 1}, ["P2", "P3"]),
    ({"column": "order_count", "op": "between", "value": [1, 5]}, ["P1", "P2"]),
    ({"column": "state", "op": "in", "value": ["NY", "CA"]}, ["P2"]),
    ({"column": "state", "op": "is_null"}, ["P4"]),
    ({"column": "email", "op": "contains", "value": "GMAIL"}, ["P4"]),
    ({"column": "sources", "op": "contains", "value": "pos"}, ["P1", "P3"]),
    ({"any": [{"column": "state", "op": "=", "value": "NY"}, {"column": "order_count", "op": ">", "value": 8}]},
     ["P2", "P4"]),
    ({"not": {"column": "state", "op": "=", "value": "IL"}}, ["P2", "P4"]),  # unknown state is "not IL"
    ({"all": [{"not": {"segment": "il"}}, {"not": {"column": "email", "op": "is_null"}}]}, ["P2", "P4"]),
])
def test_ops_and_algebra(con, rule, expected):
    cfg = tenant({"il": {"column": "state", "op": "=", "value": "IL"}, "s": rule})
    assert members(cfg, "s", con) == expected


def test_algebra_laws_hold(con):
    a = {"column": "state", "op": "=", "value": "IL"}
    b = {"column": "order_count", "op": ">=", "value": 5}
    cfg = tenant({"a": a, "b": b,
                  "not_a_or_b": {"not": {"any": [{"segment": "a"}, {"segment": "b"}]}},
                  "not_a_and_not_b": {"all": [{"not": {"segment": "a"}}, {"not": {"segment": "b"}}]},
                  "a_or_not_a": {"any": [{"segment": "a"}, {"not": {"segment": "a"}}]}})
    assert members(cfg, "not_a_or_b", con) == members(cfg, "not_a_and_not_b", con) == ["P2"]
    assert members(cfg, "a_or_not_a", con) == ["P1", "P2", "P3", "P4"]  # everyone, nulls included


@pytest.mark.parametrize("rule,message", [
    ({"column": "email; drop table c360.customer_360; --", "op": "not_null"}, "is not in c360.customer_360"),
    ({"table": "c360.customer_360 c; drop table x", "column": "email", "op": "not_null"}, "not in the warehouse"),
    ({"table": "predictive.product_category_propensity", "column": "propensity", "op": ">", "value": 0,
      "where": {"1=1 or product_category": "x"}}, "is not in"),
    ({"table": "information_schema.tables", "column": "table_name", "op": "not_null"}, "not in the warehouse"),
    ({"table": "c360.stores", "column": "store_id", "op": "not_null"}, "no cdp_id"),
])
def test_identifiers_must_be_in_the_catalog(con, rule, message):
    cfg = tenant({"s": rule})
    with pytest.raises(SegmentError, match=message):
        compile_segment(cfg, "s", con)
    assert con.execute("select count(*) from c360.customer_360").fetchone()[0] == 4


def test_values_are_bound_not_spliced(con):
    cfg = tenant({"s": {"column": "state", "op": "=", "value": "IL' or '1'='1"}})
    compiled = compile_segment(cfg, "s", con)
    assert "or '1'='1" not in compiled.sql and compiled.params == ["IL' or '1'='1"]
    assert members(cfg, "s", con) == []


@pytest.mark.parametrize("segments,message", [
    ({"a": {"segment": "b"}, "b": {"all": [{"not": {"segment": "a"}}]}}, "cycle: a -> b -> a"),
    ({"a": {"segment": "nope"}}, "not defined"),
    ({"a": {"column": "state", "op": "between", "value": 3}}, "between needs value"),
    ({"a": {"column": "state", "op": "like", "value": "x"}}, "Input should be"),
    ({"a": {"column": "state", "op": "=", "value": "x", "segment": "b"}, "b": {"column": "state", "op": "is_null"}},
     "exactly one of"),
])
def test_bad_segment_config_is_refused_with_the_field(tmp_path, segments, message):
    import yaml

    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump({"tenant": "t", "sources": SOURCES, "segments": segments}))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "segments." in str(err.value)


def test_materialize_keeps_member_counts_over_time(con):
    cfg = tenant({"il": {"column": "state", "op": "=", "value": "IL"}})
    assert materialize_segment(cfg, "il", con, "run1") == 2
    con.execute("update c360.customer_360 set state = 'IL' where cdp_id = 'P4'")
    assert materialize_segment(cfg, "il", con, "run2") == 3
    assert con.execute("select cdp_id from activation.segment_il order by 1").fetchall() == \
        [("P1",), ("P3",), ("P4",)]
    assert con.execute("select run_id, members from activation.segment_counts order by computed_at").fetchall() \
        == [("run1", 2), ("run2", 3)]
    count, sample = preview_segment(cfg, "il", con, sample=2)
    assert count == 3 and list(sample["cdp_id"]) == ["P1", "P3"]


def test_demo_segments_are_built_and_profiles_list_them(pipeline_run, demo_tenant, warehouse, capsys):
    import json

    from cdp.serve.api import ProfileStore
    from cdp.cli import main as cdp

    counts = dict(warehouse.execute("select segment, members from activation.segment_counts").fetchall())
    assert set(counts) == {"reachable_by_email", "bakery_fans", "lapsing_high_value"}
    reachable = warehouse.execute("select count(*) from c360.customer_360 where email is not null").fetchone()[0]
    assert counts["reachable_by_email"] == reachable > 0
    assert counts["bakery_fans"] <= counts["reachable_by_email"]

    member = warehouse.execute("select min(cdp_id) from activation.segment_reachable_by_email").fetchone()[0]
    profile = json.loads(ProfileStore(demo_tenant.parent / "profile_store.sqlite").profile(member))
    assert "reachable_by_email" in profile["segments"]

    assert cdp(["segment", "preview", "reachable_by_email", "--config", str(demo_tenant)]) == 0
    assert f"segment reachable_by_email: {reachable:,} members" in capsys.readouterr().out
    assert cdp(["segment", "preview", "nope", "--config", str(demo_tenant)]) == 2


def test_a_bad_segment_is_left_out_alone(tmp_path, con):
    """Segments are read from the YAML when they are built, each validated and built on its
    own: the good ones are built; the others are recorded with why, and so are the ones that
    refer to them."""
    import yaml

    from cdp.stages.activation.segments import build_segments, segment_status

    path = tmp_path / "tenant.yaml"
    doc = {"tenant": "t", "sources": SOURCES, "segments": {"il": {"column": "state", "op": "=", "value": "IL"}}}
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    doc["segments"].update({
        "gone": {"column": "no_such_column", "op": "not_null"},            # the warehouse has no such column
        "typo": {"column": "state", "op": "like", "value": "I%"},          # no longer validates
        "il_gone": {"all": [{"segment": "il"}, {"segment": "gone"}]},      # refers to a broken one
        "wrong_type": {"column": "order_count", "op": ">", "value": "many"},  # the database refuses it
        "added": {"column": "email", "op": "not_null"}})                   # saved after the load
    path.write_text(yaml.safe_dump(doc))
    outcomes = build_segments(cfg, con, "run-1")
    assert {n: o.members for n, o in outcomes.items() if o.built} == {"il": 2, "added": 3}
    errors = {n: o.error for n, o in outcomes.items() if not o.built}
    assert "column 'no_such_column' is not in c360.customer_360" in errors["gone"]
    assert errors["typo"].startswith("segments.typo.op: Input should be")
    assert errors["wrong_type"].startswith("segments.wrong_type: ConversionException")
    assert errors["il_gone"].startswith("segments.il_gone: refers to segment 'gone', which is left out")
    status = segment_status(con)
    assert {n for n, o in status.items() if o.built} == {"il", "added"} and status["gone"].error == errors["gone"]
    assert con.execute("select segment from activation.segment_counts order by 1").fetchall() == [("added",), ("il",)]


def test_a_saved_segment_is_built_without_reload_and_a_broken_one_fails_alone(pipeline_run, demo_tenant,
                                                                             dagster_instance):
    """With the definitions loaded before the save (as a running `dagster dev`'s are), the next
    run builds a segment saved in the workspace; a broken one is left out, the check names it,
    and the profile store still refreshes with the others and says which was left out."""
    import json

    from cdp.serve.api import ProfileStore
    from cdp.serve.workspace.builder import save_segment

    defs = pipeline_run.defs
    original = demo_tenant.read_text()
    cfg = load_config(demo_tenant)
    keys = [dg.AssetKey(["activation", "segments"]), dg.AssetKey(["activation", "profile_store"])]
    try:
        cfg = save_segment(cfg, "gmail_users", {"column": "email", "op": "contains", "value": "gmail"})
        save_segment(cfg, "broken", {"column": "loyalty_points_v2", "op": ">", "value": 10})
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance, asset_selection=keys, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        mats = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
        assert set(mats) == {"segments", "profile_store"}
        assert mats["segments"]["members/gmail_users"].value > 0
        assert "loyalty_points_v2" in mats["segments"]["left_out"].value["broken"]
        check = result.get_asset_check_evaluations()[0]
        assert check.check_name == "every_segment_built" and not check.passed
        assert list(mats["profile_store"]["segments_left_out"].value) == ["broken"]
        assert "gmail_users" in mats["profile_store"]["segments_served"].value

        with duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"), read_only=True) as con:
            member = con.execute("select min(cdp_id) from activation.segment_gmail_users").fetchone()[0]
        profile = json.loads(ProfileStore(demo_tenant.parent / "profile_store.sqlite").profile(member))
        assert "gmail_users" in profile["segments"] and "broken" not in profile["segments"]
    finally:
        demo_tenant.write_text(original)
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance, asset_selection=keys).success
