"""Custom attributes: columns without a built-in tag kept with a type (`attributes:`), end to end
through `cdp run` (real Splink, real dbt, real DuckDB) on the session's generated demo data with
columns added to two of its files - parsed by type (bad values nulled and counted), merged by
the same rules across sources in every customer 360 database, usable in segments and returned
by the Profile API; columns neither tagged nor kept are listed in the domain asset's metadata
and by `cdp check-config`. And the config errors: a type conflict, a bad name, a rule or a
segment on an attribute no source keeps.
"""

import copy
import csv
import io

import duckdb
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from cdp.stages.sources import standardize as std
from cdp.cli import main
from cdp.config import ConfigError, load_config

KEY = "7c1e9a4f2b8d6035e1f4a7c9b2d8e6f03a5c7e9b1d3f5a7c"   # strong: weak keys are refused
TIERS = ["gold", "silver", "bronze", ""]


def pos_extra(line: int) -> dict:
    """Columns added to pos_customers.csv, by the line a record starts on."""
    return {"Tier": TIERS[line % 4], "Points": "lots" if line % 50 == 0 else str(line * 10),
            "Vip": ["yes", "N", "", "maybe"][line % 4], "Notes": "called twice"}


def ecom_extra(line: int) -> dict:
    return {"loyalty_tier": TIERS[(line + 1) % 4].upper(), "points_balance": f"{line * 7:,}",
            "member_since": "31/31/2020" if line % 40 == 0 else f"2021-{line % 12 + 1:02d}-01",
            "internal_flag": "1"}


