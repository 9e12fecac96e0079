"""Splink on Spark: its SparkAPI (made to work with compiled sqlglot), and models moved between
the DuckDB SQL cdp saves them in and the Spark SQL Splink runs on Spark."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from cdp.engine.spark.sql import to_spark_sql


def _splink_spark_api():
    """Splink's SparkAPI, generating Spark SQL with sqlglot's own Spark dialect. Splink's
    `customspark` dialect subclasses sqlglot's Generator, which fails when sqlglot is the
    compiled build (sqlglotc, pulled in by dagster-dbt's sqlglot[rs]): "interpreted classes
    cannot inherit from compiled". Its one change - float literals cast to double written as
    double literals, not decimals - is made here on the syntax tree instead."""
    from splink import SparkAPI

    def double_literals(node):
        if (isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type("double")
                and isinstance(node.this, exp.Literal) and node.this.is_number
                and node.this.name != "Infinity"):
            return exp.Literal.number(f"{node.this.name}D")
        return node

    class CdpSparkAPI(SparkAPI):
        def _setup_for_execute_sql(self, sql: str, physical_name: str) -> str:
            tree = sqlglot.parse_one(sql, read="spark")
            return tree.transform(double_literals).sql(dialect="spark", pretty=True)

    return CdpSparkAPI


def spark_dialect_model(model: dict) -> dict:
    """A trained model (saved with DuckDB SQL) for Splink on Spark: every SQL condition and
    blocking rule transpiled; the parameters are the same."""
    if model.get("sql_dialect") == "spark":
        return model
    out = {**model, "sql_dialect": "spark"}
    out["blocking_rules_to_generate_predictions"] = [
        {**rule, "blocking_rule": _spark_condition(rule["blocking_rule"]), "sql_dialect": "spark"}
        if isinstance(rule, dict) else _spark_condition(rule)
        for rule in model.get("blocking_rules_to_generate_predictions", [])]
    out["comparisons"] = [
        {**comp, "comparison_levels": [
            {**lvl, "sql_condition": _spark_condition(lvl["sql_condition"])}
            for lvl in comp["comparison_levels"]]}
        for comp in model["comparisons"]]
    return out


def duckdb_dialect_model(trained: dict, settings: dict) -> dict:
    """A model trained on Spark, saved as the DuckDB engine saves it: the DuckDB settings (SQL)
    with the trained parameters (lambda, m and u per level - the levels are the same, in the
    same order). So a saved model serves either engine and its fingerprint is engine-free."""
    out = {**settings, "probability_two_random_records_match":
           trained["probability_two_random_records_match"]}
    comparisons = []
    for ours, theirs in zip(settings["comparisons"], trained["comparisons"], strict=True):
        levels = []
        for lvl, fitted in zip(ours["comparison_levels"], theirs["comparison_levels"], strict=True):
            levels.append({**lvl, **{k: fitted[k] for k in ("m_probability", "u_probability")
                                     if k in fitted}})
        comparisons.append({**ours, "comparison_levels": levels})
    out["comparisons"] = comparisons
    return out


def _spark_condition(condition: str) -> str:
    if condition.strip().upper() == "ELSE":
        return condition
    return to_spark_sql(condition)


def splink_spark_api(spark):
    """Splink's database API over a Spark session whose similarity functions cdp registered."""
    return _splink_spark_api()(spark_session=spark, register_udfs_automatically=False)
