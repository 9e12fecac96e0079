"""Sources of deliveries: a folder of daily files applied once each, in order, to the live
records of domain.<source> (deltas and snapshots, deletions, quarantine and accounting per
delivery), and the sensor that starts a run when a file lands. Real materializations, real DuckDB."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from cdp.config import load_config
from cdp.stages import sources
from cdp.stages.sources.delivery_assets import DELIVERY_JOB, DELIVERY_SENSOR

POS_DAY1 = """\
id,first,email,is_deleted
C1,Ann,ann@example.com,
C2,Bob,bob@example.com,0
C3,Cy,cy@example.com,no
"""
POS_DAY2 = """\
id,first,email,is_deleted
C1,Ann,ann@example.com,
C2,Bob,bob.new@example.com,
C3,,,1
C4,Dee,dee@example.com,
"""
POS_DAY2_DELETES = "id\nC1\n"
CRM_MONDAY = """\
member,name,mail,dob,changed,points,vip,joined
K1,Kay,kay@example.com,04/07/1980,2026-11-30 09:00:00,12,yes,2020-01-02
K2,Lee,lee@example.com,,,,,
K3,Max,max@example.com,1975-12-31,,3,no,
"""
CRM_TUESDAY = """\
member,name,mail,dob,changed,points,vip,joined
K1,Kay,kay@example.com,04/07/1980,2026-11-30 09:00:00,12,yes,2020-01-02
K2,Lee,lee.two@example.com,,,,,
"""


def tenant(folder: Path) -> Path:
    """A tenant with a delta source (flag and deletes files) and a snapshot source."""
    (folder / "pos").mkdir()
    (folder / "crm").mkdir()
    doc = {"tenant": "t", "sources": {
        "pos": {"path": "pos", "kind": "customers",
                "columns": {"id": "pk", "first": "given-name", "email": "email"},
                "deliveries": {"mode": "delta", "files": "*_changes.csv", "deleted_flag": "is_deleted",
                               "deletes": "*_deletes.csv", "settle_seconds": 0}},
        "crm": {"path": "crm", "kind": "customers",
                "columns": {"member": "pk", "name": "given-name", "mail": "email", "dob": "birthdate",
                            "changed": "update-datetime"},
                "attributes": {"points": "integer", "vip": "boolean", "joined": "date"},
                "deliveries": {"mode": "snapshot", "settle_seconds": 0}}}}
    path = folder / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def deliver(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def run(cfg, warehouse: Path) -> dg.ExecuteInProcessResult:
    stage = sources.definitions(cfg)
    result = dg.materialize([*stage.assets, *stage.asset_checks],
                            resources={"warehouse": DuckDBResource(database=str(warehouse))})
    assert result.success
    for check in result.get_asset_check_evaluations():
        assert check.passed, check.metadata["problems"]
    return result


def metadata(result, source: str) -> dict:
    mat = result.asset_materializations_for_node(f"domain__{source}")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def rows(warehouse: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture()
def setup(tmp_path):
    cfg = load_config(tenant(tmp_path))
    return cfg, tmp_path, tmp_path / "wh.duckdb"


def test_delta_inserts_updates_and_deletes_by_flag_and_deletes_file(setup):
    cfg, folder, wh = setup
    deliver(folder / "pos", "day1_changes.csv", POS_DAY1)
    first = metadata(run(cfg, wh), "pos")
    assert first["deliveries_applied"] == ["day1_changes.csv"] and first["records_inserted"] == 3
    assert rows(wh, "select pk, delivery from domain.pos order by pk") == [
        ("C1", "day1_changes.csv"), ("C2", "day1_changes.csv"), ("C3", "day1_changes.csv")]
    (day1_arrival,) = rows(wh, "select max(arrived_at) from domain.pos")[0]

    deliver(folder / "pos", "day2_changes.csv", POS_DAY2)
    deliver(folder / "pos", "day2_deletes.csv", POS_DAY2_DELETES)
    second = metadata(run(cfg, wh), "pos")
    assert second["deliveries_applied"] == ["day2_changes.csv", "day2_deletes.csv"]
    assert (second["records_inserted"], second["records_updated"], second["records_unchanged"],
            second["records_deleted"]) == (1, 1, 1, 2)
    live = rows(wh, "select pk, email, delivery, arrived_at > ? from domain.pos order by pk".replace(
        "?", f"timestamp '{day1_arrival}'"))
    assert live == [("C2", "bob.new@example.com", "day2_changes.csv", True),
                    ("C4", "dee@example.com", "day2_changes.csv", True)]
    assert "is_deleted" not in [c for (c, *_) in rows(wh, "describe domain.pos")]
    assert rows(wh, "select key, delivery from domain.deleted_records where source = 'pos' order by key") == [
        ("C1", "day2_deletes.csv"), ("C3", "day2_changes.csv")]
    ledger = rows(wh, "select delivery, rows_read, rows_loaded, rows_quarantined, rows_deleted "
                      "from domain.deliveries where source = 'pos' order by delivery")
    assert ledger == [("day1_changes.csv", 3, 3, 0, 0), ("day2_changes.csv", 4, 4, 0, 1),
                      ("day2_deletes.csv", 1, 1, 0, 1)]


def test_snapshot_deletes_absent_key_and_unchanged_record_keeps_its_arrival(setup):
    cfg, folder, wh = setup
    deliver(folder / "crm", "2026-12-01.csv", CRM_MONDAY)
    run(cfg, wh)
    before = dict(rows(wh, "select pk, arrived_at from domain.crm"))
    deliver(folder / "crm", "2026-12-02.csv", CRM_TUESDAY)
    meta = metadata(run(cfg, wh), "crm")
    assert (meta["records_updated"], meta["records_unchanged"], meta["records_deleted"]) == (1, 1, 1)
    live = {pk: (d, a) for pk, d, a in rows(wh, "select pk, delivery, arrived_at from domain.crm")}
    assert live["K1"] == ("2026-12-01.csv", before["K1"])   # re-delivered unchanged: not new
    assert rows(wh, "select attr_points, attr_vip, attr_joined::varchar, birthdate::varchar "
                    "from domain.crm where pk = 'K1'") == [(12, True, "2020-01-02", "1980-04-07")]
    assert live["K2"][0] == "2026-12-02.csv" and live["K2"][1] > before["K2"]
    assert "K3" not in live
    assert rows(wh, "select source, key, delivery from domain.deleted_records") == [
        ("crm", "K3", "2026-12-02.csv")]


def test_a_delivery_is_applied_once_and_later_deltas_win(setup):
    cfg, folder, wh = setup
    deliver(folder / "pos", "day1_changes.csv", POS_DAY1)
    deliver(folder / "pos", "day2_changes.csv", "id,first,email,is_deleted\nC1,Ann,ann@later.com,\n")
    run(cfg, wh)
    assert rows(wh, "select email, delivery from domain.pos where pk = 'C1'") == [
        ("ann@later.com", "day2_changes.csv")]
    snapshot = rows(wh, "select * from domain.pos order by pk")
    again = metadata(run(cfg, wh), "pos")
    assert again["deliveries_applied"] == [] and again["deliveries_already_applied"] == 2
    assert rows(wh, "select * from domain.pos order by pk") == snapshot
    assert rows(wh, "select count(*) from domain.deliveries where source = 'pos'") == [(2,)]


def test_a_changed_applied_delivery_or_a_late_one_is_refused_by_name(setup):
    cfg, folder, wh = setup
    deliver(folder / "pos", "day2_changes.csv", POS_DAY1)
    run(cfg, wh)
    for rewritten in (POS_DAY2, POS_DAY1.replace("Ann", "Amy")):   # the second of the same size
        deliver(folder / "pos", "day2_changes.csv", rewritten)
        with pytest.raises(Exception, match=r"day2_changes\.csv changed after it was applied"):
            run(cfg, wh)
    deliver(folder / "pos", "day2_changes.csv", POS_DAY1)   # back as it was applied
    deliver(folder / "pos", "day1_changes.csv", POS_DAY2)
    with pytest.raises(Exception, match=r"day1_changes\.csv.*sort before 'day2_changes\.csv'"):
        run(cfg, wh)


def test_bad_rows_of_a_delivery_are_quarantined_and_accounted_for(setup):
    cfg, folder, wh = setup
    deliver(folder / "pos", "day1_changes.csv", POS_DAY1)
    deliver(folder / "pos", "day2_changes.csv",
            'id,first,email,is_deleted\n,No,key@example.com,\nC2,"Two\nLines",b@x.com,\n'
            "C2,Dup,dup@example.com,\nC5,Too,many,fields,here\n,,,yes\n")
    run(cfg, wh)
    assert rows(wh, "select delivery, source_row, reason from domain.quarantine where source = 'pos' "
                    "order by source_row") == [
        ("day2_changes.csv", 2, "missing pk"), ("day2_changes.csv", 5, "duplicate pk (first seen at line 3)"),
        ("day2_changes.csv", 6, "expected 4 fields, found 5"), ("day2_changes.csv", 7, "missing pk")]
    assert rows(wh, "select rows_read, rows_loaded, rows_quarantined, units_in_file, accounting_problems "
                    "from domain.deliveries where delivery = 'day2_changes.csv'") == [(5, 1, 4, 6, "[]")]
    assert rows(wh, "select given_name from domain.pos where pk = 'C2'") == [("Two Lines",)]

    # the check counts the quarantine itself: a quarantined row lost fails it, naming the delivery
    con = duckdb.connect(str(wh))
    con.execute("delete from domain.quarantine where source = 'pos' and source_row = 7")
    con.close()
    stage = sources.definitions(cfg)
    checks = [c for c in stage.asset_checks if dg.AssetKey(["domain", "pos"]) in
              {k.asset_key for k in c.check_keys}]
    result = dg.materialize([*stage.assets, *checks], selection=dg.AssetSelection.checks(*checks),
                            resources={"warehouse": DuckDBResource(database=str(wh))}, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "day2_changes.csv: domain.quarantine holds 3" in json.dumps(evaluation.metadata["problems"].value)


def test_sensor_requests_one_run_per_new_file_and_waits_for_unfinished_ones(setup):
    cfg, folder, wh = setup
    defs = dg.Definitions.merge(sources.definitions(cfg), dg.Definitions(
        resources={"warehouse": DuckDBResource(database=str(wh))}))
    (sensor,) = [s for s in defs.sensors if s.name == DELIVERY_SENSOR]
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=None)
        assert isinstance(sensor(context), dg.SkipReason)
        deliver(folder / "pos", "day1_changes.csv.part", POS_DAY1)   # still being written
        assert isinstance(sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor)),
                          dg.SkipReason)
        os.rename(folder / "pos" / "day1_changes.csv.part", folder / "pos" / "day1_changes.csv")
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        request = sensor(context)
        assert isinstance(request, dg.RunRequest) and request.run_key.startswith("deliveries@")
        again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        assert isinstance(sensor(again), dg.SkipReason)

        # the run it requests applies the delivery
        result = defs.resolve_job_def(DELIVERY_JOB).execute_in_process(instance=instance, tags=request.tags)
        assert result.success
        assert rows(wh, "select count(*) from domain.pos") == [(3,)]


def test_sensor_leaves_a_file_modified_within_settle_seconds(tmp_path):
    path = tenant(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["sources"]["crm"]["deliveries"]["settle_seconds"] = 60
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    (sensor,) = [s for s in sources.definitions(cfg).sensors if s.name == DELIVERY_SENSOR]
    deliver(tmp_path / "crm", "2026-12-01.csv", CRM_MONDAY)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(sensor(context), dg.SkipReason)
        an_hour_ago = time.time() - 3600
        os.utime(tmp_path / "crm" / "2026-12-01.csv", (an_hour_ago, an_hour_ago))
        assert isinstance(sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor)),
                          dg.RunRequest)


def test_parquet_deliveries_with_a_boolean_deleted_flag(tmp_path):
    import pandas as pd

    (tmp_path / "app").mkdir()
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump({"tenant": "t", "sources": {"app": {
        "path": "app", "kind": "customers", "columns": {"id": "pk", "email": "email"},
        "deliveries": {"mode": "delta", "files": "*.parquet", "deleted_flag": "gone", "settle_seconds": 0}}}}))
    pd.DataFrame({"id": ["A1", "A2"], "email": ["a1@x.com", "a2@x.com"], "gone": [False, False]}).to_parquet(
        tmp_path / "app" / "001.parquet")
    pd.DataFrame({"id": ["A2", None], "email": [None, "x@x.com"], "gone": [True, False]}).to_parquet(
        tmp_path / "app" / "002.parquet")
    wh = tmp_path / "wh.duckdb"
    meta = metadata(run(load_config(path), wh), "app")
    assert meta["deliveries_applied"] == ["001.parquet", "002.parquet"] and meta["records_deleted"] == 1
    assert rows(wh, "select pk from domain.app") == [("A1",)]
    assert rows(wh, "select delivery, source_row, reason from domain.quarantine") == [
        ("002.parquet", 2, "missing pk")]


def test_customer_tables_of_both_kinds_of_source_union_for_stitch(tmp_path):
    from cdp.stages.stitch.preprocess import RECORDS, stage_customer_records

    path = tenant(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["sources"]["shop"] = {"path": "shop.csv", "kind": "customers", "columns": {"sid": "pk", "mail": "email"}}
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "shop.csv").write_text("sid,mail\nS1,s1@example.com\n")
    deliver(tmp_path / "pos", "day1_changes.csv", POS_DAY1)
    cfg, wh = load_config(path), tmp_path / "wh.duckdb"
    run(cfg, wh)
    assert rows(wh, "select delivery, arrived_at from domain.shop") == [(None, None)]
    con = duckdb.connect(str(wh))
    try:
        assert stage_customer_records(con, cfg) == 4
        assert con.execute(f"select count(distinct source) from {RECORDS}").fetchall() == [(2,)]
    finally:
        con.close()


def test_a_snapshot_record_set_aside_keeps_its_previous_version(tmp_path):
    path = tenant(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["sources"]["orders"] = {
        "path": "orders", "kind": "transactions", "customer_source": "crm",
        "columns": {"order": "order-id", "member": "customer-pk", "ts": "order-datetime", "total": "order-revenue"},
        "deliveries": {"mode": "snapshot", "settle_seconds": 0}}
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "orders").mkdir()
    deliver(tmp_path / "orders", "1.csv", "order,member,ts,total\nO1,K1,2026-11-30 10:00,10\nO2,K2,2026-11-30 11:00,5\n")
    deliver(tmp_path / "orders", "2.csv", "order,member,ts,total\nO1,K1,2026-11-30 10:00,ten\n")
    wh = tmp_path / "wh.duckdb"
    meta = metadata(run(load_config(path), wh), "orders")
    assert meta["records_deleted"] == 1 and meta["rows_quarantined"] == 1
    assert rows(wh, "select order_id, order_revenue, delivery from domain.orders") == [("O1", 10.0, "1.csv")]
    assert rows(wh, "select key, delivery from domain.deleted_records") == [("O2", "2.csv")]
