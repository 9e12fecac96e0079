"""Incremental preprocessing on hand-built deliveries: the delta a delivery makes (new, changed,
deleted, and the records whose blocklisted value or initial key changed standing) and the
preprocessed table it leaves, which must equal a full preprocessing of the same records."""

import duckdb
import pandas as pd
import yaml

from cdp.config import DEFAULT_CONFIG, SourceKind, load_config
from cdp.engine.tables import replace_table
from cdp.stages.sources.assets import DOMAIN_COLUMNS
from cdp.stages.stitch import delta as dl
from cdp.stages.stitch.preprocess import build_blocklist, prepare_for_matching, stage_customer_records

FRONT_DESK = [{"source": "s", "pk": f"d{i}", "given_name": name, "surname": "Desk", "email": "front@desk.com"}
              for i, name in enumerate(["Ann", "Bob", "Cy", "Dee", "Eve"])]   # five people: not junk yet
MARY = {"source": "pos", "pk": "1", "given_name": "Mary", "surname": "Poole", "postal": "02494",
        "email": "mary.p@example.com"}
OTHERS = [{"source": "pos", "pk": "2", "given_name": "Juan", "surname": "Galloway", "postal": "49844"},
          {"source": "pos", "pk": "3", "given_name": "Ida", "surname": "Jones", "postal": "10001"}]


def deliver(con, cfg, rows: list[dict]) -> None:
    columns = DOMAIN_COLUMNS[SourceKind.customers]
    for n, name in enumerate(cfg.customer_sources):
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in (rows if n == 0 else [])],
                             columns=columns).astype(object)
        replace_table(con, "domain", name, frame)


def test_an_incremental_preprocessing_equals_a_full_one_and_finds_every_kind_of_delta():
    cfg = load_config(DEFAULT_CONFIG)
    con = duckdb.connect()
    deliver(con, cfg, FRONT_DESK + [MARY] + OTHERS)
    stage_customer_records(con, cfg)
    blocklist = build_blocklist(con, cfg)
    replace_table(con, "stitch", "blocklist", blocklist)
    prepare_for_matching(con, blocklist, "stitch.unified_preprocessed_raw")
    dl.write_full_state(con, cfg)
    assert con.execute("select name_key_initial_surname from stitch.unified_preprocessed_raw "
                       "where unique_id = 'pos|1'").fetchall() == [("mpoole",)]

    # the next delivery: a sixth person at the front desk (the email becomes junk for all six),
    # Michael Poole in Mary's postal code ('mpoole' fits two people there now), Juan's surname
    # corrected, Ida gone
    michael = {"source": "pos", "pk": "4", "given_name": "Michael", "surname": "Poole", "postal": "02494"}
    sixth = {"source": "s", "pk": "d5", "given_name": "Flo", "surname": "Desk", "email": "front@desk.com"}
    juan = {**OTHERS[0], "surname": "Gallway"}
    deliver(con, cfg, FRONT_DESK + [MARY, juan, michael, sixth])
    changes, blocklist = dl.find_delta(con, cfg)
    kinds = dict(con.execute("select unique_id, change from _delta").fetchall())
    dl.apply_delta(con, blocklist, [])
    assert changes == {"new": 2, "changed": 1, "deleted": 1, "blocklist": 5, "initial key": 1}
    assert kinds["pos|1"] == "initial key" and kinds["pos|3"] == "deleted" and kinds["s|d0"] == "blocklist"

    # the blocklist counted again for the delta's values only, and the staged records kept, are
    # what a full recount and staging of every record give
    stage_customer_records(con, cfg, stored_misspelt=True)
    recounted = build_blocklist(con, cfg)
    assert ("email", "front@desk.com") in set(zip(blocklist["field"], blocklist["value"]))
    pd.testing.assert_frame_equal(blocklist, recounted)
    staged = con.execute(f"select * from {dl.STAGED} order by unique_id").df()
    pd.testing.assert_frame_equal(staged, con.execute("select * from _stitch_records order by unique_id").df())

    prepare_for_matching(con, blocklist, "full_rebuild")
    incremental = con.execute("select * from stitch.unified_preprocessed_raw order by unique_id").df()
    full = con.execute("select * from full_rebuild order by unique_id").df()
    pd.testing.assert_frame_equal(incremental.reset_index(drop=True), full.reset_index(drop=True))
    assert incremental.loc[incremental["unique_id"] == "pos|1", "name_key_initial_surname"].isna().all()
    assert incremental["email"].eq("front@desk.com").sum() == 0
    pending = dict(con.execute("select unique_id, change from stitch.stitch_delta").fetchall())
    assert pending == kinds
    # the rows the records had before: what the match step unlinks them from
    old = dict(con.execute("select unique_id, surname from stitch.stitch_delta_old").fetchall())
    assert old["pos|2"] == "galloway" and "pos|4" not in old

    # nothing delivered: nothing to do, the blocklist as it was
    assert dl.find_delta(con, cfg)[0] == {}
    pd.testing.assert_frame_equal(dl.find_delta(con, cfg)[1], recounted)


def test_a_run_is_full_on_request_periodically_and_when_the_model_or_settings_changed(tmp_path):
    from cdp.stages.stitch import state as stm

    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["stitch"] = {**(doc.get("stitch") or {}), "incremental": True, "full_rebuild_every": 2}
    (tmp_path / "tenant.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_config(tmp_path / "tenant.yaml", warehouse=str(tmp_path / "w.duckdb"))
    con = duckdb.connect()
    assert stm.preprocess_incrementally(con, cfg, False) == (False, "first run: no stitched state yet")
    for table in ("record_digests", "staged_records", "unified_preprocessed_raw", "blocklist", "misspelt_nicknames",
                  "initial_key_uses", "stitched_records", "unified_scores"):
        con.execute("create schema if not exists stitch")
        con.execute(f"create table stitch.{table} (unique_id varchar, digest ubigint)")
    stm.mark_full_pending(con, cfg)
    assert stm.preprocess_incrementally(con, cfg, False)[0]   # the table is complete: fine
    assert stm.match_incrementally(con, cfg, 1) == (False, "the preprocessing ran in full")
    stm.record_stitched(con, cfg, model_version=1, incremental=False)
    assert stm.match_incrementally(con, cfg, 1) == (True, "incremental")
    assert stm.model_design_settled(con, cfg, 1)
    assert stm.match_incrementally(con, cfg, 2)[1] == "the model changed (v1 -> v2)"
    assert stm.preprocess_incrementally(con, cfg, True) == (False, "a full run was requested")
    for _ in range(2):
        stm.record_stitched(con, cfg, model_version=1, incremental=True)
    assert "2 incremental runs" in stm.preprocess_incrementally(con, cfg, False)[1]
    con.execute("create or replace table stitch.record_digests (unique_id varchar, digest varchar)")
    assert stm.preprocess_incrementally(con, cfg, False)[1] == "the record digests were written by another version"
    other = cfg.model_copy(update={"stitch": cfg.stitch.model_copy(update={"match_threshold": 0.95})})
    assert stm.match_incrementally(con, other, 1) == (False, "the Stitch settings or the labels changed")
    assert not stm.model_design_settled(con, other, 1)
