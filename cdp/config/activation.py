"""`destinations:`, `orchestrations:`, `queries:` and `lakehouse:` - where cdp sends its outputs:
file drops, PostgreSQL (BI Connect), webhooks, saved Presto queries and lakehouse folders."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from cdp.config.common import IDENTIFIER, StrictModel, check_schema_tables


class Destination(StrictModel):
    kind: Literal["file"] = Field(
        default="file", description="a file drop into `path` (the kind when none is given): one file "
                                    "per new version of what it sends, named <tenant>__<destination "
                                    "or orchestration>__<UTC time>__<run id>.<format>, written under a "
                                    "temporary name and renamed into place")
    table: str = Field(default="c360.customer_360", description="schema.table to export")
    format: Literal["csv", "parquet"] = Field(default="csv",
                                              description="file format; csv has a header row")
    path: str = Field(description="folder the files are dropped into, relative to the config file")
    columns: list[str] | None = Field(default=None, description="columns to send; all when omitted")
    gzip: bool = Field(default=False, description="gzip the file (csv.gz; parquet with gzip codec)")

    @field_validator("table")
    @classmethod
    def _schema_table(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError(f"{v!r} is not schema.table (lowercase identifiers)")
        return v


class LakehouseSync(StrictModel):
    """Output tables written to a lakehouse folder (Parquet or Delta), so a team on Databricks or
    Spark reads cdp's tables where they are (see lakehouse.py)."""
    folder: str = Field(description="lakehouse folder, relative to the config file (or absolute, e.g. "
                                    "a mounted cloud path); each table goes to <folder>/<schema>/<table>")
    format: Literal["parquet", "delta"] = Field(
        default="parquet", description="parquet: a folder of Parquet files per table, replaced "
                                       "atomically; delta: a Delta table, overwritten as a new version")
    tables: list[str] = Field(default_factory=lambda: ["c360.customer_360"], min_length=1,
                              description="schema.table of each output to write")

    @field_validator("tables")
    @classmethod
    def _schema_tables(cls, v: list[str]) -> list[str]:
        if len(set(check_schema_tables(v))) != len(v):
            raise ValueError("a table is listed twice")
        return v


class Postgres(StrictModel):
    kind: Literal["postgres"] = Field(
        description="BI Connect: `tables` are published to PostgreSQL, all swapped in in one "
                    "transaction, unless none changed since the last publish")
    url_env: str = Field(description="environment variable holding the PostgreSQL URL "
                                     "(postgresql://user:password@host:port/db); never the URL itself")
    tables: list[str] = Field(
        default_factory=lambda: ["bi.dim_customer", "bi.dim_product", "bi.dim_date", "bi.fact_sales",
                                 "bi.fact_sales_items", "c360.customer_360"],
        description="schema.table to publish; each lands in the same schema in PostgreSQL")

    @field_validator("tables")
    @classmethod
    def _schema_tables(cls, v: list[str]) -> list[str]:
        return check_schema_tables(v)


class Webhook(StrictModel):
    kind: Literal["webhook"] = Field(
        description="records are POSTed to `url` as JSON batches; only orchestrations send to a "
                    "webhook (one no orchestration names sends nothing)")
    url: str = Field(description="http(s) URL the records are POSTed to as JSON batches")
    batch_size: int = Field(default=500, ge=1, le=100_000, description="records per request")
    max_retries: int = Field(default=5, ge=0, le=20,
                             description="retries of a batch on connection errors, 429 and 5xx")
    backoff_seconds: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry")
    timeout_seconds: float = Field(default=30, gt=0,
                                   description="seconds to wait to connect, and for each read or write "
                                               "of a request; a timeout is retried like a connection "
                                               "error")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class Orchestration(StrictModel):
    """Sends a segment's members or a saved query's rows to a destination whenever they change."""
    segment: str | None = Field(default=None, description="a segment: sends its members' customer 360 rows")
    query: str | None = Field(default=None, description="a saved query (file stem): sends its rows")
    destination: str = Field(
        description="name of the destination the rows go to (file, postgres: as table "
                    "orchestrations.<name>, or webhook). A destination an orchestration names receives "
                    "only orchestrations' rows: its own `table` or `tables` are not exported")
    fields: dict[str, str] = Field(default_factory=dict,
                                   description="field sent -> column of the segment/query; all columns when empty")
    campaign: str | None = Field(default=None, description="campaign name in campaign_recipients; "
                                                           "the orchestration's name when omitted")

    @model_validator(mode="after")
    def _one_source(self) -> "Orchestration":
        if (self.segment is None) == (self.query is None):
            raise ValueError("an orchestration sends exactly one of: segment, query")
        return self


def _destination_kind(v) -> str:
    return (v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)) or "file"


# a destination is a file drop unless it says otherwise
AnyDestination = Annotated[Union[Annotated[Destination, Tag("file")], Annotated[Postgres, Tag("postgres")],
                                 Annotated[Webhook, Tag("webhook")]],
                           Discriminator(_destination_kind)]


class QuerySettings(StrictModel):
    folder: str = Field(default="queries", description="folder of saved Presto SQL queries (*.sql), "
                                                       "relative to the config file; each becomes an asset")
