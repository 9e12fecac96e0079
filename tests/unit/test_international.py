"""International records: phones, postcodes, states, street lines and countries standardised by
the rules of each record's country (its own, its source's or the tenant's), unit by unit and
through the Dagster source assets into the domain tables."""

import pickle

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from cdp.stages.sources import standardize as std
from cdp.config import ConfigError, load_config
from cdp.stages import sources

S = pd.Series


# ---- standardisers ------------------------------------------------------------------------------

def test_countries_from_codes_and_names():
    values = ["Australia", "AUS", "au", "Deutschland", "Germany", "UK", "U.K.", "Great Britain",
              "United States of America", "usa", "Canada", "the Netherlands", "Narnia", "", None]
    assert std.country(S(values)).tolist() == [
        "AU", "AU", "AU", "DE", "DE", "GB", "GB", "GB", "US", "US", "CA", "NL", None, None, None]


def test_phones_are_read_in_the_records_country():
    raw = S(["02 1234 5678", "030 1234567", "+61 2 1234 5678", "0412 345 678", "12"])
    countries = S(["AU", "DE", "DE", "AU", "AU"])
    assert std.phone(raw, countries).tolist() == [
        "+61212345678", "+49301234567", "+61212345678", "+61412345678", None]
    # one country for all; the same digits differ by country; an unknown country reads only
    # +international numbers
    assert std.phone(S(["0049 89 123456"]), "DE").tolist() == ["+4989123456"]
    assert std.phone(S(["02 1234 5678"] * 2), S(["AU", "GB"])).tolist() == [
        "+61212345678", "+44212345678"]
    assert std.phone(S(["02 1234 5678", "+49 30 1234567"]), None).tolist() == [None, "+49301234567"]


def test_postcodes_keep_their_countrys_format():
    assert std.postal(S(["2000", "800", "20000", "2O00"]), "AU").tolist() == ["2000", "0800", None, None]
    assert std.postal(S(["1067", "01067", "D-80331", "123", "0123"]), "DE").tolist() == [
        "01067", "01067", "80331", None, None]
    assert std.postal(S(["sw1a1aa", "SW1A  1AA", "ec1a 1bb", "m1 1ae", "12345"]), "GB").tolist() == [
        "SW1A 1AA", "SW1A 1AA", "EC1A 1BB", "M1 1AE", None]
    assert std.postal(S(["k1a0b1", "K1A-0B1", "D1A 0B1"]), "CA").tolist() == ["K1A 0B1", "K1A 0B1", None]
    assert std.postal(S(["2139", "02139-4321", "941051234", "ABCDE"]), "US").tolist() == [
        "02139", "02139", "94105", None]
    # the same four digits: an Australian postcode, a US ZIP that lost its zero, an Austrian PLZ
    assert std.postal(S(["2000"] * 3), S(["AU", "US", "AT"])).tolist() == ["2000", "02000", "2000"]
    assert std.postal(S(["75008", "1012 ab"]), S(["FR", "NL"])).tolist() == ["75008", "1012 AB"]


def test_states_are_read_in_the_records_country():
    au = ["new south wales", "NSW", "Qld", "Vic.", "Tasmania", "W.A.", "AU-ACT", "Northern Territory",
          "Washington"]
    assert std.state(S(au), "AU").tolist() == ["NSW", "NSW", "QLD", "VIC", "TAS", "WA", "ACT", "NT", None]
    assert std.state(S(["wa", "Washington", "Massachusetts", "XX"]), "US").tolist() == ["WA", "WA", "MA", None]
    de = ["Baden-Württemberg", "Baden-Wuerttemberg", "Baden-Wurttemberg", "Bavaria", "Bayern",
          "Thüringen", "Thueringen", "NRW", "Lower Saxony", "Freistaat Sachsen", "Hessen", "Hesse"]
    assert std.state(S(de), "DE").tolist() == ["BW", "BW", "BW", "BY", "BY", "TH", "TH", "NW", "NI",
                                               "SN", "HE", "HE"]
    ca = ["Ontario", "Québec", "Quebec", "Que.", "Colombie-Britannique", "British Columbia",
          "Île-du-Prince-Édouard", "P.E.I.", "Terre-Neuve-et-Labrador", "Nunavut", "yukon"]
    assert std.state(S(ca), "CA").tolist() == ["ON", "QC", "QC", "QC", "BC", "BC", "PE", "PE", "NL",
                                               "NU", "YT"]
    # GB: the four nations to their codes; a county is kept as written
    assert std.state(S(["England", "Scotland", "Wales", "Cymru", "Northern Ireland", "Kent"]),
                     "GB").tolist() == ["ENG", "SCT", "WLS", "WLS", "NIR", "KENT"]
    # 'wa' per record: Western Australia, Washington
    assert std.state(S(["wa", "wa"]), S(["AU", "US"])).tolist() == ["WA", "WA"]


