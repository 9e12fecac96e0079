"""The embedded engine: the warehouse is one DuckDB file, written by the Dagster run.

The file has one writer (the run, through dagster-duckdb's resource) and any number of read-only
readers between runs (`cdp query`, `cdp segment preview`, the workspace, preflight). A run holds
the file from its first step to its end (its dbt steps open it in their own process meanwhile),
and opening it read-only then fails with a lock error (duckdb.IOException), which readers turn
into "being rebuilt, retry".
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pandas as pd
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from cdp.config import TenantConfig
from cdp.engine.base import Warehouse, WarehouseResource
from cdp.engine.tables import transaction


def local_connection():
    """An in-memory DuckDB connection: computing on this machine, whatever the warehouse's
    engine (Splink's charts from a model, ids from a table of pairs, files written by COPY)."""
    return duckdb.connect()


class DuckDBWarehouseResource(DuckDBResource, WarehouseResource):
    """dagster-duckdb's resource on the warehouse file (it retries while another process holds
    the file's lock), as cdp's `warehouse` resource.

    A run keeps the database open from its first connection to its end (or to `release()`,
    before dbt opens the file in its own process): each step's connection is a cursor on that one
    database, so its buffer pool and catalog stay warm from step to step (the in-process
    executor runs every step in the run's process). Closing the file after every step made each
    step read and decompress again what the step before had in memory (a million-row table's
    first scan ~3.5x a warm one) and checkpoint the file at every close. A step's temp tables
    still end with its connection (they belong to the cursor). Outside a run (sensors, tests)
    every `get_connection()` opens and closes the file, as dagster-duckdb does.

    The run's database checkpoints once, when it is released (before dbt, at the run's end), not
    whenever the write-ahead log passes DuckDB's 16 MB default: a commit (fsynced to the log) is
    as durable either way, and a checkpoint mid-run rewrote every table changed since the run
    began (the domain tables' delivery included) inside whichever step crossed the mark, then
    again at the close (a replayed 1M delivery: 0.2-1.2 s at a Stitch commit, the more the
    machine had written elsewhere; one checkpoint at release: 0.35 s). RUN_CHECKPOINT_THRESHOLD
    still bounds the log of a big run."""

    RUN_CHECKPOINT_THRESHOLD: ClassVar[str] = "1GB"

    _kept: Any = PrivateAttr(default=None)
    _in_run: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context) -> None:
        self._in_run = True

    def teardown_after_execution(self, context) -> None:
        self.release()
        self._in_run = False

    def _open(self):
        config = {"custom_user_agent": "dagster", **self.connection_config}
        if self._in_run:
            config.setdefault("checkpoint_threshold", self.RUN_CHECKPOINT_THRESHOLD)
        return backoff(fn=duckdb.connect, retry_on=(RuntimeError, duckdb.IOException),
                       kwargs={"database": self.database, "read_only": False, "config": config},
                       max_retries=10)

    @contextlib.contextmanager
    def get_connection(self):
        if self._in_run:
            if self._kept is None:
                self._kept = self._open()
            con = self._kept.cursor()
        else:
            con = self._open()
        try:
            yield con
        finally:  # also when the block raised: a connection left open keeps the file locked
            con.close()

    def release(self) -> None:
        if self._kept is not None:
            kept, self._kept = self._kept, None
            kept.close()