def with_columns(path, out, extra) -> None:
    """A copy of a demo CSV with columns added (broken lines keep their extra fields: still
    quarantined for their own reason)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    names = list(extra(2))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(rows[0] + names)
        for line, row in enumerate(rows[1:], start=2):  # the demo files have no multi-line records
            w.writerow(row + [extra(line)[n] for n in names])


def tenant_doc(demo_tenant, root) -> dict:
    demo = yaml.safe_load(demo_tenant.read_text())
    data = demo_tenant.parent / "data"
    with_columns(data / "pos_customers.csv", root / "pos_customers.csv", pos_extra)
    with_columns(data / "ecommerce_customers.csv", root / "ecommerce_customers.csv", ecom_extra)
    pos = {**demo["sources"]["pos_customers"], "path": "pos_customers.csv",
           "attributes": {"Tier": {"name": "loyalty_tier", "type": "string"}, "Points": "integer",
                          "Vip": "boolean"}}
    ecom = {**demo["sources"]["ecommerce_customers"], "path": "ecommerce_customers.csv",
            "attributes": {"loyalty_tier": "string",                       # name from the column
                           "points_balance": {"name": "points", "type": "integer"},
                           "member_since": "date"}}
    return {"tenant": "attrs", "sources": {"pos_customers": pos, "ecommerce_customers": ecom},
            "stitch": demo["stitch"],
            "merge": {"fields": {"attr_points": {"rule": "max"}}},         # loyalty_tier: the default
            "databases": {"ops": {"stitch_mode": "deterministic",
                                  "merge": {"fields": {"attr_points": {"rule": "min"}}}}},
            "segments": {"big_points": {"column": "attr_points", "op": ">=", "value": 1500},
                         "gold_vips": {"all": [{"column": "attr_loyalty_tier", "op": "in",
                                                "value": ["gold", "GOLD"]},
                                               {"column": "attr_vip", "op": "=", "value": True}]}}}


def write(root, doc) -> str:
    path = root / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def attrs(demo_tenant, tmp_path_factory):
    """The attributes tenant, run on a Dagster instance of its own: its customer 360 models (with
    other attributes than the demo's) must not become the latest materializations of the demo's
    asset keys in the session's instance, which tests/test_databases.py reads for staleness."""
    import dagster as dg

    from cdp.cli import run_tenant

    root = tmp_path_factory.mktemp("attrs")
    config = write(root, tenant_doc(demo_tenant, root))
    with pytest.MonkeyPatch.context() as env:  # run_tenant points $CDP_CONFIG at its tenant
        env.delenv("CDP_CONFIG", raising=False)
        env.delenv("CDP_WAREHOUSE", raising=False)
        result = run_tenant(str(config), quiet=True, instance=dg.DagsterInstance.ephemeral())
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    cfg = load_config(config)
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    yield cfg, result, con
    con.close()


def _metadata(result, key: str) -> dict:
    return {k: v.value for m in result.get_asset_materialization_events()
            if m.asset_key.to_user_string() == key for k, v in m.materialization.metadata.items()}


@pytest.mark.slow
def test_attribute_values_are_parsed_by_type_and_bad_ones_counted(attrs):
    _, result, con = attrs
    types = dict(con.execute("select column_name, data_type from duckdb_columns() where schema_name = 'domain' "
                             "and table_name = 'pos_customers'").fetchall())
    # every customer table carries every attribute (they union), typed even where always null
    assert {c: types[c] for c in ("attr_loyalty_tier", "attr_points", "attr_vip", "attr_member_since")} == {
        "attr_loyalty_tier": "VARCHAR", "attr_points": "BIGINT", "attr_vip": "BOOLEAN",
        "attr_member_since": "DATE"}
    pos = con.execute("select source_row, attr_loyalty_tier, attr_points, attr_vip, attr_member_since "
                      "from domain.pos_customers").df()
    for row in pos.itertuples():
        extra = pos_extra(row.source_row)
        assert (row.attr_loyalty_tier if pd.notna(row.attr_loyalty_tier) else "") == extra["Tier"]
        assert (None if pd.isna(row.attr_points) else row.attr_points) == (
            None if extra["Points"] == "lots" else int(extra["Points"]))
        assert (None if pd.isna(row.attr_vip) else bool(row.attr_vip)) == {"yes": True, "N": False}.get(extra["Vip"])
        assert pd.isna(row.attr_member_since)
    meta = _metadata(result, "domain/pos_customers")
    nulled = meta["invalid_values_nulled"]
    assert nulled["attr_points"] == sum(pos_extra(r)["Points"] == "lots" for r in pos.source_row) > 0
    assert nulled["attr_vip"] == sum(pos_extra(r)["Vip"] == "maybe" for r in pos.source_row) > 0
    assert "attr_loyalty_tier" not in nulled
    assert meta["columns_ignored"] == ["Notes"]
    assert meta["rows_read"] == meta["dagster/row_count"] + meta["rows_quarantined"]

    ecom = con.execute("select source_row, attr_points, attr_member_since from domain.ecommerce_customers").df()
    assert ecom.attr_points.tolist() == [r * 7 for r in ecom.source_row]  # '1,234' is a number
    bad_dates = sum(r % 40 == 0 for r in ecom.source_row)
    assert ecom.attr_member_since.isna().sum() == bad_dates > 0
    meta = _metadata(result, "domain/ecommerce_customers")
    assert meta["invalid_values_nulled"]["attr_member_since"] == bad_dates
    assert meta["columns_ignored"] == ["internal_flag"]


def _expected(con, db: str) -> pd.DataFrame:
    """Each person's records of a database (its unified_records), for merging by hand."""
    return con.execute(f"select cdp_id, source, pk, created_at, updated_at, attr_loyalty_tier, attr_points "
                       f"from {db}.unified_records").df()


def _most_recent(records: pd.DataFrame, field: str) -> dict:
    """most_recent: the latest update (then create) timestamp among records with a value; ties
    on (source, pk)."""
    have = records[records[field].notna()].sort_values(
        ["updated_at", "created_at", "source", "pk"], ascending=[False, False, True, True], na_position="last")
    return have.groupby("cdp_id")[field].first().to_dict()


@pytest.mark.slow
def test_attributes_merge_by_rule_across_sources_in_every_database(attrs):
    _, _, con = attrs
    for db, rule in (("c360", "max"), ("ops", "min")):
        records = _expected(con, db)
        c360 = con.execute(f"select cdp_id, attr_loyalty_tier, attr_points, attr_vip, attr_member_since "
                           f"from {db}.customer_360").df().set_index("cdp_id")
        picked = getattr(records.groupby("cdp_id")["attr_points"], rule)().dropna().astype(int).to_dict()
        assert c360.attr_points.dropna().astype(int).to_dict() == picked
        assert c360.attr_loyalty_tier.dropna().to_dict() == _most_recent(records, "attr_loyalty_tier")
        both = records.groupby("cdp_id")["source"].nunique()
        # an attribute of two sources merges across them: people with records in both get one value
        assert (both == 2).sum() > 10 and c360.loc[both[both == 2].index, "attr_points"].notna().all()
        why = con.execute(f"select rule, count(*) from {db}.merged_customers_provenance "
                          "where field = 'attr_points' group by rule").fetchall()
        assert why == [(rule, len(picked))]
        froms = con.execute(f"select count(*) from {db}.merged_customers m join {db}.unified_records r "
                            "on r.source || '|' || r.pk = m.attr_points__from "
                            "where r.attr_points = m.attr_points").fetchone()[0]
        assert froms == len(picked)


@pytest.mark.slow
def test_a_segment_on_attributes_returns_the_right_people(attrs):
    _, _, con = attrs
    members = {r[0] for r in con.execute("select cdp_id from activation.segment_big_points").fetchall()}
    expected = {r[0] for r in con.execute("select cdp_id from c360.customer_360 where attr_points >= 1500").fetchall()}
    assert members == expected and 0 < len(members) < con.execute("select count(*) from c360.customer_360").fetchone()[0]
    gold = {r[0] for r in con.execute("select cdp_id from activation.segment_gold_vips").fetchall()}
    assert gold == {r[0] for r in con.execute("select cdp_id from c360.customer_360 where attr_vip "
                                              "and attr_loyalty_tier in ('gold', 'GOLD')").fetchall()}
    assert gold


@pytest.mark.slow
def test_the_profile_api_returns_attributes(attrs):
    from cdp.serve.api import create_app

    cfg, _, con = attrs
    cdp_id, tier, points, since = con.execute(
        "select cdp_id, attr_loyalty_tier, attr_points, attr_member_since from c360.customer_360 "
        "where attr_loyalty_tier is not null and attr_member_since is not null and attr_points is not null "
        "order by cdp_id limit 1").fetchone()
    client = TestClient(create_app(cfg, api_key=KEY))
    r = client.get(f"/profiles/{cdp_id}", headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    customer = r.json()["customer"]
    assert (customer["attr_loyalty_tier"], customer["attr_points"], customer["attr_member_since"]) == (
        tier, points, since.isoformat())
    assert "big_points" in r.json()["segments"] or points < 1500


@pytest.mark.slow
def test_check_config_lists_columns_neither_tagged_nor_kept(attrs, capsys):
    cfg, _, _ = attrs
    assert main(["check-config", str(cfg.config_path)]) == 0
    out = capsys.readouterr().out
    assert (f"{cfg.config_path}: sources.pos_customers: pos_customers.csv has columns neither tagged nor kept "
            "as attributes, which are not loaded: Notes (warning)") in out
    assert "which are not loaded: internal_flag (warning)" in out
    # a value that mostly fails its type is a warning on the attribute, like a tagged column's
    doc = yaml.safe_load(cfg.config_path.read_text())
    doc["sources"]["pos_customers"]["attributes"]["Tier"] = "date"
    doc["segments"] = {}
    bad = cfg.config_path.parent / "bad_type.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert main(["check-config", str(bad)]) == 0
    assert (f"{bad}: sources.pos_customers.attributes.Tier: " in (out := capsys.readouterr().out)
            and "sampled values are not a valid date and would be nulled (warning)" in out)


def _error(tmp_path, doc) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, doc))
    return str(exc.value)


