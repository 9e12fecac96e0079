"""Merge rules, address grouping, provenance and customer 360 databases, proved on a hand-built
stitch output: a tiny warehouse holding stitch.unified_coalesced and stitch.unified_scores, the
generated per-database dbt models built by real dbt against it (no Dagster; Splink only for the
record components of the deterministic and threshold databases)."""

from pathlib import Path

import duckdb
import pytest
import yaml

from cdp.config import load_config
from cdp.dbt.project import dbt_resource, dbt_target, dbt_vars_arg, prepare_manifest, warehouse_env
from cdp.stages.c360.assets import links_its_own_way, write_record_components

SOURCES = ["pos_customers", "ecommerce_customers", "email_subscribers", "loyalty_members"]
P1, P2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"

# cdp_id, source, pk, given_name, surname, email, phone, address, city, state, postal,
# birthdate, gender, loyalty_id, created_at, updated_at
RECORDS = [
    # P1: four records that disagree
    (P1, "pos_customers", "1", "Jon", "Smith", "a@x.com", "+15550000001", "1 Main St", "Albany",
     "NY", "12201", "1980-01-02", "M", "L1", "2020-01-01", "2024-01-01"),
    (P1, "ecommerce_customers", "1", "Jonathan", "Smith", "a@x.com", "+15550000002",
     "22 Long Ave Apt 5", "Buffalo", "NY", "14201", "1980-01-02", None, None, "2021-01-01", "2022-01-01"),
    # the most recent record has a postal code but no street: the address group must not take it
    (P1, "email_subscribers", "1", "Jonathan", "Smyth", "b@x.com", None, None, None, None, "99999",
     None, None, None, "2019-01-01", "2025-01-01"),
    (P1, "loyalty_members", "1", "Jonny", "Smithe", "c@x.com", "+15550000002", "3 Elm Rd", "Troy",
     "NY", "12180", "1979-12-31", "M", "L2", "2018-06-01", None),
    # P2: two records tied on every timestamp, neither with a street line; one has a postal code
    (P2, "pos_customers", "7", "Ann", "Lee", "ann@pos.com", None, None, None, None, "10001", None,
     None, None, "2022-05-05", "2023-05-05"),
    (P2, "ecommerce_customers", "7", "Anne", "Lee", "ann@shop.com", None, None, None, None, None,
     None, None, None, "2022-05-05", "2023-05-05"),
]

# source_l, pk_l, source_r, pk_r, match_probability, deterministic_rule, label, linked, same_cdp_id
SCORES = [
    ("ecommerce_customers", "1", "pos_customers", "1", 0.999999, "same email", None, True, True),
    ("ecommerce_customers", "1", "email_subscribers", "1", 0.95, None, None, True, True),
    ("email_subscribers", "1", "loyalty_members", "1", 0.995, None, None, True, True),
    ("ecommerce_customers", "7", "pos_customers", "7", 0.97, None, None, True, True),
    # a pair Stitch did not link: never used
    ("loyalty_members", "1", "pos_customers", "7", 0.999, None, None, False, False),
]


def rule(name, **kw):
    return {"rule": name, **kw}


DATABASES = {
    # c360: the rules of each kind, one per field
    "c360": {"stitch_mode": "probabilistic", "merge": {
        "default": rule("most_recent"),
        "fields": {
            "email": rule("most_frequent"),
            "given_name": rule("longest"),
            "surname": rule("first_seen"),
            "phone": rule("source_priority", sources=["loyalty_members", "pos_customers"]),
            "birthdate": rule("min"),
            "loyalty_id": rule("max"),
            "gender": rule("most_recent"),
            "address_group": rule("most_recent"),
        }}},
    # email team: the email platform first; address from the longest street line
    "email_c360": {"stitch_mode": "probabilistic", "merge": {
        "default": rule("most_recent"),
        "fields": {
            "email": rule("source_priority", sources=["email_subscribers"]),
            "given_name": rule("source_priority", sources=["email_subscribers"], fallback="longest"),
            "phone": rule("most_frequent"),
            "address_group": rule("longest"),
        }}},
    # paid media: every email and phone
    "paid_media_c360": {"stitch_mode": "probabilistic", "merge": {
        "fields": {"email": rule("all_values"), "phone": rule("all_values", fallback="most_frequent"),
                   "address_group": rule("first_seen")}}},
    "ops_c360": {"stitch_mode": "deterministic", "merge": {"default": rule("most_frequent")}},
    "strict_c360": {"stitch_mode": 0.99},
}


