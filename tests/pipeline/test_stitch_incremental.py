"""Incremental Stitch: a delivery re-stitches only the people it touches, and ends where a full
rebuild of the same data ends. Real Dagster runs, real DuckDB, real Splink, on a few dozen
records whose people are tied by the deterministic rules (same email, same loyalty card); each
delivery rewrites the source file between runs."""

import csv
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from cdp.config import load_config
from cdp.definitions import build_definitions

COLUMNS = ["id", "first_name", "last_name", "email", "phone", "loyalty", "city"]
# people tied by a shared email or loyalty card; Eve's three records are a chain (c09-c10 by
# email, c10-c11 by card); the two Fay Hills are different people
PEOPLE = [
    ("c01", "Ann", "Lee", "ann.lee@example.com", "5550101", "L1", "Leeds"),
    ("c02", "Ann", "Lee", "ann.lee@example.com", "", "L1", "Leeds"),
    ("c03", "Bob", "Stone", "bob.stone@example.com", "", "", "York"),
    ("c04", "Bob", "Stone", "bob.stone@example.com", "5550202", "", "York"),
    ("c05", "Cy", "Park", "cy.park@example.com", "", "", "Bath"),
    ("c06", "Cy", "Park", "cy.park@example.com", "5550303", "", "Bath"),
    ("c07", "Dee", "Moss", "dee.m@example.com", "", "L4", "Hull"),
    ("c08", "Dee", "Moss", "dee.moss@other.org", "", "L4", "Hull"),
    ("c09", "Eve", "Ray", "eve.ray@example.com", "", "", "Ely"),
    ("c10", "Eve", "Ray", "eve.ray@example.com", "", "L5", "Ely"),
    ("c11", "Eve", "Rayburn", "eve.r@other.org", "", "L5", "Wells"),
    ("c12", "Fay", "Hill", "fay1@example.com", "5550606", "", "Derby"),
    ("c13", "Fay", "Hill", "fay2@example.com", "5550707", "L7", "Truro"),
    ("c14", "Gus", "Grant", "gus.grant@example.com", "", "", "Poole"),
    ("c15", "Gus", "Grant", "gus.grant@example.com", "5550808", "L8", "Poole"),
    ("c16", "Hal", "Ives", "hal.ives@example.com", "", "", "Ripon"),
    ("c17", "Ida", "Jones", "ida.jones@example.com", "", "L9", "Selby"),
    ("c18", "Ida", "Jones", "ida.j@other.org", "", "L9", "Selby"),
    ("c19", "Jo", "King", "jo.king@example.com", "5550909", "", "Wigan"),
]


def write_tenant(folder: Path, rows, incremental: bool = True) -> Path:
    (folder / "customers.csv").write_text("")
    write_rows(folder, rows)
    config = {"tenant": "inc", "warehouse": "warehouse.duckdb",
              "sources": {"shop_customers": {
                  "path": "customers.csv", "kind": "customers",
                  "columns": {"id": "pk", "first_name": "given-name", "last_name": "surname",
                              "email": "email", "phone": "phone", "loyalty": "loyalty-id", "city": "city"}}},
              "stitch": {"incremental": incremental, "full_rebuild_every": 5}}
    (folder / "tenant.yaml").write_text(yaml.safe_dump(config))
    return folder / "tenant.yaml"