def test_config_errors_name_file_and_field(demo_tenant, tmp_path):
    doc = tenant_doc(demo_tenant, tmp_path)
    path = tmp_path / "tenant.yaml"
    conflict = copy.deepcopy(doc)
    conflict["sources"]["ecommerce_customers"]["attributes"]["points_balance"]["type"] = "number"
    assert (f"{path}: sources.ecommerce_customers.attributes.points_balance: attribute 'points' is type number "
            "here but integer in sources.pos_customers.attributes.Points") in _error(tmp_path, conflict)

    named = copy.deepcopy(doc)
    named["sources"]["pos_customers"]["attributes"]["Tier"]["name"] = "Loyalty Tier"
    assert f"{path}: sources.pos_customers.attributes.Tier.name: 'Loyalty Tier' is not an attribute name" \
        in _error(tmp_path, named)

    tagged = copy.deepcopy(doc)
    tagged["sources"]["pos_customers"]["attributes"]["Email"] = "string"
    assert "sources.pos_customers.attributes.Email: the column is already tagged as 'email'" in _error(tmp_path, tagged)

    rule = copy.deepcopy(doc)
    rule["databases"]["ops"]["merge"]["fields"]["attr_shoe_size"] = {"rule": "max"}
    assert (f"{path}: databases.ops.merge.fields.attr_shoe_size: no customers source keeps an attribute "
            "'shoe_size' (attributes: attr_loyalty_tier, attr_member_since, attr_points, attr_vip)") \
        in _error(tmp_path, rule)

    segment = copy.deepcopy(doc)
    segment["segments"]["shoes"] = {"column": "attr_shoe_size", "op": ">", "value": 40}
    assert (f"{path}: segments.shoes.column: column 'attr_shoe_size' of c360.customer_360 is not a custom "
            "attribute of this tenant") in _error(tmp_path, segment)

    orders = copy.deepcopy(doc)
    orders["sources"]["orders"] = {"path": "o.csv", "kind": "transactions", "customer_source": "pos_customers",
                                   "columns": {"a": "order-id", "b": "customer-pk", "c": "order-datetime",
                                               "d": "order-revenue"}, "attributes": {"e": "string"}}
    assert "sources.orders.attributes.e: custom attributes are kept for customers sources only" \
        in _error(tmp_path, orders)


