"""The whole graph materialized on generated data: real Splink, real dbt, real DuckDB."""

import csv

import pandas as pd

from cdp_assets.stitch import pairwise_quality


def test_every_asset_materialized_and_every_check_passed(pipeline_run):
    keys = {m.asset_key.to_user_string() for m in pipeline_run.get_asset_materialization_events()}
    for expected in ["domain/pos_customers", "domain/ecommerce_customers", "domain/email_subscribers",
                     "domain/loyalty_members", "domain/pos_orders", "domain/order_items",
                     "stitch/blocklist", "stitch/unified_preprocessed_raw", "stitch/unified_scores",
                     "stitch/unified_coalesced", "c360/merged_customers", "c360/customer_360",
                     "interactions/unified_transactions", "interactions/transaction_attributes",
                     "activation/c360_file_drop", "email_c360/customer_360", "custom/households",
                     "activation/households_file_drop", "activation/paid_media_audience"]:
        assert expected in keys, f"{expected} was not materialized"
    checks = pipeline_run.get_asset_check_evaluations()
    names = {(c.asset_key.to_user_string(), c.check_name) for c in checks}
    assert ("stitch/unified_coalesced", "every_domain_record_once") in names
    assert ("c360/customer_360", "unique_c360__customer_360_cdp_id") in names
    assert ("domain/pos_customers", "every_row_accounted_for") in names
    failed = [(c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed]
    assert not failed, failed
    for m in pipeline_run.get_asset_materialization_events():
        meta = m.materialization.metadata
        assert "dagster/row_count" in meta, m.asset_key
        assert "preview" in meta, m.asset_key


def test_every_source_row_is_loaded_or_quarantined(warehouse, demo_tenant):
    data = demo_tenant.parent / "data"
    for source in ["pos_customers", "ecommerce_customers", "email_subscribers", "pos_orders"]:
        with open(data / f"{source}.csv", newline="") as fh:
            rows_in_file = sum(1 for _ in csv.reader(fh)) - 1
        loaded = warehouse.execute(f"select count(*) from domain.{source}").fetchone()[0]
        quarantined = warehouse.execute(
            "select count(*) from domain.quarantine where source = ?", [source]).fetchone()[0]
        assert loaded + quarantined == rows_in_file, source
    reasons = set(warehouse.execute("select reason from domain.quarantine").df()["reason"])
    assert any(r.startswith("expected") for r in reasons), reasons  # the malformed CSV line
    assert "missing pk" in reasons


def test_stitch_links_people_across_sources(warehouse, demo_tenant):
    truth = pd.read_csv(demo_tenant.parent / "data" / "ground_truth.csv", dtype=str,
                        keep_default_na=False)
    assigned = warehouse.execute("select source, pk, cdp_id from stitch.unified_coalesced").df()
    quality = pairwise_quality(assigned, truth)
    assert quality["precision"] >= 0.9 and quality["recall"] >= 0.85, quality
    multi_source = warehouse.execute("""select count(*) from (select cdp_id from stitch.unified_coalesced
                                        group by cdp_id having count(distinct source) >= 3)""").fetchone()[0]
    assert multi_source > 0
    scores = warehouse.execute("select * from stitch.unified_scores").df()
    assert {"source_l", "pk_l", "source_r", "pk_r", "match_probability", "linked"} <= set(scores.columns)
    assert scores["linked"].any() and (~scores["linked"]).any()


def test_junk_values_are_blocklisted(warehouse):
    blocklist = warehouse.execute("select field, value, reason from stitch.blocklist").df()
    assert "test@test.com" in set(blocklist["value"])
    seen = warehouse.execute("select count(*) from stitch.unified_preprocessed_raw "
                             "where email = 'test@test.com' or phone = '+10000000000'").fetchone()[0]
    assert seen == 0


def test_customer_360_one_row_per_person_with_merge_rules(warehouse):
    people = warehouse.execute("select count(distinct cdp_id) from stitch.unified_coalesced").fetchone()[0]
    c360 = warehouse.execute("select * from c360.customer_360").df()
    assert len(c360) == people and c360["cdp_id"].is_unique
    # email rule: source_priority [email_subscribers, ecommerce_customers, ...]
    check = warehouse.execute("""
        select m.cdp_id, m.email, m.email__from,
               (select u.email from stitch.unified_coalesced u
                where u.cdp_id = m.cdp_id and u.source = 'email_subscribers' and u.email is not null
                order by u.updated_at desc nulls last, u.created_at desc nulls last, u.pk limit 1) as esp_email
        from c360.merged_customers m""").df()
    has_esp = check[check["esp_email"].notna()]
    assert len(has_esp) > 0
    assert (has_esp["email"] == has_esp["esp_email"]).all()
    assert has_esp["email__from"].str.startswith("email_subscribers|").all()
    # address group: street, city and postal come from one record
    mixed = warehouse.execute("""
        select count(*) from c360.merged_customers m
        join stitch.unified_coalesced u on u.source || '|' || u.pk = m.address__from
        where m.address is distinct from u.address or m.postal is distinct from u.postal
           or m.city is distinct from u.city""").fetchone()[0]
    assert mixed == 0


def test_transaction_attributes(warehouse):
    ta = warehouse.execute("select * from interactions.transaction_attributes").df()
    assert len(ta) > 0 and ta["cdp_id"].is_unique
    expected = warehouse.execute("""
        select cdp_id, count(*) filter (where not is_return) n, round(sum(net_revenue), 2) rev
        from interactions.unified_transactions
        where cdp_id is not null and not is_cancelled group by cdp_id""").df().set_index("cdp_id")
    got = ta.set_index("cdp_id")
    assert (got.loc[expected.index, "order_count"] == expected["n"]).all()
    assert ((got.loc[expected.index, "lifetime_revenue"] - expected["rev"]).abs() < 0.01).all()


def test_export_file_dropped(demo_tenant):
    files = sorted((demo_tenant.parent / "exports" / "c360").glob("*.csv"))
    assert files, "no export file"
    exported = pd.read_csv(files[0])
    assert "cdp_id" in exported.columns and exported["cdp_id"].is_unique
    assert not list((demo_tenant.parent / "exports" / "c360").glob(".incoming-*"))