def tenant_doc(databases=DATABASES) -> dict:
    columns = {"id": "pk", "first": "given-name", "last": "surname", "mail": "email"}
    return {"tenant": "tiny", "warehouse": "warehouse.duckdb",
            "sources": {s: {"path": f"data/{s}.csv", "kind": "customers", "columns": columns}
                        for s in SOURCES},
            "stitch": {"match_threshold": 0.9},
            "databases": databases}


def seed_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema stitch")
    con.execute("""create table stitch.unified_coalesced (
        cdp_id varchar, source varchar, pk varchar, given_name varchar, surname varchar,
        full_name varchar, email varchar, phone varchar, address varchar, city varchar,
        state varchar, postal varchar, country varchar, birthdate date, gender varchar,
        loyalty_id varchar, created_at timestamp, updated_at timestamp)""")
    con.executemany("insert into stitch.unified_coalesced values "
                    "(?, ?, ?, ?, ?, null, ?, ?, ?, ?, ?, ?, null, ?, ?, ?, ?, ?)", RECORDS)
    # every domain record carries a country: its own, its source's or the tenant's
    con.execute("update stitch.unified_coalesced set country = 'US'")
    con.execute("""create table stitch.unified_scores (
        source_l varchar, pk_l varchar, source_r varchar, pk_r varchar, match_probability double,
        deterministic_rule varchar, label varchar, linked boolean, same_cdp_id boolean)""")
    con.executemany("insert into stitch.unified_scores values (?, ?, ?, ?, ?, ?, ?, ?, ?)", SCORES)
    con.close()


