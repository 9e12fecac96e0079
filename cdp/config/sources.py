"""`sources:` - one entry per data file: its path and format, its kind, which semantic tag each
column carries, the custom attributes kept beside them and how its text and dates are read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from cdp.config.common import StrictModel, iso_country
from cdp.config.deliveries import Deliveries
from cdp.config.tags import (ATTRIBUTE_NAME, ATTRIBUTE_PREFIX, NAMED_ID_TAG, REQUIRED_TAGS, TAGS_BY_KIND,
                             SourceKind, attribute_name_of, identifier_column)
from cdp.countries import DEFAULT_COUNTRY


AttributeType = Literal["string", "integer", "number", "boolean", "date", "timestamp"]


class Attribute(StrictModel):
    """A source column kept as a custom attribute (`column: type` is short for `{type: type}`)."""
    name: str | None = Field(default=None, description="attribute name (lowercase identifier); default: "
                                                       "the column's name in snake case")
    type: AttributeType = Field(default="string", description="how values are parsed; a value that "
                                                              "does not parse is nulled and counted")

    @property
    def column(self) -> str:
        """Its column in the domain table and every customer 360 table."""
        return ATTRIBUTE_PREFIX + (self.name or "")


class Source(StrictModel):
    path: str = Field(description="CSV or Parquet file, a lakehouse folder of Parquet files (hive "
                                  "partitions too) or a Delta table, or with deliveries: the folder "
                                  "of delivery files; relative to the config file's folder")
    kind: SourceKind = Field(
        description="what a row is: a customer record (customers: Stitch resolves them into people), "
                    "an order (transactions), an order line (transaction_items) or a product "
                    "(products); it decides which semantic tags the columns may carry and which are "
                    "required (see Semantic tags)")
    format: Literal["csv", "parquet", "delta"] | None = Field(
        default=None, description="defaults to the path's suffix; set parquet or delta for a folder")
    columns: dict[str, str] = Field(description="source column -> semantic tag")
    attributes: dict[str, Attribute] = Field(
        default_factory=dict, description="customers: source column -> custom attribute kept beside "
                                          "the tagged columns ({name, type} or just the type)")
    customer_source: str | None = Field(
        default=None, description="for transactions: the customers source their customer-pk refers to")
    order_source: str | None = Field(
        default=None, description="for transaction_items: the transactions source their order-id refers "
                                  "to; when omitted, order ids are looked up in every transactions source")
    deliveries: Deliveries | None = Field(
        default=None, description="the source arrives as a folder of delivery files (path: the "
                                  "folder), each applied once, in file-name order, to the records "
                                  "kept so far (DuckDB engine only)")
    description: str = Field(default="", description="free text describing the source in its Dagster "
                                                     "asset and in dbt's docs of domain.<name>; when "
                                                     "empty, the source's name is used")
    encoding: str | None = Field(
        default=None, description="text encoding of a CSV file (utf-8, cp1252, latin-1, utf-16...); "
                                  "default: a byte order mark, else UTF-8, else the legacy code page "
                                  "detected. Bytes it cannot decode quarantine their line")
    delimiter: str | None = Field(default=None, description="field separator of a CSV file; default: "
                                                            "the most frequent of , ; tab | in the header")
    date_order: Literal["mdy", "dmy"] | None = Field(
        default=None, description="how this source writes a date whose day and month could swap "
                                  "(03/04/1980): mdy (March 4th) or dmy (April 3rd); default: by the "
                                  "record's country (month first in the US, Canada, the Philippines "
                                  "and a few others, day first elsewhere). A date only one reading "
                                  "allows (25/03/1980) is read that way either way")
    country: str | None = Field(
        default=None, description="ISO 3166-1 alpha-2 country of this source's records when a record "
                                  "carries none of its own (phone region, postcode, state and street "
                                  "rules); default: the tenant's country")
    # the tenant's country, set by TenantConfig (travels with the source to Spark executors)
    _tenant_country: str = PrivateAttr(default=DEFAULT_COUNTRY)

    @field_validator("country", mode="before")
    @classmethod
    def _country_code(cls, v: Any) -> str | None:
        return None if v is None else iso_country(v)

    @field_validator("attributes", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {c: {"type": a} if isinstance(a, str) else a for c, a in v.items()}
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        import codecs

        if v is not None:
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"{v!r} is not a text encoding Python knows (e.g. utf-8, cp1252, "
                                 "latin-1, utf-16)") from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 1 or v in '"\r\n'):
            raise ValueError(f"{v!r} is not a field separator: one character, not a quote or line break")
        return v

    @property
    def default_country(self) -> str:
        """The country of a record of this source that carries none: the source's, else the tenant's."""
        return self.country or self._tenant_country
    # identifier columns of every customers source of the tenant (set by TenantConfig): each
    # customer domain table carries all of them, so the sources union for Stitch
    _tenant_identifiers: list[str] = PrivateAttr(default_factory=list)

    @property
    def tenant_identifier_columns(self) -> list[str]:
        return self._tenant_identifiers or sorted(set(self.identifier_columns()) - {"loyalty_id"})

    # attribute column -> type of every customers source of the tenant (set by TenantConfig): each
    # customer domain table carries all of them (null where a source has none), so they union
    _tenant_attributes: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def tenant_attributes(self) -> dict[str, str]:
        return self._tenant_attributes or {a.column: a.type for a in sorted(
            self.attributes.values(), key=lambda a: a.column)}

    @model_validator(mode="after")
    def _check_tags(self) -> "Source":
        allowed = TAGS_BY_KIND[self.kind]
        seen: dict[str, str] = {}
        for column, tag in self.columns.items():
            if self.kind == SourceKind.customers and NAMED_ID_TAG.match(tag):
                pass
            elif tag not in allowed:
                raise ValueError(
                    f"columns.{column}: {tag!r} is not a semantic tag for a {self.kind.value!r} "
                    f"source; expected one of: {', '.join(sorted(allowed))}")
            if tag in seen:
                raise ValueError(
                    f"columns.{column}: tag {tag!r} is already given to column {seen[tag]!r}")
            seen[tag] = column
        names: dict[str, str] = {}
        for column, attr in self.attributes.items():
            where = f"attributes.{column}"
            if self.kind != SourceKind.customers:
                raise ValueError(f"{where}: custom attributes are kept for customers sources only")
            if column in self.columns:
                raise ValueError(f"{where}: the column is already tagged as {self.columns[column]!r}; "
                                 "a column is tagged or kept as an attribute, not both")
            if attr.name is None:
                attr.name = attribute_name_of(column)
                if not ATTRIBUTE_NAME.match(attr.name) or len(attr.name) > 40:
                    raise ValueError(f"{where}: cannot make an attribute name of {column!r}; set name: "
                                     "(a lowercase identifier)")
            elif not ATTRIBUTE_NAME.match(attr.name) or len(attr.name) > 40:
                raise ValueError(f"{where}.name: {attr.name!r} is not an attribute name: lowercase letters, "
                                 "digits and single underscores, starting with a letter, up to 40 characters")
            if attr.name in names:
                raise ValueError(f"{where}: attribute {attr.name!r} is already kept from column "
                                 f"{names[attr.name]!r}")
            names[attr.name] = column
        missing = [t for t in REQUIRED_TAGS[self.kind] if t not in seen]
        if missing:
            raise ValueError(
                f"columns: a {self.kind.value!r} source must tag a column as "
                f"{', '.join(repr(t) for t in missing)}")
        if self.deliveries is not None:
            self._check_deliveries()
        if self.format is None:
            suffix = Path(self.path).suffix.lower().lstrip(".")
            if suffix not in ("csv", "parquet"):
                raise ValueError(f"path: cannot tell the format of {self.path!r}; set format: "
                                 "csv|parquet|delta")
            self.format = suffix  # type: ignore[assignment]
        if self.kind == SourceKind.transactions and not self.customer_source:
            raise ValueError("customer_source: a transactions source must name the customers source "
                             "its customer-pk column refers to")
        return self

    def _check_deliveries(self) -> None:
        """A delivery folder's files are CSV or Parquet; the format defaults to the files' glob."""
        if self.format is None:
            suffix = Path(self.deliveries.files or "*.csv").suffix.lower().lstrip(".")
            self.format = suffix if suffix in ("csv", "parquet") else "csv"  # type: ignore[assignment]
        if self.format == "delta":
            raise ValueError("format: delivery files are csv or parquet, not a delta table")
        flag = self.deliveries.deleted_flag
        if flag is not None and (flag in self.columns or flag in self.attributes):
            raise ValueError(f"deliveries.deleted_flag: column {flag!r} is tagged or kept as an "
                             "attribute; the deleted flag is a column of its own")

    def column_for(self, tag: str) -> str | None:
        return next((c for c, t in self.columns.items() if t == tag), None)

    def domain_columns(self) -> dict[str, str]:
        """source column -> standardised domain column."""
        tags = TAGS_BY_KIND[self.kind]
        return {c: tags.get(t) or identifier_column(t) for c, t in self.columns.items()}

    def identifier_columns(self) -> list[str]:
        """Domain columns of this source's identifier tags (loyalty_id, national_id, other_id...)."""
        return [col for t in self.columns.values() if (col := identifier_column(t))]