def test_attribute_types_parse_as_documented():
    values, bad = std.attribute_values(pd.Series(["3", "2.5", "1,200", "x", None]), "integer")
    assert values.tolist() == [3, pd.NA, 1200, pd.NA, pd.NA] and bad.tolist() == [False, True, False, True, False]
    values, bad = std.attribute_values(pd.Series(["Yes", "f", "0", "maybe", " "]), "boolean")
    assert values.tolist() == [True, False, False, pd.NA, pd.NA] and bad.tolist() == [False, False, False, True, False]
    values, bad = std.attribute_values(pd.Series(["2024-03-01T10:00:00Z", "soon"]), "timestamp")
    assert str(values[0]) == "2024-03-01 10:00:00" and bad.tolist() == [False, True]
    values, bad = std.attribute_values(pd.Series(["$1,234.50", "n/a"]), "number")
    assert values[0] == 1234.5 and pd.isna(values[1]) and not bad.any()


def test_the_demo_keeps_its_loyalty_tier(pipeline_run, warehouse):
    """The demo tenant keeps the loyalty programme's tier column (README: the demo)."""
    tiers = dict(warehouse.execute("select attr_loyalty_tier, count(*) from c360.customer_360 "
                                   "group by 1").fetchall())
    assert set(tiers) == {"gold", "silver", "bronze", None} and tiers["gold"] > 0
    members = warehouse.execute("select count(*) from domain.loyalty_members").fetchone()[0]
    assert sum(v for k, v in tiers.items() if k) <= members