def test_street_lines_follow_the_countrys_language():
    de = ["Hauptstraße 5", "Hauptstrasse 5", "Hauptstr. 5", "Berliner Straße 12", "Große Str. 1",
          "Astrid-Lindgren-Weg 2"]
    assert std.address(S(de), "DE").tolist() == [
        "hauptstr 5", "hauptstr 5", "hauptstr 5", "berliner str 12", "grosse str 1",
        "astrid-lindgren-weg 2"]
    assert std.address(S(["12 George Street", "3 Smith St."]), "AU").tolist() == ["12 george st", "3 smith st"]
    # English abbreviations are not applied to a French street line (nor German ones to a US one)
    assert std.address(S(["12 Place de la Concorde", "5 Strasse Road"]), S(["FR", "US"])).tolist() == [
        "12 place de la concorde", "5 strasse rd"]


# ---- config -------------------------------------------------------------------------------------

def _config_with(path, **changes):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for where, value in changes.items():
        node = doc
        *parents, last = where.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    out = path.parent / "changed.yaml"
    out.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return out


def test_country_settings_and_their_defaults(intl_tenant):
    cfg = load_config(intl_tenant)
    assert cfg.country == "AU" and cfg.bi.holiday_country == "AU"
    assert {n: s.default_country for n, s in cfg.sources.items()} == {
        "au_shop": "AU", "de_crm": "DE", "web_signups": "AU"}
    # the default travels with the source (Spark pickles it to the executors)
    assert pickle.loads(pickle.dumps(cfg.sources["au_shop"])).default_country == "AU"
    # no country anywhere: US, as cdp always read its records
    doc = yaml.safe_load(intl_tenant.read_text(encoding="utf-8"))
    doc.pop("country")
    doc["bi"] = {"holiday_country": "NZ"}
    plain = intl_tenant.parent / "plain.yaml"
    plain.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    cfg = load_config(plain)
    assert cfg.country == "US" and cfg.sources["au_shop"].default_country == "US"
    assert cfg.sources["de_crm"].default_country == "DE" and cfg.bi.holiday_country == "NZ"
    assert load_config(_config_with(intl_tenant, country="gb")).country == "GB"


@pytest.mark.parametrize("where, value, message", [
    ("country", "XX", r"changed.yaml: country: 'XX' is not an ISO 3166-1 country code"),
    ("country", "UK", r"country: 'UK' is not an ISO 3166-1 country code \(did you mean GB\?\)"),
    ("sources__au_shop__country", "Australia",
     r"sources.au_shop.country: 'Australia' is not an ISO 3166-1 country code \(did you mean AU\?\)"),
    ("country", False, r"country: got false, which is how YAML reads an unquoted NO"),
])
def test_a_bad_country_is_named_in_the_error(intl_tenant, where, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_config_with(intl_tenant, **{where: value}))


# ---- through the source assets ------------------------------------------------------------------

