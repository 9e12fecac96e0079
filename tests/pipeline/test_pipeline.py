"""The whole graph materialized on generated data: real Splink, real dbt, real DuckDB."""

import csv

import pandas as pd

from cdp.stages.stitch import pairwise_quality


def test_every_asset_materialized_and_every_check_passed(pipeline_run):
    keys = {m.asset_key.to_user_string() for m in pipeline_run.get_asset_materialization_events()}
    for expected in ["domain/pos_customers", "domain/ecommerce_customers", "domain/email_subscribers",
                     "domain/loyalty_members", "domain/pos_orders", "domain/order_items",
                     "stitch/blocklist", "stitch/unified_preprocessed_raw", "stitch/unified_scores",
                     "stitch/unified_coalesced", "c360/merged_customers", "c360/customer_360",
                     "interactions/unified_transactions", "interactions/transaction_attributes",
                     "interactions/unified_itemized_transactions", "interactions/unified_product_catalog",
                     "interactions/transaction_attributes_extended", "bi/holiday_calendar",
                     "bi/dim_customer", "bi/dim_product", "bi/dim_date", "bi/fact_sales",
                     "bi/fact_sales_items",
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
        select cdp_id, count(*) filter (where not is_fully_returned) n, round(sum(net_revenue), 2) rev
        from interactions.unified_transactions
        where cdp_id is not null and not is_cancelled group by cdp_id""").df().set_index("cdp_id")
    got = ta.set_index("cdp_id")
    assert (got.loc[expected.index, "order_count"] == expected["n"]).all()
    assert ((got.loc[expected.index, "lifetime_revenue"] - expected["rev"]).abs() < 0.01).all()


def test_export_file_dropped(pipeline_run, demo_tenant):
    files = sorted((demo_tenant.parent / "exports" / "c360").glob("*.csv"))
    assert files, "no export file"
    exported = pd.read_csv(files[0])
    assert "cdp_id" in exported.columns and exported["cdp_id"].is_unique
    assert not list((demo_tenant.parent / "exports" / "c360").glob(".incoming-*"))


def test_predictive_models_beat_their_naive_baselines(pipeline_run, warehouse):
    """Generated purchase histories have real structure (personal rates, churn, favourite
    categories): both models must learn it, measured on a held-out window."""
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in pipeline_run.get_asset_materialization_events()}
    clv = meta["predictive/predicted_clv_attributes"]
    assert clv["holdout_mae"].value < clv["baseline_mae"].value, (clv["holdout_mae"], clv["baseline_mae"])
    propensity = meta["predictive/product_category_propensity"]
    assert propensity["holdout_auc"].value > propensity["baseline_auc"].value + 0.1
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed
              for c in pipeline_run.get_asset_check_evaluations()}
    assert checks[("predictive/predicted_clv_attributes", "beats_naive_baseline")]
    assert checks[("predictive/product_category_propensity", "beats_naive_baseline")]

    clv_rows = warehouse.execute("select * from predictive.predicted_clv_attributes").df()
    buyers = warehouse.execute("select count(*) from interactions.transaction_attributes "
                               "where order_count > 0").fetchone()[0]
    assert clv_rows["cdp_id"].is_unique and len(clv_rows) == buyers
    assert clv_rows["probability_alive"].between(0, 1).all()
    assert (clv_rows["predicted_orders_12m"] >= 0).all() and (clv_rows["predicted_revenue_12m"] >= 0).all()
    assert set(clv_rows["clv_tier"]) == {"platinum", "gold", "silver", "bronze"}
    # the top tier is worth more than the bottom one
    by_tier = clv_rows.groupby("clv_tier")["predicted_revenue_12m"].min()
    assert by_tier["platinum"] >= clv_rows.loc[clv_rows["clv_tier"] == "bronze", "predicted_revenue_12m"].max()

    for table in ("predicted_clv_attributes", "product_category_propensity", "recommendations"):
        documented = [c.name for c in meta[f"predictive/{table}"]["dagster/column_schema"].value.columns]
        actual = [c[0] for c in warehouse.execute(f"describe predictive.{table}").fetchall()]
        assert documented == actual, table  # every column documented, in order

    scores = warehouse.execute("select * from predictive.product_category_propensity").df()
    assert scores["propensity"].between(0, 1).all()
    assert not scores.duplicated(["cdp_id", "product_category"]).any()
    recs = warehouse.execute("select * from predictive.recommendations").df()
    assert (recs.groupby("cdp_id").size() == 3).all()
    assert recs["recommended_product_id"].notna().all()


def test_bi_star_schema_on_the_demo_graph(warehouse):
    count = lambda t: warehouse.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: E731
    assert count("bi.dim_customer") == count("c360.customer_360")
    assert count("bi.fact_sales") == count("interactions.unified_transactions")
    assert count("bi.fact_sales_items") == count("interactions.unified_itemized_transactions")
    first, last, days = warehouse.execute(
        "select min(calendar_date), max(calendar_date), count(*) from bi.dim_date").fetchone()
    assert (str(first), str(last)) == ("1970-01-01", "2054-12-31") and days == 31_046  # 85 years
    columns = [c[0] for c in warehouse.execute("describe bi.dim_customer").fetchall()]
    assert len(columns) == len(set(columns)) and not any(c.endswith("_1") for c in columns), columns
    assert {"clv_tier", "preferred_category", "revenue_12m", "order_count"} <= set(columns)
    orphans = warehouse.execute("""select count(*) from bi.fact_sales f
                                   left join bi.dim_date d using (date_key) where d.date_key is null""").fetchone()[0]
    assert orphans == 0


def _scoring_inputs(warehouse, demo_tenant):
    """The demo's saved model, and a local connection holding its preprocessed records as temp
    table `prepared` (as the stitch assets read them)."""
    import json

    from cdp.engine.duckdb import local_connection

    models = demo_tenant.parent / "stitch_artefacts" / "models"
    model = json.loads((models / json.loads((models / "current.json").read_text())["file"]).read_text())
    con = local_connection()
    con.register("incoming", warehouse.execute("select * from stitch.unified_preprocessed_raw").to_arrow_table())
    con.execute("create temp table prepared as select * from incoming")
    return model, con


def test_scoring_in_chunks_gives_the_pairs_of_one_pass(warehouse, demo_tenant, monkeypatch):
    """Over PREDICT_CHUNK_RECORDS records Stitch scores the pairs in chunks of their left record
    (so a 10M-record run never holds every wide prediction row at once): the pairs, weights and
    levels are those of one pass, which are the published unified_scores' model pairs."""
    from cdp.stages.stitch import model as md

    model, con = _scoring_inputs(warehouse, demo_tenant)
    records = con.execute("select count(*) from prepared").fetchall()[0][0]
    threshold = 0.01

    def scored(out):
        n = md.score_pairs(con, "prepared", model, threshold, out=out)
        frame = con.execute(f"select * exclude (match_key) from {out}").df()
        return n, frame.sort_values(["unique_id_l", "unique_id_r"]).reset_index(drop=True)

    one_n, one_pass = scored("one_pass")
    monkeypatch.setattr(md, "PREDICT_CHUNK_RECORDS", records // 4 + 1)
    monkeypatch.setattr(md, "CHUNK_ABOVE", 0)
    chunked_n, chunked = scored("chunked")
    assert one_n == chunked_n > 100
    assert list(one_pass.columns) == list(chunked.columns) and any(c.startswith("gamma_") for c in chunked)
    pd.testing.assert_frame_equal(one_pass, chunked, check_exact=False, rtol=1e-9)
    published = warehouse.execute("select count(*) from stitch.unified_scores "
                                  "where match_probability is not null").fetchall()[0][0]
    assert published == one_n


def test_incremental_scoring_narrowed_to_candidates_gives_the_pairs_of_every_record(warehouse, demo_tenant):
    """An incremental run scores its delta against the records some blocking rule could pair
    with it (candidates_sql: one scan, a membership test per equality pattern): the pairs are
    those of scoring the delta against every record."""
    from cdp.stages.stitch import incremental as inc

    model, con = _scoring_inputs(warehouse, demo_tenant)
    con.execute(f"create temp table {inc.DELTA} as select * from prepared using sample 150 rows (reservoir, 11)")
    rules = [r["blocking_rule"] if isinstance(r, dict) else r for r in model["blocking_rules_to_generate_predictions"]]
    assert inc.candidates_sql(rules) is not None
    narrowed = inc.score_delta(con, model, 0.0, out="narrowed")
    everyone = inc.score_delta(con, model, 0.0, out="everyone", narrow=False)
    assert narrowed == everyone > 50
    assert con.execute("select count(*) from (select unique_id_l, unique_id_r, match_weight from narrowed "
                       "except select unique_id_l, unique_id_r, match_weight from everyone)").fetchall()[0][0] == 0
