"""`cdp check-config` reports every problem it can find without running, each with file and
field, through the real CLI."""

import shutil
from pathlib import Path

import yaml

from cdp.cli import main

def edit(config: Path, change) -> None:
    doc = yaml.safe_load(config.read_text())
    change(doc)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_every_problem_at_once_with_file_and_field(tiny_copy, tmp_path, capsys):
    config = tiny_copy
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "from_file.sql").write_text("select * from 'customers.csv'")
    (tmp_path / "queries" / "fine.sql").write_text("select cdp_id from c360.customer_360")

    def break_it(doc):
        doc["queries"] = {"folder": "queries"}
        columns = doc["sources"]["shop_customers"]["columns"]
        columns["emial"] = columns.pop("email")
        doc["sources"]["shop_orders"]["path"] = "orderz.csv"
    edit(config, break_it)
    assert main(["check-config", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{config}: sources.shop_customers.columns.emial: is tagged but not in customers.csv (did you mean 'email'?)",
        f"{config}: sources.shop_orders.path: {tmp_path}/orderz.csv does not exist (did you mean orders.csv?)",
        f'{config}: queries.from_file: reads "customers.csv", which is not a warehouse table (schema.table of '
        "lowercase identifiers); files are not read by queries",
        "cdp: 3 errors"]


def test_a_bad_cron_string_is_a_config_error_not_a_traceback_at_run_time(tiny_copy, capsys):
    config = tiny_copy
    edit(config, lambda doc: doc.update(rebuild_cron="0 3 * *"))
    assert main(["check-config", str(config)]) == 2
    assert f"{config}: rebuild_cron: '0 3 * *' is not a cron schedule" in capsys.readouterr().err


def test_a_sample_of_rows_goes_through_the_standardiser(tiny_copy, tmp_path, capsys):
    config = tiny_copy
    rows = ["id,email,born"] + [f"c{i},p{i}@example.com,{i % 12 + 13}/{i % 28 + 32}/1990" for i in range(40)]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    edit(config, lambda doc: doc["sources"].update(people={
        "path": "people.csv", "kind": "customers", "columns": {"id": "pk", "email": "email", "born": "birthdate"}}))
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{config}: sources.people.columns.born: 40 of 40 sampled values are not a valid birthdate and would " \
           "be nulled (warning)" in out
    assert "ok - tenant 'tiny'" in out and "1 warning" in out


def test_a_segment_on_a_missing_column_is_found_once_the_warehouse_exists(pipeline_run, demo_tenant, capsys):
    config = demo_tenant.parent / "bad_segment.yaml"
    shutil.copy(demo_tenant, config)
    edit(config, lambda doc: doc.setdefault("segments", {}).update(
        shoes={"column": "shoe_size", "op": ">", "value": 40}))
    try:
        assert main(["check-config", str(config)]) == 1
    finally:
        config.unlink()
    out = capsys.readouterr().out
    assert f"{config}: segments.shoes: column 'shoe_size' is not in c360.customer_360; it has: " in out
