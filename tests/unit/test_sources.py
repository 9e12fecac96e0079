"""Domain tables: standardisation, and quarantine that accounts for every input row."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import yaml
from dagster_duckdb import DuckDBResource

from cdp.stages.sources import standardize as std
from cdp.config import load_config
from cdp.stages import sources

CUSTOMERS_CSV = """\
id,first,last,email,phone,zip,state,dob,updated
C1,  ROBERT ,smith , Bob.Smith@Example.COM ,(415) 555-0132,2139,Massachusetts,04/07/1980,2024-01-02 10:00:00
C2,Ann,O'brien,not-an-email,12,94105-1234,ca,1975-12-31,2024-02-03T04:05:06Z
,No,Key,nokey@example.com,,,,,
C1,Dup,Licate,dup@example.com,,,,,
C3,Too,Many,fields@example.com,,,,,,extra
C4,Bad,Date,bad@example.com,,,,13/45/19xx,
"""

ORDERS_CSV = """\
order_id,customer_id,ts,total
O1,C1,2024-03-01 12:00:00,10.50
O2,C1,2024-03-02 12:00:00,ten
O3,,2024-03-03 12:00:00,5
O4,C2,yesterday,5
O1,C2,2024-03-04 12:00:00,7
"""


def tenant(tmp_path: Path) -> Path:
    (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV)
    (tmp_path / "orders.csv").write_text(ORDERS_CSV)
    doc = {
        "tenant": "t",
        "sources": {
            "crm": {"path": "customers.csv", "kind": "customers", "columns": {
                "id": "pk", "first": "given-name", "last": "surname", "email": "email",
                "phone": "phone", "zip": "postal", "state": "state", "dob": "birthdate",
                "updated": "update-datetime"}},
            "shop_orders": {"path": "orders.csv", "kind": "transactions", "customer_source": "crm",
                            "columns": {"order_id": "order-id", "customer_id": "customer-pk",
                                        "ts": "order-datetime", "total": "order-revenue"}},
        },
    }
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_standardisers():
    s = pd.Series([" Bob.Smith@Example.COM ", "bad@", None, "  "])
    assert std.email(s).tolist() == ["bob.smith@example.com", None, None, None]
    assert std.phone(pd.Series(["(415) 555-0132", "+1 415.555.0132", "000", ""])).tolist() == [
        "+14155550132", "+14155550132", None, None]
    # postcodes follow the record's country, US by default: a GB postcode is no US ZIP
    assert std.postal(pd.Series(["2139", "94105-1234", "941051234", "SW1A 1AA"])).tolist() == [
        "02139", "94105", "94105", None]
    assert std.postal(pd.Series(["SW1A 1AA"]), "GB").tolist() == ["SW1A 1AA"]
    assert std.state(pd.Series(["Massachusetts", "ca", None])).tolist() == ["MA", "CA", None]
    assert std.name(pd.Series(["  o'brien ", "SMITH-JONES"])).tolist() == ["O'Brien", "Smith-Jones"]
    assert std.address(pd.Series(["12 Oak Street, Apt. 4"])).tolist() == ["12 oak st apt 4"]
    dates, bad = std.parse_dates(pd.Series(["04/07/1980", "1975-12-31", "13/45/19xx", None]))
    assert [str(d.date()) if pd.notna(d) else None for d in dates] == [
        "1980-04-07", "1975-12-31", None, None]
    assert bad.tolist() == [False, False, True, False]


def test_domain_assets_quarantine_and_account_for_every_row(tmp_path):
    cfg = load_config(tenant(tmp_path))
    stage = sources.definitions(cfg)
    assets, checks = list(stage.assets), list(stage.asset_checks)
    warehouse = tmp_path / "wh.duckdb"
    result = dg.materialize([*assets, *checks], resources={"warehouse": DuckDBResource(database=str(warehouse))})
    assert result.success
    for check in result.get_asset_check_evaluations():
        assert check.passed, check

    con = duckdb.connect(str(warehouse), read_only=True)
    crm = con.execute("select * from domain.crm order by pk").df()
    assert crm["pk"].tolist() == ["C1", "C2", "C4"]
    c1 = crm.iloc[0]
    assert (c1.given_name, c1.surname, c1.email, c1.phone, c1.postal, c1.state) == (
        "Robert", "Smith", "bob.smith@example.com", "+14155550132", "02139", "MA")
    assert str(c1.birthdate)[:10] == "1980-04-07"
    c2 = crm.iloc[1]
    assert pd.isna(c2.email) and pd.isna(c2.phone) and c2.postal == "94105" and c2.state == "CA"
    assert pd.isna(crm.iloc[2].birthdate)  # unparseable date is nulled and counted, row kept

    q = con.execute("select source, source_row, raw_row, reason from domain.quarantine "
                    "order by source, source_row").df()
    crm_q = q[q.source == "crm"]
    assert crm_q["reason"].tolist() == [
        "missing pk", "duplicate pk (first seen at line 2)", "expected 9 fields, found 10"]
    assert json.loads(crm_q.iloc[1]["raw_row"])["first"] == "Dup"
    orders_q = q[q.source == "shop_orders"]
    reasons = orders_q["reason"].tolist()
    assert reasons[0] == "invalid order_revenue: ten"
    assert reasons[1] == "missing customer pk"
    assert reasons[2] == "invalid order_datetime: yesterday"
    assert reasons[3] == "duplicate order id (first seen at line 2)"
    assert con.execute("select count(*) from domain.shop_orders").fetchone()[0] == 1

    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["domain/crm"].materialization.metadata
    assert meta["rows_read"].value == 6 and meta["rows_quarantined"].value == 3
    assert meta["invalid_values_nulled"].value == {"email": 1, "phone": 1, "birthdate": 1}


def test_a_date_with_an_impossible_year_is_unparseable_not_a_crash():
    """pseudopeople's noise writes birth dates like 9932-01-06: pandas 3 parses them at second
    resolution, which overflowed the nanosecond column; they are counted as invalid instead."""
    import pandas as pd

    from cdp.stages.sources import standardize as std

    dates, bad = std.parse_dates(pd.Series(["9932-01-06", "1990-02-03", "07/71/1958", "19800101", None]))
    assert [str(d.date()) if pd.notna(d) else None for d in dates] == [None, "1990-02-03", None, "1980-01-01", None]
    assert list(bad) == [True, False, True, False, False]


def test_timestamps_are_microseconds_whatever_pandas_defaults_to():
    """pandas 2 parses to nanoseconds, pandas 3 to microseconds; a nanosecond column becomes a
    DuckDB TIMESTAMP_NS, which Spark refuses in Parquet and BI Connect publishes as text."""
    import pandas as pd

    from cdp.stages.sources import standardize as std

    parsed, bad = std.parse_datetimes(pd.Series(["2025-01-10T10:00:00Z", "2020-02-03", "9999-01-01 00:00:00"]))
    assert str(parsed.dtype) == "datetime64[us]"
    assert list(bad) == [False, False, True]
