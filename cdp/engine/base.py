"""What a stage may ask of the engine it runs on: the `Warehouse` seam.

cdp's stages are written once, as DuckDB SQL over a connection. Where an engine differs - how a
table is written, which SQL dialect runs natively, where Splink keeps its tables, how a file is
read - the stage asks its connection's warehouse for that capability instead of asking which
engine it is (modelled on Splink's `internals/<backend>/database_api.py`: one abstract base, one
implementation per backend):

    warehouse_of(con).table_exists(con, "segments", "segments")

Two kinds of capability:

- of a *connection* (classmethods, taking the connection): catalog, native SQL, table writes,
  Arrow reads, payload digests, Splink's database API and model dialect. `warehouse_of(con)`
  (cdp/engine/__init__.py) finds the class of a connection, so functions that are handed a
  connection - by an asset, the CLI or a test - need nothing else;
- of a *tenant's warehouse* (instances, built from the config by `warehouse_for(cfg)`): the
  read-write connection, the read-only reader that the read path (`cdp query`, `cdp segment
  preview`, the workspace, preflight) uses, the Dagster resource, and relation names of tables
  another tool (dbt) wrote.

The reader is always a DuckDB connection: on DuckDB the warehouse file opened read-only, on Spark
an in-memory DuckDB with a view per lakehouse table. So whatever engine built the tables, the read
path reads them without a Spark session, in milliseconds.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pandas as pd

from cdp.config import TenantConfig


@dataclass(frozen=True)
class SourceLoaders:
    """How the sources stage loads one file, in the two shapes an engine may run it (the stage
    hands in both; the engine picks its own, so neither asks the other what it is):

    - `in_process(con, name, source, path) -> report`: read and standardise in this process, write
      the domain table and quarantine rows through the connection;
    - `distributed(con, name, source, path, buckets) -> report`: the same as a job on the
      engine's executors, the rows split into `buckets` parts."""

    in_process: Callable[..., dict]
    distributed: Callable[..., dict]


