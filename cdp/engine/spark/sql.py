"""DuckDB SQL as Spark SQL: statements transpiled with sqlglot, parameters bound as literals.

cdp's SQL is written once, in DuckDB's dialect. A statement for Spark is parsed as DuckDB and
written as Spark (sqlglot), with the few rewrites sqlglot does not make itself; `?` and `$name`
parameters are bound as literals before it is parsed (Spark SQL has no bound parameters).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlglot
from sqlglot import exp

from cdp.errors import UserError


class UnsupportedOnSpark(UserError, NotImplementedError):
    """A statement the Spark engine cannot run (e.g. UPDATE on Parquet); the SQL must be made
    portable instead."""


def to_spark_sql(sql: str) -> str:
    """One DuckDB statement (or expression) as Spark SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return _spark_tree(tree).sql(dialect="spark")


def _spark_tree(tree: exp.Expression) -> exp.Expression:
    def fix(node: exp.Expression) -> exp.Expression:
        # Splink's jar names DuckDB's jaro_winkler_similarity `jaro_winkler`
        if isinstance(node, exp.JarowinklerSimilarity):
            return exp.Anonymous(this="jaro_winkler", expressions=[node.this, node.expression])
        # DuckDB's list(x order by y) keeps the order; Spark's collect_list does not promise one
        if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
            return exp.func("array_sort", exp.ArrayAgg(this=node.this.this))
        # Spark SQL has no MATERIALIZED hint (it plans a CTE used twice on its own)
        if isinstance(node, exp.CTE) and node.args.get("materialized"):
            node.set("materialized", None)
        return node

    return tree.transform(fix)


def _literal(value: Any) -> str:
    """A Python value as a DuckDB SQL literal (parameters are bound before transpiling)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return f"timestamp '{pd.Timestamp(value).isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, (list, tuple, set)):
        items = [_literal(v) for v in value]
        return f"[{', '.join(items)}]" if items else "[null::varchar]"
    return "'" + str(value).replace("'", "''") + "'"


def bind(sql: str, params) -> str:
    """Replace each `?` outside quotes by the literal of its parameter; with a mapping, each
    `$name` (DuckDB's named parameters)."""
    if not params:
        return sql
    if isinstance(params, Mapping):
        def named(m: re.Match) -> str:
            if m.group(1):
                return m.group(1)
            if m.group(2) not in params:
                raise KeyError(f"no value for SQL parameter ${m.group(2)}")
            return _literal(params[m.group(2)])
        return re.sub(r"('(?:[^']|'')*'|\"[^\"]*\")|\$([A-Za-z_][A-Za-z0-9_]*)", named, sql)
    values = iter(params)
    return re.sub(r"('(?:[^']|'')*'|\"[^\"]*\")|\?",
                  lambda m: m.group(1) if m.group(1) else _literal(next(values)), sql)
