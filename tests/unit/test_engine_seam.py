"""The engine seam holds: outside cdp/engine/ no module asks which engine it runs on (`is_spark`,
a connection's `engine` attribute) or opens a DuckDB connection itself (`duckdb.connect`) - a
stage asks its connection's warehouse for a capability, the read path asks the tenant's
warehouse for its reader (cdp/engine/base.py)."""

import ast
from pathlib import Path

import duckdb
import pytest

import cdp
from cdp.engine import warehouse_of
from cdp.engine.base import Warehouse
from cdp.engine.duckdb import DuckDBWarehouse

PACKAGE = Path(cdp.__file__).parent
ENGINE = PACKAGE / "engine"
# module (relative to cdp/) -> why it may do what the seam otherwise keeps in cdp/engine/
ALLOWED: dict[str, str] = {}


def _leaks(path: Path) -> list[str]:
    """`is_spark` named or called, `<x>.engine == ...` sniffed, `duckdb.connect(...)` called."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name) and node.id == "is_spark":
            found.append(f"{node.lineno}: is_spark")
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] == "is_spark":
            found.append(f"{node.lineno}: imports is_spark")
        elif isinstance(node, ast.Attribute) and node.attr == "connect" \
                and isinstance(node.value, ast.Name) and node.value.id == "duckdb":
            found.append(f"{node.lineno}: duckdb.connect")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "engine":
            found.append(f"{node.lineno}: getattr(..., 'engine')")
    return found


def test_no_engine_sniffing_or_own_duckdb_connections_outside_the_engine():
    leaks = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if ENGINE in path.parents:
            continue
        name = str(path.relative_to(PACKAGE))
        if name not in ALLOWED and (found := _leaks(path)):
            leaks[name] = found
    assert not leaks, f"engine questions outside cdp/engine/ (use cdp.engine.warehouse_of / warehouse_for): {leaks}"


def test_the_check_finds_a_leak(tmp_path):
    """The check is not vacuous: each pattern it forbids is found."""
    module = tmp_path / "leaky.py"
    module.write_text("import duckdb\nfrom cdp.engine.spark import is_spark\n"
                      "def f(con):\n    if is_spark(con) or getattr(con, 'engine', '') == 'spark':\n"
                      "        return duckdb.connect()\n")
    assert [leak.split(": ", 1)[1] for leak in _leaks(module)] == \
        ["imports is_spark", "is_spark", "getattr(..., 'engine')", "duckdb.connect"]


def test_a_duckdb_connection_has_the_duckdb_warehouse():
    con = duckdb.connect()
    try:
        assert warehouse_of(con) is DuckDBWarehouse
        con.execute("create schema s")
        DuckDBWarehouse.create_table_as(con, "s", "t", "select 1 as a")
        assert DuckDBWarehouse.table_exists(con, "s", "t") and not DuckDBWarehouse.table_exists(con, "s", "u")
        assert ("s", "t", "a", "INTEGER") in DuckDBWarehouse.catalog_columns(con)
    finally:
        con.close()
    with pytest.raises(TypeError, match="not a connection"):
        warehouse_of(object())


def test_every_engine_implements_the_whole_warehouse():
    from cdp.engine import _engines

    for engine in _engines().values():
        assert issubclass(engine, Warehouse) and not engine.__abstractmethods__, engine
    assert set(_engines()) == {"duckdb", "spark"}
