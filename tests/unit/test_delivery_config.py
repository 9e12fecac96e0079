"""`sources.<source>.deliveries:`: bad values fail naming the field; Spark refuses delivery folders."""

import pytest
import yaml

from cdp.config import ConfigError, load_config


def config(tmp_path, deliveries: dict, **top):
    doc = {"tenant": "t", **top, "sources": {"pos": {
        "path": "pos", "kind": "customers", "columns": {"id": "pk", "email": "email"},
        "deliveries": deliveries}}}
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def test_format_follows_the_files_glob_and_defaults_to_csv(tmp_path):
    assert config(tmp_path, {"mode": "snapshot"}).sources["pos"].format == "csv"
    parquet = config(tmp_path, {"mode": "delta", "files": "day_*.parquet"}).sources["pos"]
    assert parquet.format == "parquet" and parquet.deliveries.data_glob("parquet") == "day_*.parquet"
    assert parquet.deliveries.settle_seconds == 10


@pytest.mark.parametrize("deliveries, message", [
    ({"mode": "daily"}, r"sources\.pos\.deliveries\.mode"),
    ({"mode": "snapshot", "deleted_flag": "gone"}, r"sources\.pos\.deliveries.*deleted_flag: only a delta"),
    ({"mode": "snapshot", "deletes": "del_*.csv"}, r"sources\.pos\.deliveries.*deletes: only a delta"),
    ({"mode": "delta", "files": "in/*.csv"}, r"sources\.pos\.deliveries\.files.*not a file name glob"),
    ({"mode": "delta", "settle_seconds": -1}, r"sources\.pos\.deliveries\.settle_seconds"),
    ({"mode": "delta", "deleted_flag": "email"}, r"sources\.pos.*deliveries\.deleted_flag: column 'email' is tagged"),
    ({"mode": "delta", "when": "daily"}, r"sources\.pos\.deliveries\.when"),
])
def test_bad_deliveries_name_the_field(tmp_path, deliveries, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, deliveries)


def test_a_delta_table_is_no_delivery_format(tmp_path):
    doc = {"mode": "delta"}
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump({"tenant": "t", "sources": {"pos": {
        "path": "pos", "kind": "customers", "format": "delta", "columns": {"id": "pk"}, "deliveries": doc}}}))
    with pytest.raises(ConfigError, match=r"sources\.pos.*format: delivery files are csv or parquet"):
        load_config(path)


def test_spark_refuses_delivery_folders_naming_the_source(tmp_path):
    with pytest.raises(ConfigError, match=r"sources\.pos\.deliveries: delivery folders are loaded on the "
                                          r"duckdb engine only"):
        config(tmp_path, {"mode": "delta"}, engine="spark")


def test_check_config_reads_the_latest_delivery_of_a_folder(tmp_path):
    from cdp.preflight import check_tenant

    (tmp_path / "pos").mkdir()
    cfg = config(tmp_path, {"mode": "delta", "deleted_flag": "gone", "settle_seconds": 0})
    assert [(p.field, p.severity) for p in check_tenant(cfg)] == [("sources.pos.deliveries.files", "warning")]
    (tmp_path / "pos" / "1.csv").write_text("id,email,gone\n1,a@x.com,\n")
    (tmp_path / "pos" / "2.csv").write_text("id,mail\n1,a@x.com\n")
    problems = {p.field: p.message for p in check_tenant(cfg)}
    assert problems["sources.pos.columns.email"].startswith("is tagged but not in 2.csv")
    assert "'gone' is not a column of 2.csv" in problems["sources.pos.deliveries.deleted_flag"]