def build_databases(root: Path, databases=DATABASES) -> duckdb.DuckDBPyConnection:
    (root / "tenant.yaml").write_text(yaml.safe_dump(tenant_doc(databases)))
    cfg = load_config(root / "tenant.yaml")
    if not cfg.warehouse_path.exists():
        seed_warehouse(cfg.warehouse_path)
    with duckdb.connect(str(cfg.warehouse_path)) as con:  # what the record_components assets do
        for name, db in cfg.customer_databases.items():
            if links_its_own_way(db):
                write_record_components(con, name, db.stitch_mode)
    prepare_manifest(cfg)
    with warehouse_env(cfg), dbt_target(cfg, "test") as target:
        dbt_resource(cfg).cli(["build", "--quiet", "--select", "+fqn:cdp.databases.*", "--indirect-selection", "buildable",
                               *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()
    return duckdb.connect(str(cfg.warehouse_path), read_only=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    con = build_databases(tmp_path_factory.mktemp("tiny"))
    yield con
    con.close()


def person(con, db: str, cdp_id: str = P1) -> dict:
    df = con.execute(f"select * from {db}.merged_customers where cdp_id = ?", [cdp_id]).df()
    assert len(df) == 1, df
    return df.iloc[0].to_dict()


def test_each_rule_picks_its_value_and_record(built):
    p = person(built, "c360")
    # most_frequent: a@x.com is on two records; the more recent of them is the provenance
    assert (p["email"], p["email__from"]) == ("a@x.com", "pos_customers|1")
    # longest: "Jonathan" on two records, the more recent one wins the tie
    assert (p["given_name"], p["given_name__from"]) == ("Jonathan", "email_subscribers|1")
    # first_seen: the loyalty record was created first
    assert (p["surname"], p["surname__from"]) == ("Smithe", "loyalty_members|1")
    # source_priority: loyalty first
    assert (p["phone"], p["phone__from"]) == ("+15550000002", "loyalty_members|1")
    # min / max
    assert str(p["birthdate"])[:10] == "1979-12-31" and p["birthdate__from"] == "loyalty_members|1"
    assert (p["loyalty_id"], p["loyalty_id__from"]) == ("L2", "loyalty_members|1")
    # most_recent, skipping records without a value
    assert (p["gender"], p["gender__from"]) == ("M", "pos_customers|1")
    assert p["full_name"] == "Jonathan Smithe"
    assert p["record_count"] == 4 and list(p["sources"]) == sorted(SOURCES)


def test_address_is_one_record_never_mixed(built):
    p = person(built, "c360")  # most_recent: the newest record has only a postal code
    assert (p["address"], p["city"], p["postal"], p["address__from"]) == (
        "1 Main St", "Albany", "12201", "pos_customers|1")
    e = person(built, "email_c360")  # longest street line
    assert (e["address"], e["city"], e["postal"], e["address__from"]) == (
        "22 Long Ave Apt 5", "Buffalo", "14201", "ecommerce_customers|1")
    f = person(built, "paid_media_c360")  # first_seen
    assert (f["address"], f["city"], f["postal"], f["address__from"]) == (
        "3 Elm Rd", "Troy", "12180", "loyalty_members|1")


def test_address_group_prefers_a_locality_to_a_bare_country(built):
    # P2: no street line; recency ties, and (source, pk) would pick ecommerce_customers|7, which
    # carries nothing but its country: the group comes from the record with a postal code
    p = person(built, "c360", P2)
    assert (p["postal"], p["country"], p["address__from"]) == ("10001", "US", "pos_customers|7")


def test_ties_end_on_recency_then_source_and_pk(built):
    # P2: equal timestamps - most_recent falls to (source, pk): ecommerce_customers < pos_customers
    p = person(built, "c360", P2)
    assert (p["gender"], p["given_name"]) == (None, "Anne")  # longest
    assert (p["email"], p["email__from"]) == ("ann@shop.com", "ecommerce_customers|7")  # most_frequent 1:1
    # most_frequent tie (one +15550000001, one +15550000002 ... and loyalty repeats 0002):
    e = person(built, "email_c360")
    assert (e["phone"], e["phone__from"]) == ("+15550000002", "ecommerce_customers|1")


def test_source_priority_then_fallback(built):
    e = person(built, "email_c360")
    assert (e["email"], e["email__from"]) == ("b@x.com", "email_subscribers|1")
    assert e["given_name"] == "Jonathan" and e["given_name__from"] == "email_subscribers|1"
    p2 = person(built, "email_c360", P2)  # no email_subscribers record: fallback most_recent -> tie
    assert (p2["email"], p2["email__from"]) == ("ann@shop.com", "ecommerce_customers|7")
    assert p2["given_name"] == "Anne"  # fallback longest


def test_all_values_lists_every_value_with_its_sources(built):
    p = person(built, "paid_media_c360")
    emails = {v["value"]: (list(v["sources"]), list(v["records"])) for v in p["email__all"]}
    assert emails == {
        "a@x.com": (["ecommerce_customers", "pos_customers"], ["ecommerce_customers|1", "pos_customers|1"]),
        "b@x.com": (["email_subscribers"], ["email_subscribers|1"]),
        "c@x.com": (["loyalty_members"], ["loyalty_members|1"])}
    phones = [v["value"] for v in p["phone__all"]]
    assert phones == ["+15550000001", "+15550000002"]
    assert p["phone"] == "+15550000002"  # primary by most_frequent
    assert p["email"] == "b@x.com"       # primary by most_recent (default fallback)
    c360 = built.execute("select * from paid_media_c360.customer_360 where cdp_id = ?", [P1]).df()
    assert "email__all" in c360.columns and "email__from" not in c360.columns


def test_provenance_answers_why_this_value(built):
    why = built.execute("""select value, rule, source, pk, record_updated_at from
                           email_c360.merged_customers_provenance
                           where cdp_id = ? and field = 'email'""", [P1]).fetchall()
    assert len(why) == 1
    value, rule_text, source, pk, updated = why[0]
    assert (value, source, pk) == ("b@x.com", "email_subscribers", "1")
    assert rule_text == "source_priority [email_subscribers] then most_recent"
    city = built.execute("""select value, source from c360.merged_customers_provenance
                            where cdp_id = ? and field = 'city'""", [P1]).fetchall()
    assert city == [("Albany", "pos_customers")]


def test_two_databases_give_different_profiles_from_one_stitch(built):
    c, e = person(built, "c360"), person(built, "email_c360")
    assert c["cdp_id"] == e["cdp_id"]
    assert (c["email"], e["email"]) == ("a@x.com", "b@x.com")
    assert (c["address"], e["address"]) == ("1 Main St", "22 Long Ave Apt 5")
    n = {db: built.execute(f"select count(*) from {db}.customer_360").fetchone()[0]
         for db in DATABASES}
    assert n == {"c360": 2, "email_c360": 2, "paid_media_c360": 2, "ops_c360": 5, "strict_c360": 4}


def test_deterministic_and_threshold_stitch_modes(built):
    def people(db):
        rows = built.execute(f"""select cdp_id, list(source || '|' || pk order by source)
                                 from {db}.unified_records group by cdp_id""").fetchall()
        return {cdp_id: list(keys) for cdp_id, keys in rows}

    # deterministic: only the email rule links two of P1's records; P2's pair is only a score
    ops = people("ops_c360")
    assert sorted(ops.values()) == [
        ["ecommerce_customers|1", "pos_customers|1"], ["ecommerce_customers|7"],
        ["email_subscribers|1"], ["loyalty_members|1"], ["pos_customers|7"]]
    assert ops[P1] == ["ecommerce_customers|1", "pos_customers|1"]  # the largest part keeps the id
    assert ops[P2] == ["ecommerce_customers|7"]                      # tie: lowest record key
    # threshold 0.99: the rule link and the 0.995 score; not the 0.95 and 0.97 scores
    strict = people("strict_c360")
    assert sorted(strict.values()) == [
        ["ecommerce_customers|1", "pos_customers|1"], ["ecommerce_customers|7"],
        ["email_subscribers|1", "loyalty_members|1"], ["pos_customers|7"]]
    assert strict[P1] == ["ecommerce_customers|1", "pos_customers|1"]  # tie 2:2, lowest record key
    # the other parts get ids derived from Stitch's, and keep Stitch's id beside
    split = built.execute("""select cdp_id, stitch_cdp_id from strict_c360.unified_records
                             where source = 'loyalty_members'""").fetchone()
    assert split[1] == P1 and split[0] not in (P1, P2)
    # each database merges its own people: ops has P1's pos+ecommerce only
    o = person(built, "ops_c360")
    assert o["record_count"] == 2 and o["email"] == "a@x.com"
    # most_frequent tie (Jon 1 : Jonathan 1): the value of the most recent record
    assert (o["given_name"], o["given_name__from"]) == ("Jon", "pos_customers|1")


def test_record_components_after_changed_links_equal_a_full_recomputation(tmp_path):
    """The second run re-clusters only the Stitch clusters a changed link touches, and its
    components equal those found from scratch: links appeared (two components join), went (one
    splits), a record left with its link, a new cluster arrived; an untouched one is left alone."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema stitch")
    con.execute("create table stitch.unified_coalesced (cdp_id varchar, source varchar, pk varchar)")
    con.execute("""create table stitch.unified_scores (source_l varchar, pk_l varchar, source_r varchar,
                   pk_r varchar, match_probability double, deterministic_rule varchar, label varchar,
                   linked boolean, same_cdp_id boolean)""")

    def state(clusters: dict[str, list[str]], links: list[tuple[str, str]]):
        con.execute("delete from stitch.unified_coalesced; delete from stitch.unified_scores")
        con.executemany("insert into stitch.unified_coalesced values (?, 's', ?)",
                        [(c, pk) for c, pks in clusters.items() for pk in pks])
        con.executemany("insert into stitch.unified_scores values ('s', ?, 's', ?, 0.99, 'email', null, true, true)",
                        links)

    def components():
        return con.execute("select record_key, component from ops.record_components order by 1").fetchall()

    state({"A": ["a1", "a2", "a3", "a4"], "B": ["b1", "b2"], "C": ["c1", "c2"], "F": ["f1", "f2"]},
          [("a1", "a2"), ("a3", "a4"), ("b1", "b2"), ("c1", "c2"), ("f1", "f2")])
    first = write_record_components(con, "ops", "deterministic")
    assert not first["incremental"] and first["components"] == 5
    state({"A": ["a1", "a2", "a3", "a4"], "B": ["b1"], "D": ["b2"], "C": ["c1"], "E": ["e1", "e2"],
           "F": ["f1", "f2"]},
          [("a1", "a2"), ("a3", "a4"), ("a2", "a3"), ("e1", "e2"), ("f1", "f2")])
    second = write_record_components(con, "ops", "deterministic")
    assert second["incremental"]
    incremental = components()
    assert dict(incremental)["s|a4"] == "s|a1" and "s|b1" not in dict(incremental)
    assert second["reclustered_records"] == 6  # a1-a4 and e1-e2 (B and C have no links left); F not
    con.execute("drop table ops.record_links")
    assert not write_record_components(con, "ops", "deterministic")["incremental"]
    assert components() == incremental
    con.close()