class DuckDBWarehouse(Warehouse):
    name = "duckdb"
    sql_dialect = "duckdb"

    def __init__(self, cfg: TenantConfig | None, path: Path | None = None):
        super().__init__(cfg)
        self._path = Path(path) if path is not None else None

    @classmethod
    def at(cls, path: Path) -> DuckDBWarehouse:
        """The warehouse in the DuckDB file at `path`, without its tenant (reading only)."""
        return cls(None, path)

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else self.cfg.warehouse_path

    location = path

    @property
    def connection_config(self) -> dict[str, str]:
        return self.cfg.duckdb_connection_config if self.cfg is not None else {}

    def resource(self) -> DuckDBWarehouseResource:
        return DuckDBWarehouseResource(database=str(self.path), connection_config=self.connection_config)

    @contextlib.contextmanager
    def connect(self):
        con = duckdb.connect(str(self.path), config=self.connection_config)
        try:
            yield con
        finally:
            con.close()

    def built(self) -> bool:
        return self.path.exists()

    def open_reader(self, config: dict[str, Any] | None = None):
        return duckdb.connect(str(self.path), read_only=True, config=config or {})

    # ---- capabilities of a connection --------------------------------------------------------

    @classmethod
    def owns(cls, con) -> bool:
        return isinstance(con, duckdb.DuckDBPyConnection)

    @classmethod
    @contextlib.contextmanager
    def duckdb_reader(cls, con):
        yield con

    @classmethod
    def catalog_columns(cls, con) -> list[tuple[str, str, str, str]]:
        # duckdb_columns() lists what information_schema.columns does, ten times faster
        return con.execute("select schema_name, table_name, column_name, data_type from duckdb_columns() "
                           "where database_name = current_database()").fetchall()

    @classmethod
    def table_exists(cls, con, schema: str, table: str) -> bool:
        return con.execute("select count(*) from information_schema.tables where table_schema = ? "
                           "and table_name = ?", [schema, table]).fetchone()[0] > 0

    @classmethod
    def stored_relation(cls, folder: Path) -> str:
        return f"read_parquet('{folder}/**/*.parquet')"

    @classmethod
    def native_frame(cls, con, sql: str, limit: int | None = None) -> pd.DataFrame:
        text = sql if limit is None else f"select * from ({sql}) limit {int(limit)}"
        return con.execute(text).df()

    @classmethod
    def create_table_as(cls, con, schema: str, table: str, sql: str) -> None:
        with transaction(con):
            con.execute(f'create or replace table "{schema}"."{table}" as {sql}')

    @classmethod
    def arrow_rows(cls, con, relation: str):
        return con.sql(f"select * from {relation}").to_arrow_reader()

    @classmethod
    def rows_digest(cls, con, query: str) -> tuple[list[str], int, str]:
        names = [r[0] for r in con.execute(f"describe {query}").fetchall()]
        [(rows, total)] = con.execute(f"select count(*), coalesce(sum(hash(t)), 0)::varchar "
                                      f"from ({query}) t").fetchall()
        return names, int(rows), total

    @classmethod
    def load_source(cls, con, loaders, name: str, source, path: Path, buckets: int) -> dict:
        return loaders.in_process(con, name, source, path)  # one process: it is the warehouse's

    # ---- Splink ------------------------------------------------------------------------------

    SCRATCH = "stitch_scratch"

    @classmethod
    def splink_db_api(cls, con):
        from splink import DuckDBAPI

        return DuckDBAPI(connection=con)

    @classmethod
    @contextlib.contextmanager
    def splink_scratch(cls, con):
        """Splink's own tables go to an in-memory catalog attached to con, never into the
        warehouse file; our tables (temp tables) and the warehouse stay visible while it works."""
        home = con.execute("select current_database()").fetchall()[0][0]
        # the catalog belongs to the database, not the connection: the block that attached it
        # detaches it, so Splink's tables do not outlive it in a database a run keeps open
        ours = not con.execute("select count(*) from duckdb_databases() where database_name = ?",
                               [cls.SCRATCH]).fetchall()[0][0]
        con.execute(f"attach if not exists ':memory:' as {cls.SCRATCH}")
        con.execute(f"use {cls.SCRATCH}")
        try:
            yield con
        finally:
            con.execute(f'use "{home}"')
            if ours:
                con.execute(f"detach {cls.SCRATCH}")

    @classmethod
    def scratch_visible(cls, con, relation: str) -> str:
        home = con.execute("select current_database()").fetchall()[0][0]
        return f'"{home}".{relation}'  # the scratch catalog is the default one inside splink_scratch

    @classmethod
    def splink_table(cls, physical_name: str) -> str:
        return f"{cls.SCRATCH}.{physical_name}"
