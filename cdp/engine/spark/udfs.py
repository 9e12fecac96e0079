"""Similarity functions for Spark SQL, scoring as DuckDB's do (the shared SQL calls them by
DuckDB's names). They run on the executors: a cluster's workers need rapidfuzz installed."""

from __future__ import annotations

import pandas as pd


def register_similarity_functions(spark) -> None:
    """Splink's Scala similarity functions (jaro_winkler, damerau_levenshtein, ...) as Spark SQL
    functions: the shared SQL calls them by the names DuckDB gives them."""
    from splink.internals.spark.jar_location import get_scala_udfs

    for name, java_class, return_type in get_scala_udfs():
        spark.udf.registerJavaFunction(name, java_class, return_type)
    # The jar's Jaro-Winkler is another implementation than DuckDB's and scores some pairs
    # differently (0.9467 vs 0.9502 for a one-letter typo in a 28-letter email: across a 0.95
    # level). DuckDB's is rapidfuzz's algorithm: the same one, vectorized, keeps Spark's
    # scores equal to DuckDB's.
    spark.udf.register("jaro_winkler", _jaro_winkler_udf())


def _jaro_winkler_udf():
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")
    def jaro_winkler(left: pd.Series, right: pd.Series) -> pd.Series:
        from rapidfuzz.distance import JaroWinkler

        return pd.Series([
            (JaroWinkler.similarity(a, b) if a and b else 0.0)   # DuckDB: an empty string scores 0
            if isinstance(a, str) and isinstance(b, str) else None
            for a, b in zip(left, right)], dtype="float64")

    return jaro_winkler