def test_international_records_land_in_the_domain_tables(intl_tenant, tmp_path):
    cfg = load_config(intl_tenant)
    stage = sources.definitions(cfg)
    assets, checks = list(stage.assets), list(stage.asset_checks)
    warehouse = tmp_path / "wh.duckdb"
    result = dg.materialize([*assets, *checks], resources={"warehouse": DuckDBResource(database=str(warehouse))})
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())

    columns = ["pk", "phone", "address", "state", "postal", "country"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {name: con.execute(f"select {', '.join(columns)} from domain.{name} order by pk")
                  .df().astype(object).where(lambda d: d.notna(), None)
                  for name in cfg.sources}
    rows = {name: [tuple(r) for r in t.itertuples(index=False)] for name, t in tables.items()}
    assert rows["au_shop"] == [
        ("A1", "+61212345678", "12 george st", "NSW", "2000", "AU"),
        ("A2", "+61412345678", "5 queen st", "QLD", "4000", "AU"),
        ("A3", "+61881234567", "1 king william st", "SA", "5000", "AU"),
        ("A4", "+6491234567", "3 smith st", "NT", "0800", "AU"),   # a New Zealand mobile stays +64
        ("A5", "+61891234567", "1 hay st", "WA", None, "AU"),     # 20000: no Australian postcode
    ]
    assert rows["de_crm"] == [
        ("D1", "+49301234567", "hauptstr 5", "BE", "10115", "DE"),
        ("D2", "+4989123456", "leopoldstr 12", "BY", "80331", "DE"),
        ("D3", "+493511234567", "prager str 3", "SN", "01067", "DE"),
        ("D4", "+49711123456", "königstr 1", "BW", "70173", "DE"),
        ("D5", "+61298765432", "grosse str 7", "NW", "40212", "DE"),
    ]
    assert rows["web_signups"] == [
        ("W1", "+442079460000", None, "ENG", "SW1A 1AA", "GB"),
        ("W2", "+14165550100", None, "ON", "K1A 0B1", "CA"),
        ("W3", "+61412345678", None, "VIC", "3000", "AU"),       # no country of its own: the tenant's
        ("W4", "+4917612345678", None, "BY", "80331", "DE"),
        ("W5", "+61412345679", None, None, None, "AU"),          # 'Narnia': the tenant's country
    ]
    # 03/04/1980 is April 3rd in the UK, March 4th in Canada; 25/12 reads one way only; 13/13 no way
    with duckdb.connect(str(warehouse), read_only=True) as con:
        born = con.execute("select pk, strftime(birthdate, '%Y-%m-%d') from domain.web_signups order by pk").fetchall()
    assert born == [("W1", "1980-04-03"), ("W2", "1980-03-04"), ("W3", "1975-12-25"), ("W4", "1980-04-03"),
                    ("W5", None)]
    mats = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in result.get_asset_materialization_events()}
    assert mats["domain/au_shop"]["invalid_values_nulled"].value == {"postal": 1}
    assert mats["domain/de_crm"]["invalid_values_nulled"].value == {}
    assert mats["domain/web_signups"]["invalid_values_nulled"].value == {
        "country": 1, "state": 1, "postal": 1, "birthdate": 1}


def test_a_sources_date_order_overrides_its_country():
    raw = S(["03/04/1980", "25/12/1975", "12/25/1975", "03041980"])
    assert std.parse_dates(raw, "GB")[0].dt.strftime("%m-%d").tolist() == ["04-03", "12-25", "12-25", "04-03"]
    assert std.parse_dates(raw, "GB", "mdy")[0].dt.strftime("%m-%d").tolist() == ["03-04", "12-25", "12-25", "03-04"]
    assert std.parse_dates(raw, "US", "dmy")[0].dt.strftime("%m-%d").tolist() == ["04-03", "12-25", "12-25", "04-03"]


def test_configured_junk_phones_are_read_in_the_tenants_country():
    from cdp.stages.stitch.preprocess import _blocklist_value

    assert _blocklist_value("phone", ["0400 000 000"], "AU").tolist() == ["+61400000000"]
    assert _blocklist_value("address", ["1 Bahnhofstraße"], "DE").tolist() == ["1 bahnhofstr"]


def test_a_searched_phone_is_read_in_the_tenants_country():
    from cdp.serve.lookup_values import standard_phone

    assert standard_phone(" 02 1234 5678 ", "AU") == "+61212345678"
    assert standard_phone("(415) 555-0132") == "+14155550132"  # the default, US
    assert standard_phone("+49 30 1234567", "AU") == "+49301234567"