def write_rows(folder: Path, rows) -> None:
    with open(folder / "customers.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


JOBS: dict[Path, dg.JobDefinition] = {}


def stitch(config: Path, instance, full: bool = False) -> dict:
    """One delivery's run (sources and Stitch); the materializations' metadata by asset name."""
    if config not in JOBS:  # the definitions once per tenant: only the files change between runs
        job = dg.define_asset_job("stitch_run", selection=dg.AssetSelection.groups("sources", "stitch"))
        defs = dg.Definitions.merge(build_definitions(load_config(config)), dg.Definitions(jobs=[job]))
        JOBS[config] = defs.resolve_job_def("stitch_run")
    run_config = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    if full:
        run_config["ops"] = {"stitch_preprocess": {"config": {"full": True}}}
    result = JOBS[config].execute_in_process(instance=instance, run_config=run_config)
    assert result.success
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["every_domain_record_once"] and checks["no_implausible_clusters"], checks
    return {m.asset_key.path[-1]: {k: v.value for k, v in m.materialization.metadata.items()}
            for m in result.get_asset_materialization_events()}


def read(config: Path) -> tuple[dict[str, str], dict[str, str]]:
    """pk -> cdp_id, and the change per cdp_id of this run."""
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"), read_only=True)
    try:
        ids = dict(con.execute("select pk, cdp_id from stitch.unified_coalesced").fetchall())
        changes = {}
        for cdp_id, change in con.execute("select cdp_id, change from stitch.unified_changes_clusters").fetchall():
            changes.setdefault(cdp_id, change)
        return ids, changes
    finally:
        con.close()


def people(ids: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for pk, cdp_id in ids.items():
        groups.setdefault(cdp_id, set()).add(pk)
    return {frozenset(g) for g in groups.values()}


def deliver_and_compare(config: Path, instance, rows) -> tuple[dict, dict, dict, dict]:
    """Deliver `rows`, stitch incrementally, then rebuild in full on the same data: the rebuild
    must find the same people and nothing to reconcile. Returns (ids before, ids after, changes
    of the incremental run, its match metadata)."""
    before, _ = read(config)
    write_rows(config.parent, rows)
    meta = stitch(config, instance)
    assert meta["unified_scores"]["incremental"] is True, meta["unified_scores"]["why"]
    after, changes = read(config)
    full = stitch(config, instance, full=True)
    assert full["unified_scores"]["incremental"] is False
    rebuilt, _ = read(config)
    assert people(rebuilt) == people(after)
    assert full["reconciliation"]["dagster/row_count"] == 0
    assert rebuilt == after  # the rebuild keeps every id the incremental run gave
    return before, after, changes, meta["unified_scores"]


@pytest.fixture(scope="module")
def stitched_once(tmp_path_factory) -> Path:
    """The tenant after its first run (full: no state yet), trained model included."""
    config = write_tenant(tmp_path_factory.mktemp("first_run"), PEOPLE)
    with dg.instance_for_test() as instance:
        meta = stitch(config, instance)
    assert meta["unified_scores"]["incremental"] is False
    assert meta["unified_preprocessed_raw"]["why"] == "first run: no stitched state yet"
    return config.parent


@pytest.fixture()
def tenant(stitched_once, tmp_path):
    """A copy of the first run's tenant folder (warehouse, model, dbt project) to deliver into."""
    folder = tmp_path / "tenant"
    shutil.copytree(stitched_once, folder, symlinks=True)
    with dg.instance_for_test() as instance:
        yield folder / "tenant.yaml", instance


def test_new_records_join_one_person_and_merge_two(tenant):
    config, instance = tenant
    first, _ = read(config)
    joined = PEOPLE + [("c20", "Bob", "Stone", "bob.stone@example.com", "", "", "York")]
    before, after, changes, meta = deliver_and_compare(config, instance, joined)
    assert after["c20"] == before["c03"] and changes[after["c20"]] == "changed"
    assert meta["delta_records"] == 1 and meta["affected_records"] < len(PEOPLE)
    untouched = [pk for pk in before if before[pk] != before["c03"]]
    assert all(after[pk] == before[pk] for pk in untouched)

    # Fay Hill's email and the other Fay Hill's card on one record: one person now
    merging = joined + [("c21", "Fay", "Hill", "fay1@example.com", "", "L7", "Derby")]
    before, after, changes, _ = deliver_and_compare(config, instance, merging)
    assert before["c12"] != before["c13"]
    assert after["c12"] == after["c13"] == after["c21"] and changes[after["c21"]] == "merged"
    assert all(after[pk] == first[pk] for pk in first if pk not in {"c03", "c04", "c12", "c13"})


def test_a_deleted_record_splits_and_a_changed_record_moves(tenant):
    config, instance = tenant
    first, _ = read(config)
    assert first["c09"] == first["c10"] == first["c11"]
    without_link = [r for r in PEOPLE if r[0] != "c10"]
    before, after, changes, meta = deliver_and_compare(config, instance, without_link)
    assert after["c09"] != after["c11"] and "c10" not in after
    assert {changes[after["c09"]], changes[after["c11"]]} <= {"split", "changed", "new"}
    assert "split" in {changes[after["c09"]], changes[after["c11"]]}

    # Cy's second record is now Dee's: it moves, both people change
    moved = [("c06", "Dee", "Moss", "dee.m@example.com", "", "L4", "Hull") if r[0] == "c06" else r
             for r in without_link]
    before, after, changes, _ = deliver_and_compare(config, instance, moved)
    assert after["c06"] == after["c07"] == before["c07"] and after["c05"] == before["c05"]
    # a record moving is, as in a full run, a merge for the person it joins, a split for the other
    assert changes[after["c06"]] == "merged" and changes[after["c05"]] == "split"
    assert all(after[pk] == before[pk] for pk in before if pk not in {"c05", "c06", "c07", "c08"})


def test_a_full_rebuild_reports_records_the_incremental_state_had_elsewhere(tenant):
    config, instance = tenant
    first, _ = read(config)
    nothing = stitch(config, instance)  # no delivery: nothing to re-stitch
    assert nothing["unified_scores"]["incremental"] is True and nothing["unified_scores"]["delta_records"] == 0
    assert read(config) == (first, {})
    write_rows(config.parent, PEOPLE + [("c20", "Hal", "Ives", "hal.ives@example.com", "", "", "Ripon")])
    assert stitch(config, instance)["unified_scores"]["incremental"] is True
    ids, _ = read(config)
    # tamper with the incremental state: Jo King's record filed under Hal's id
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"))
    try:
        con.execute("update stitch.cdp_id_history set cdp_id = ? where pk = 'c19' and valid_to is null",
                    [ids["c16"]])
    finally:
        con.close()
    meta = stitch(config, instance, full=True)
    assert meta["reconciliation"]["dagster/row_count"] >= 1
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"), read_only=True)
    try:
        listed = dict(con.execute("select unique_id, incremental_cdp_id from stitch.reconciliation").fetchall())
    finally:
        con.close()
    assert listed["shop_customers|c19"] == ids["c16"]


def test_a_delta_pair_scores_as_in_a_full_run(stitched_once, tmp_path):
    """Delta x all (link_only, term frequencies over every record) gives every pair of a delta
    record that scoring all records finds, with the same probability."""
    from cdp.stages.stitch import incremental as inc
    from cdp.stages.stitch.assets import artefacts_dir
    from cdp.stages.stitch.model import ModelStore, score_pairs

    shutil.copytree(stitched_once, tmp_path / "t", symlinks=True)
    cfg = load_config(tmp_path / "t" / "tenant.yaml")
    model = ModelStore(artefacts_dir(cfg)).current().load()
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        con.execute("create temp table prepared as select * from stitch.unified_preprocessed_raw")
        delta = ["shop_customers|c03", "shop_customers|c12", "shop_customers|c13"]
        con.execute(f"create temp table {inc.DELTA} as select * from prepared where unique_id in (select unnest(?))",
                    [delta])
        inc.score_delta(con, model, 0.0)
        score_pairs(con, "prepared", model, 0.0, out="all_scores")
        full = con.execute("""select least(unique_id_l, unique_id_r), greatest(unique_id_l, unique_id_r),
                                     round(match_probability, 9) from all_scores
                              where unique_id_l in (select unnest(?)) or unique_id_r in (select unnest(?))""",
                           [delta, delta]).fetchall()
        incremental = con.execute("select unique_id_l, unique_id_r, round(match_probability, 9) "
                                  "from _incr_scores").fetchall()
    finally:
        con.close()
    # c03-c04 agree on a given name, whose term frequency the two stacked inputs would double count
    assert len(full) >= 2 and sorted(incremental) == sorted(full)


def test_the_record_check_counts_a_missing_a_duplicated_and_an_extra_record(stitched_once, tmp_path):
    """every_domain_record_once passes on the stitched tables by their fingerprints, and where
    they differ counts each kind of fault exactly - a swap that keeps the row count included."""
    from cdp.stages.stitch.publish import every_domain_record_once

    shutil.copytree(stitched_once, tmp_path / "t", symlinks=True)
    cfg = load_config(tmp_path / "t" / "tenant.yaml")
    con = duckdb.connect(str(cfg.warehouse_path))

    def counts():
        result = every_domain_record_once(con, cfg)
        return result.passed, {k: v.value for k, v in result.metadata.items()}

    try:
        clean = counts()
        con.execute("update stitch.unified_coalesced set pk = 'c98' where pk = 'c05'")
        swapped = counts()
        con.execute("update stitch.unified_coalesced set pk = 'c05' where pk = 'c98'")
        con.execute("delete from stitch.unified_coalesced where pk = 'c01'")
        con.execute("insert into stitch.unified_coalesced select * from stitch.unified_coalesced where pk = 'c02'")
        con.execute("insert into stitch.unified_coalesced by name "
                    "select * replace ('c99' as pk) from stitch.unified_coalesced where pk = 'c03'")
        faulty = counts()
    finally:
        con.close()
    assert clean == (True, {"domain_records_missing": 0, "records_duplicated": 0, "records_not_in_domain": 0})
    assert swapped == (False, {"domain_records_missing": 1, "records_duplicated": 0, "records_not_in_domain": 1})
    assert faulty == (False, {"domain_records_missing": 1, "records_duplicated": 1, "records_not_in_domain": 1})
