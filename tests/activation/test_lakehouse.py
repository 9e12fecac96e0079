"""Lakehouse sync on tiny data: sources read from a lakehouse folder (hive-partitioned Parquet
part files, a Delta table) load the same rows as from the CSV file; output tables written to a
lakehouse folder (Parquet swapped in atomically, Delta as a new version) read back equal."""

from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from dagster_duckdb import DuckDBResource
from deltalake import DeltaTable, write_deltalake

from cdp.config import ConfigError, load_config
from cdp.engine.lakehouse import count_lakehouse_rows
from cdp.stages.activation.lakehouse_sync import lakehouse_asset_key, lakehouse_definitions, sync_table
from cdp.stages.sources.assets import SourceFileError, build_domain_table, file_units

def _tiny_config(config: Path, **changes):
    """The tiny tenant's copy (the tiny_copy fixture) with changes to its top-level sections."""
    doc = yaml.safe_load(config.read_text())
    doc.update(changes)
    config.write_text(yaml.safe_dump(doc))
    return load_config(config)


def _orders_as_text(cfg) -> pa.Table:
    orders = cfg.resolve("orders.csv")
    names = pacsv.read_csv(orders).column_names
    return pacsv.read_csv(orders, convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}))


def _domain_rows(cfg, path: Path, fmt: str | None):
    source = cfg.sources["shop_orders"].model_copy(update={"format": fmt} if fmt else {})
    domain, batch, read = build_domain_table("shop_orders", source, path)
    rows = domain.drop(columns="source_row").sort_values("order_id").astype(object)
    return rows.where(rows.notna(), None).values.tolist(), read, len(batch.rejects), file_units(source, path)


def test_sources_read_from_partitioned_parquet_and_delta(tiny_copy, tmp_path):
    cfg = _tiny_config(tiny_copy)
    from_csv = _domain_rows(cfg, cfg.resolve("orders.csv"), None)
    orders = _orders_as_text(cfg)

    # a Spark-style table folder: hive partitions, part files, a _SUCCESS marker
    folder = tmp_path / "lake" / "shop_orders"
    pq.write_to_dataset(orders, folder, partition_cols=["channel"])
    (folder / "_SUCCESS").touch()
    assert len(list(folder.glob("channel=*"))) == 2
    from_parquet = _domain_rows(cfg, folder, "parquet")

    delta = tmp_path / "lake" / "shop_orders_delta"
    write_deltalake(str(delta), orders.slice(0, 3))
    write_deltalake(str(delta), orders, mode="overwrite")       # only the latest version is read
    from_delta = _domain_rows(cfg, delta, "delta")

    assert from_csv[1] == 8 and from_csv[3] == 8
    assert from_parquet == from_csv
    assert from_delta == from_csv