class Warehouse(abc.ABC):
    """A tenant's warehouse on one engine, and the capabilities of that engine's connections."""

    # the engine's name, as the config spells it (`engine:`) and the asset kinds show it
    name: ClassVar[str]
    # the sqlglot dialect a connection runs natively (a PrestoQuery carries its text in each)
    sql_dialect: ClassVar[str]

    def __init__(self, cfg: TenantConfig):
        self.cfg = cfg

    # ---- the tenant's warehouse --------------------------------------------------------------

    @property
    @abc.abstractmethod
    def location(self) -> Path:
        """Where the tables are: the DuckDB file, the lakehouse folder."""

    @abc.abstractmethod
    def resource(self) -> dg.ConfigurableResource:
        """The Dagster `warehouse` resource the assets are handed (a `WarehouseResource`)."""

    @abc.abstractmethod
    def connect(self) -> contextlib.AbstractContextManager:
        """A read-write connection outside Dagster (benchmarks, tests)."""

    @abc.abstractmethod
    def built(self) -> bool:
        """Whether a run has written anything the reader can read."""

    @abc.abstractmethod
    def open_reader(self, config: dict[str, Any] | None = None):
        """A read-only DuckDB connection over the tables the engine wrote; the caller closes it.
        `config`: DuckDB settings (e.g. external access off, one thread). Raises duckdb.Error
        when the warehouse cannot be opened now (a run holds the DuckDB file's write lock)."""

    @contextlib.contextmanager
    def reader(self, config: dict[str, Any] | None = None) -> Iterator[Any]:
        """`open_reader` as a context: closed at the end of the block."""
        con = self.open_reader(config)
        try:
            yield con
        finally:
            con.close()

    # ---- capabilities of a connection --------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def owns(cls, con) -> bool:
        """Whether con is a connection of this engine."""

    @classmethod
    @abc.abstractmethod
    def duckdb_reader(cls, con) -> contextlib.AbstractContextManager:
        """A DuckDB connection reading the tables con's warehouse holds: con itself on DuckDB,
        the lakehouse's Parquet files on Spark (for work done on this machine, e.g. the Profile
        API's serving copy)."""

    @classmethod
    @abc.abstractmethod
    def catalog_columns(cls, con) -> list[tuple[str, str, str, str]]:
        """(schema, table, column, type) of every warehouse table, types as DuckDB spells them."""

    @classmethod
    @abc.abstractmethod
    def table_exists(cls, con, schema: str, table: str) -> bool:
        """Whether schema.table is a table of the warehouse."""

    @classmethod
    def scratch_visible(cls, con, relation: str) -> str:
        """A warehouse table (schema.table) as SQL that still names it while splink_scratch is
        in force (a view over it works inside and outside)."""
        return relation

    @classmethod
    @abc.abstractmethod
    def stored_relation(cls, folder: Path) -> str:
        """A table another tool wrote as Parquet files in `folder` (dbt-spark), as a relation
        in the DuckDB SQL a connection runs."""

    @classmethod
    @abc.abstractmethod
    def native_frame(cls, con, sql: str, limit: int | None = None) -> pd.DataFrame:
        """The rows of a query written in the engine's own dialect (`sql_dialect`)."""

    @classmethod
    @abc.abstractmethod
    def create_table_as(cls, con, schema: str, table: str, sql: str) -> None:
        """Replace schema.table (schema existing) by the rows of a query in the engine's own
        dialect, atomically for readers."""

    @classmethod
    @abc.abstractmethod
    def arrow_rows(cls, con, relation: str):
        """The rows of a relation on the driver as Arrow (a table or a record batch reader)."""

    @classmethod
    @abc.abstractmethod
    def rows_digest(cls, con, query: str) -> tuple[list[str], int, str]:
        """(column names, row count, order-independent sum of row hashes) of a DuckDB query:
        one aggregate scan, for idempotency keys of what a destination receives."""

    @classmethod
    @abc.abstractmethod
    def load_source(cls, con, loaders: SourceLoaders, name: str, source, path: Path, buckets: int) -> dict:
        """Stage 1: write domain.<name> and the source's quarantine rows from the file at
        `path` with the stage's loader that suits this engine; return what the domain table
        asset reports (rows read, loaded, quarantined, ...). `buckets`: how many parts an engine
        that parallelises splits the rows into."""

    # ---- Splink ------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def splink_db_api(cls, con):
        """Splink's database API over the connection."""

    @classmethod
    def splink_model(cls, model):
        """A saved model or Splink settings (DuckDB SQL) in the dialect Splink runs on this
        engine."""
        return model

    @classmethod
    def saved_model(cls, trained: dict, settings) -> dict:
        """A model Splink trained on this engine as cdp saves it: in DuckDB SQL (the SQL of
        `settings`, the Splink settings it was trained with), so a saved model serves either
        engine and its fingerprint is engine-free."""
        return trained

    @classmethod
    @abc.abstractmethod
    def splink_scratch(cls, con) -> contextlib.AbstractContextManager:
        """A context in which Splink's own tables stay out of the warehouse."""

    @classmethod
    @abc.abstractmethod
    def splink_table(cls, physical_name: str) -> str:
        """A table Splink made inside `splink_scratch`, as a relation the connection reads."""


class WarehouseResource(dg.ConfigurableResource):
    """The `warehouse` resource the assets declare: `get_connection()` gives a connection of the
    tenant's engine (a DuckDB connection on the warehouse file, or a SparkConnection over the
    lakehouse). Dagster matches a resource parameter by its name, so an asset declaring
    `warehouse: WarehouseResource` is handed whichever implementation definitions.py binds
    (dagster-duckdb's own DuckDBResource too, as tests do)."""

    @abc.abstractmethod
    def get_connection(self) -> contextlib.AbstractContextManager:
        """A connection for the duration of a `with` block (closed after it)."""

    def release(self) -> None:
        """Let another process open the warehouse now (a dbt step): an engine that keeps it
        open across a run's steps closes it here; the next connection opens it again."""