def test_lakehouse_source_errors_are_clear(tiny_copy, tmp_path):
    cfg = _tiny_config(tiny_copy)
    delta = tmp_path / "orders_delta"
    write_deltalake(str(delta), _orders_as_text(cfg))
    source = cfg.sources["shop_orders"].model_copy(update={"format": "parquet"})
    with pytest.raises(SourceFileError, match="is a Delta table: set the source's format: delta"):
        build_domain_table("shop_orders", source, delta)
    source = cfg.sources["shop_orders"].model_copy(update={"format": "delta"})
    with pytest.raises(SourceFileError, match="is not a Delta table"):
        build_domain_table("shop_orders", source, tmp_path)
    doc = yaml.safe_load(tiny_copy.read_text())
    doc["sources"]["shop_orders"]["path"] = "lake/shop_orders"      # a folder has no suffix
    (tmp_path / "tenant.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="sources.shop_orders.path: cannot tell the format.*csv|parquet|delta"):
        load_config(tmp_path / "tenant.yaml")


@pytest.mark.parametrize("lakehouse, expected", [
    ({"folder": "lake", "tables": ["customer_360"]}, "lakehouse.tables: 'customer_360' is not schema.table"),
    ({"folder": "lake", "format": "iceberg"}, "lakehouse.format: Input should be 'parquet' or 'delta'"),
    ({"tables": ["c360.customer_360"]}, "lakehouse.folder: Field required"),
])
def test_lakehouse_config_errors_name_the_field(tiny_copy, lakehouse, expected):
    with pytest.raises(ConfigError, match=expected):
        _tiny_config(tiny_copy, lakehouse=lakehouse)


def _warehouse(path: Path, emails: list[str]) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists c360")
    con.execute("create or replace table c360.customer_360 as select * from (values "
                + ", ".join(f"('P{i}', '{e}', ['web', 'store'], date '2026-01-0{i + 1}', {i}.5)"
                            for i, e in enumerate(emails))
                + ") t(cdp_id, email, sources, first_order_date, lifetime_revenue)")
    con.close()


def _read_back(path: Path, fmt: str) -> list[tuple]:
    if fmt == "delta":
        table = DeltaTable(str(path)).to_pyarrow_table()
    else:
        table = pq.read_table(path)
    return sorted(tuple(r.values()) for r in table.to_pylist())


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_sync_writes_outputs_and_replaces_them(tiny_copy, tmp_path, fmt):
    cfg = _tiny_config(tiny_copy, lakehouse={"folder": "lake", "format": fmt})
    _warehouse(cfg.warehouse_path, ["a@x.com", "b@x.com", "c@x.com"])
    defs = lakehouse_definitions(cfg)
    key = lakehouse_asset_key("c360.customer_360")
    assert [a.key for a in defs.assets] == [key]
    assert [s.name for s in defs.sensors] == ["lakehouse_sync_on_c360_customer_360_refresh"]
    resources = {"warehouse": DuckDBResource(database=str(cfg.warehouse_path))}

    # a resend as the very first send: nothing to compare with, activation.sends not there yet
    result = dg.materialize(defs.assets, resources=resources, tags={"cdp/resend": "true"})
    assert result.success
    table = tmp_path / "lake" / "c360" / "customer_360"
    assert _read_back(table, fmt) == [
        ("P0", "a@x.com", ["web", "store"], __import__("datetime").date(2026, 1, 1), 0.5),
        ("P1", "b@x.com", ["web", "store"], __import__("datetime").date(2026, 1, 2), 1.5),
        ("P2", "c@x.com", ["web", "store"], __import__("datetime").date(2026, 1, 3), 2.5)]
    [event] = result.asset_materializations_for_node(defs.assets[0].op.name)
    assert event.metadata["dagster/row_count"].value == 3 and event.metadata["sent"].value

    # the same table again (a Materialize all, a second `cdp run`): not rewritten
    written = sorted((p.name, p.stat().st_mtime_ns) for p in table.rglob("*"))
    again = dg.materialize(defs.assets, resources=resources)
    [event] = again.asset_materializations_for_node(defs.assets[0].op.name)
    assert not event.metadata["sent"].value
    assert sorted((p.name, p.stat().st_mtime_ns) for p in table.rglob("*")) == written

    _warehouse(cfg.warehouse_path, ["a@x.com", "new@x.com"])      # the table is rebuilt: fewer rows
    assert dg.materialize(defs.assets, resources=resources).success
    assert [r[1] for r in _read_back(table, fmt)] == ["a@x.com", "new@x.com"]
    assert count_lakehouse_rows(table, fmt) == 2
    assert sorted(p.name for p in table.parent.iterdir()) == ["customer_360"]    # no temp folders left
    if fmt == "delta":                                             # the previous version stays readable
        assert DeltaTable(str(table)).version() == 1
        assert len(DeltaTable(str(table), version=0).to_pyarrow_table()) == 3


def test_parquet_sync_failure_keeps_the_old_table(tiny_copy, tmp_path):
    cfg = _tiny_config(tiny_copy, lakehouse={"folder": "lake"})
    _warehouse(cfg.warehouse_path, ["a@x.com"])
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        folder = cfg.resolve("lake")
        sync_table(con, '"c360"."customer_360"', cfg.lakehouse, folder, "c360", "customer_360")
        with pytest.raises(duckdb.Error):
            sync_table(con, "(select 1 / 0 :: int as broken from range(3) where error('boom') )",
                       cfg.lakehouse, folder, "c360", "customer_360")
    finally:
        con.close()
    table = folder / "c360" / "customer_360"
    assert [r[1] for r in _read_back(table, "parquet")] == ["a@x.com"]
    assert sorted(p.name for p in table.parent.iterdir()) == ["customer_360"]
