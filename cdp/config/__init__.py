"""Tenant configuration: sources, semantic tags, stitch settings, merge rules and destinations.

A tenant is described by one YAML file validated with pydantic. Paths inside it are relative
to the file's own folder. Any error names the file, the field and what is wrong, e.g.::

    tenants/demo/tenant.yaml: sources.pos_customers.columns.FirstName: 'givenname' is not a
    semantic tag for a 'customers' source; expected one of: address, birthdate, ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError,
                      field_validator, model_validator)

from cdp.countries import DEFAULT_COUNTRY, country_code, is_country_code
from cdp.paths import DEMO_CONFIG

DEFAULT_CONFIG = DEMO_CONFIG

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_schema_tables(tables: list[str]) -> list[str]:
    """Each entry is schema.table, both lowercase identifiers."""
    for t in tables:
        parts = t.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError(f"{t!r} is not schema.table (lowercase identifiers)")
    return tables


class SourceKind(str, Enum):
    customers = "customers"
    transactions = "transactions"
    transaction_items = "transaction_items"
    products = "products"


# Semantic tags per kind: tag -> column name in the domain table.
PROFILE_TAGS = {
    "pk": "pk",
    "given-name": "given_name",
    "surname": "surname",
    "full-name": "full_name",
    "email": "email",
    "phone": "phone",
    "address": "address",
    "city": "city",
    "state": "state",
    "postal": "postal",
    "country": "country",
    "birthdate": "birthdate",
    "gender": "gender",
    "loyalty-id": "loyalty_id",
    "create-datetime": "created_at",
    "update-datetime": "updated_at",
    # the street line in two columns: the number is put in front of `address` (12 + oak st)
    "street-number": "street_number",
    "address-line-2": "address2",       # flat, building, suite: kept beside the street line
    # identifiers other than the loyalty card; `other-id:<name>` for several per source
    "national-id": "national_id",
    "other-id": "other_id",
}
# `other-id:passport` -> domain column other_id_passport: any number of identifiers per source
NAMED_ID_TAG = re.compile(r"^other-id:([a-z][a-z0-9_]{0,40})$")


def identifier_column(tag: str) -> str | None:
    """The domain column of an identifier tag (loyalty-id, national-id, other-id[:name])."""
    if tag in ("loyalty-id", "national-id", "other-id"):
        return PROFILE_TAGS[tag]
    m = NAMED_ID_TAG.match(tag)
    return f"other_id_{m.group(1)}" if m else None
TRANSACTION_TAGS = {
    "order-id": "order_id",
    "customer-pk": "customer_pk",
    "order-datetime": "order_datetime",
    "order-revenue": "order_revenue",
    "order-discount": "order_discount",
    "order-status": "order_status",
    "channel": "channel",
    "store-id": "store_id",
    "order-return-amount": "return_amount",
}
ITEM_TAGS = {
    "order-id": "order_id",
    "line-number": "line_number",
    "product-id": "product_id",
    "item-quantity": "item_quantity",
    "item-unit-price": "item_unit_price",
    "item-revenue": "item_revenue",
    "product-category": "product_category",
}
PRODUCT_TAGS = {
    "product-id": "product_id",
    "product-name": "product_name",
    "product-category": "product_category",
    "product-brand": "product_brand",
    "product-price": "product_price",
}
TAGS_BY_KIND: dict[SourceKind, dict[str, str]] = {
    SourceKind.customers: PROFILE_TAGS,
    SourceKind.transactions: TRANSACTION_TAGS,
    SourceKind.transaction_items: ITEM_TAGS,
    SourceKind.products: PRODUCT_TAGS,
}
REQUIRED_TAGS: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.customers: ("pk",),
    SourceKind.transactions: ("order-id", "customer-pk", "order-datetime", "order-revenue"),
    SourceKind.transaction_items: ("order-id", "product-id", "item-quantity", "item-revenue"),
    SourceKind.products: ("product-id",),
}

# Fields of the unified customer profile that merge rules apply to.
PROFILE_FIELDS = (
    "given_name", "surname", "full_name", "email", "phone", "address", "city", "state",
    "postal", "country", "birthdate", "gender", "loyalty_id",
)
ADDRESS_GROUP = ("address", "city", "state", "postal", "country")

# Custom attributes: a customers column without a built-in tag kept as `attr_<name>` in the domain
# table, unified_coalesced, merged_customers and every customer_360 (the prefix keeps it clear of
# built-in columns). Type -> Spark type of its column (in DuckDB: VARCHAR, BIGINT, DOUBLE,
# BOOLEAN, DATE, TIMESTAMP, from the dtypes of standardize.attribute_values).
ATTRIBUTE_TYPES = {"string": "string", "integer": "bigint", "number": "double", "boolean": "boolean",
                   "date": "date", "timestamp": "timestamp"}
ATTRIBUTE_PREFIX = "attr_"
# no '__' (cdp's own suffixes: __from, __all) and no trailing '_'
ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ATTRIBUTE_FIELD = re.compile(r"^attr_[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def attribute_name_of(column: str) -> str:
    """The attribute name a source column gives when none is set: snake case ('LoyaltyTier',
    'Loyalty Tier' -> loyalty_tier)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column.strip())
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")


class ConfigError(ValueError):
    """A tenant config is invalid; the message names the file, the field and the problem."""


def iso_country(v: Any) -> str:
    """An ISO 3166-1 alpha-2 code, uppercased; the error suggests the code of a country name."""
    if v is False:  # YAML 1.1 reads an unquoted NO as false
        raise ValueError("got false, which is how YAML reads an unquoted NO: write \"NO\" for Norway")
    if isinstance(v, str) and is_country_code(v.strip()):
        return v.strip().upper()
    hint = country_code(v) if isinstance(v, str) else None
    raise ValueError(f"{v!r} is not an ISO 3166-1 country code "
                     + (f"(did you mean {hint}?)" if hint else "(two letters, e.g. US, GB, AU, DE)"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


AttributeType = Literal["string", "integer", "number", "boolean", "date", "timestamp"]


class Attribute(_Strict):
    """A source column kept as a custom attribute (`column: type` is short for `{type: type}`)."""
    name: str | None = Field(default=None, description="attribute name (lowercase identifier); default: "
                                                       "the column's name in snake case")
    type: AttributeType = Field(default="string", description="how values are parsed; a value that "
                                                              "does not parse is nulled and counted")

    @property
    def column(self) -> str:
        """Its column in the domain table and every customer 360 table."""
        return ATTRIBUTE_PREFIX + (self.name or "")


class Source(_Strict):
    path: str = Field(description="CSV or Parquet file, a lakehouse folder of Parquet files (hive "
                                  "partitions too) or a Delta table; relative to the config file's folder")
    kind: SourceKind
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
    description: str = ""
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

    def column_for(self, tag: str) -> str | None:
        return next((c for c, t in self.columns.items() if t == tag), None)

    def domain_columns(self) -> dict[str, str]:
        """source column -> standardised domain column."""
        tags = TAGS_BY_KIND[self.kind]
        return {c: tags.get(t) or identifier_column(t) for c, t in self.columns.items()}

    def identifier_columns(self) -> list[str]:
        """Domain columns of this source's identifier tags (loyalty_id, national_id, other_id...)."""
        return [col for t in self.columns.values() if (col := identifier_column(t))]


class Blocklist(_Strict):
    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list, description="street lines, e.g. a store's address")
    names: list[str] = Field(default_factory=list)
    max_people_per_value: int = Field(
        default=5, ge=2,
        description="an email, phone or address carried by more different people than this is junk")


DETERMINISTIC_FIELDS = ("email", "phone", "loyalty_id", "given_name", "surname", "birthdate",
                        "address", "postal", "city")
IDENTIFIER_FIELD = re.compile(r"^(national_id|other_id|other_id_[a-z][a-z0-9_]{0,40})$")


class StitchSettings(_Strict):
    match_threshold: float = Field(default=0.9, gt=0, lt=1,
                                   description="pairs at or above this match probability are linked")
    score_threshold: float = Field(default=0.01, ge=0, lt=1,
                                   description="pairs below this probability are not kept in unified_scores")
    u_sampling_max_pairs: int = Field(default=2_000_000, ge=10_000)
    seed: int = 42
    blocklist: Blocklist = Field(default_factory=Blocklist)
    labels: str | None = Field(
        default=None, description="CSV of analyst labels (source_l, pk_l, source_r, pk_r, label: "
                                  "match|no_match, note), relative to the config; overrides the model")
    households: Literal["auto"] | bool = Field(
        default="auto",
        description="household protections: the model alone never links two records whose given "
                    "names conflict, and birth dates further apart than birthdate_gap_days never "
                    "share a cdp_id. auto: on when the data shows households - records that share "
                    "an address, phone or email under different given names are mostly born years "
                    "apart (family members), not the same person with a changed name")
    birthdate_gap_days: int | None = Field(
        default=366, ge=0,
        description="with household protections on: records whose birth dates are further apart "
                    "than this never share a cdp_id (a typo stays within a year; two family "
                    "members do not); null to disable")
    max_pairs_per_record: float = Field(
        default=20, gt=0,
        description="a blocking rule is used for prediction only if it yields at most this many "
                    "candidate pairs per record (a broad rule such as 'same birth date' helps on "
                    "small data and is skipped where it would compare too many pairs)")
    max_cluster_size: int = Field(default=25, ge=2,
                                  description="clusters larger than this are flagged by an asset check")
    detailed_examples: int = Field(default=50, ge=0,
                                   description="clusters sampled into stitch.detailed_examples")
    deterministic_rules: list[list[str]] = Field(
        default_factory=lambda: [["loyalty_id"], ["email"]],
        description="records equal on every field of a rule are linked outright, when the value "
                    "belongs to one person (given names agree) - e.g. [[loyalty_id], [email, surname]], "
                    "[[national_id]]. A default rule on a field the tenant does not have is left out")

    @field_validator("households", mode="before")
    @classmethod
    def _households_setting(cls, v):
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"{v!r} is not one of: auto, true, false")

    @field_validator("deterministic_rules")
    @classmethod
    def _known_match_fields(cls, v: list[list[str]]) -> list[list[str]]:
        for i, rule in enumerate(v):
            if not rule:
                raise ValueError(f"rule {i} is empty: list one or more fields")
            for name in rule:
                if name not in DETERMINISTIC_FIELDS and not IDENTIFIER_FIELD.match(name):
                    raise ValueError(f"rule {i}: {name!r} cannot be matched on; expected one of: "
                                     f"{', '.join(DETERMINISTIC_FIELDS)}, national_id, other_id, "
                                     "other_id_<name>")
        return v


MergeRuleName = Literal["source_priority", "most_recent", "most_frequent", "longest", "first_seen",
                        "max", "min", "all_values"]
# Rules that choose one record by themselves (the fallback of source_priority and all_values).
FallbackRuleName = Literal["most_recent", "most_frequent", "longest", "first_seen", "max", "min"]
# Rules a field group (the address) can be merged with: they rank whole records.
GROUP_RULES = ("source_priority", "most_recent", "most_frequent", "longest", "first_seen")


class MergeRule(_Strict):
    rule: MergeRuleName = "most_recent"
    sources: list[str] = Field(default_factory=list,
                               description="for source_priority: sources in order of trust")
    fallback: FallbackRuleName = Field(
        default="most_recent",
        description="source_priority: the rule among records of unlisted sources; all_values: the "
                    "rule that picks the field's primary value beside the full list")


class MergeSettings(_Strict):
    default: MergeRule = Field(default_factory=MergeRule)
    fields: dict[str, MergeRule] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _default_picks_one(cls, v: MergeRule) -> MergeRule:
        if v.rule == "all_values":
            raise ValueError("all_values is a rule for a field (fields.<field>), not the default")
        return v

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: dict[str, MergeRule]) -> dict[str, MergeRule]:
        for name, rule in v.items():
            if name not in PROFILE_FIELDS and name != "address_group" and not ATTRIBUTE_FIELD.match(name):
                raise ValueError(f"{name!r} is not a profile field; expected one of: "
                                 f"address_group, {', '.join(PROFILE_FIELDS)}, attr_<attribute>")
            if name in ADDRESS_GROUP[1:]:
                raise ValueError(f"{name!r} is merged with its address: set a rule on 'address_group'")
            if name in ("address_group", "address") and rule.rule not in GROUP_RULES:
                raise ValueError(f"{name}: the address group is taken from one record; its rule must "
                                 f"be one of {', '.join(GROUP_RULES)}, not {rule.rule!r}")
            if name == "full_name":
                raise ValueError("full_name is built from the merged given_name and surname; "
                                 "set rules on those")
        return v

    def rule_for(self, field: str) -> MergeRule:
        if field in ADDRESS_GROUP:
            rule = self.fields.get("address_group") or self.fields.get("address") or self.default
            return rule if rule.rule in GROUP_RULES else MergeRule()
        return self.fields.get(field, self.default)

    def dbt_rules(self, attributes: tuple[str, ...] | list[str] = ()) -> dict[str, dict]:
        """field -> {rule, sources, fallback} for every profile field and attribute column, as the
        dbt macros take it."""
        rules = {}
        for field in (*PROFILE_FIELDS, *attributes):
            rule = self.rule_for(field)
            rules[field] = {"rule": rule.rule, "sources": rule.sources, "fallback": rule.fallback}
        return rules


StitchMode = Literal["probabilistic", "deterministic"]
# Schemas cdp's own stages write to: a customer 360 database cannot take their names.
RESERVED_SCHEMAS = ("domain", "stitch", "interactions", "custom", "activation", "main", "sources")


class Database(_Strict):
    """A customer 360 database: its own schema, merge rules and way of grouping records."""
    description: str = ""
    stitch_mode: StitchMode | float = Field(
        default="probabilistic",
        description="probabilistic: the cdp_id of Stitch; deterministic: only records linked by a "
                    "deterministic rule or an analyst's match label are one person; a number: "
                    "links at or above that match probability (>= stitch.match_threshold) count")
    merge: MergeSettings = Field(default_factory=MergeSettings)

    @field_validator("stitch_mode")
    @classmethod
    def _threshold(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"a match-probability threshold must be between 0 and 1, not {v}")
        return v


class Destination(_Strict):
    kind: Literal["file"] = "file"
    table: str = Field(default="c360.customer_360", description="schema.table to export")
    format: Literal["csv", "parquet"] = "csv"
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


class LakehouseSync(_Strict):
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


class InteractionSettings(_Strict):
    as_of_date: date | None = Field(
        default=None, description="the day attributes are computed for (12-month windows, days since "
                                  "last order); today when omitted")
    early_repeat_days: int = Field(default=90, ge=1,
                                   description="a second order within this many days of the first "
                                               "makes an early repeat purchaser")


class PredictiveSettings(_Strict):
    holdout_days: int = Field(default=180, ge=30,
                              description="the most recent days held out to evaluate each model")
    top_n: int = Field(default=3, ge=1, description="categories recommended per person")
    clv_tiers: list[str] = Field(default_factory=lambda: ["platinum", "gold", "silver", "bronze"],
                                 min_length=2, description="CLV tiers, best first, of equal size")


class BiSettings(_Strict):
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12,
                                         description="month the fiscal year starts (2 = February)")
    holiday_country: str = Field(default="US", description="country code for dim_date.is_holiday")
    calendar_start_year: int = Field(default=1970, ge=1900, le=2100)
    calendar_years: int = Field(default=85, ge=1, le=200, description="years in dim_date")


class Postgres(_Strict):
    kind: Literal["postgres"]
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


class Webhook(_Strict):
    kind: Literal["webhook"]
    url: str = Field(description="http(s) URL the records are POSTed to as JSON batches")
    batch_size: int = Field(default=500, ge=1, le=100_000, description="records per request")
    max_retries: int = Field(default=5, ge=0, le=20,
                             description="retries of a batch on connection errors, 429 and 5xx")
    backoff_seconds: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry")
    timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class Orchestration(_Strict):
    """Sends a segment's members or a saved query's rows to a destination whenever they change."""
    segment: str | None = Field(default=None, description="a segment: sends its members' customer 360 rows")
    query: str | None = Field(default=None, description="a saved query (file stem): sends its rows")
    destination: str
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


class QuerySettings(_Strict):
    folder: str = Field(default="queries", description="folder of saved Presto SQL queries (*.sql), "
                                                       "relative to the config file; each becomes an asset")


class ProfileApiSettings(_Strict):
    keys_file: str = Field(default="api_keys.yaml",
                           description="named API keys clients send in X-API-Key: name -> id, SHA-256 of the "
                                       "token, scopes (profiles:read, workspace, admin); written by `cdp key "
                                       "create`; relative to the config file (CDP_KEYS_FILE overrides)")
    api_key_env: str = Field(default="CDP_API_KEY",
                             description="deprecated: environment variable of a single key, still accepted "
                                         "for the Profile API only (scope profiles:read) when it is strong")
    store: str = Field(default="profile_store.sqlite",
                       description="the serving copy the Profile API reads, relative to the config file")


class WorkspaceSettings(_Strict):
    users_file: str = Field(default="users.yaml",
                            description="people who may log in to the analyst workspace (`cdp serve`): "
                                        "name -> role and scrypt hash, written by `cdp user add`; relative "
                                        "to the config file (CDP_USERS_FILE overrides)")
    sessions_file: str = Field(default="sessions.sqlite",
                               description="server-side login sessions and failed-login counts (SQLite, "
                                           "shared by every server process); relative to the config file "
                                           "(CDP_SESSIONS_FILE overrides); must be writable")
    session_idle_minutes: float = Field(default=30, gt=0,
                                        description="a session unused this long ends (log in again)")
    session_max_hours: float = Field(default=12, gt=0,
                                     description="a session ends this long after its login, used or not")
    max_queries: int = Field(default=2, ge=1, le=64,
                             description="workspace queries (pages, SQL runs, CSV exports, segment previews) "
                                         "run at once per server process, off the event loop in their own "
                                         "threads at a lower CPU priority; more wait for a turn")
    query_seconds: float = Field(default=60, gt=0,
                                 description="a workspace query running longer is interrupted")
    session_secret_env: str = Field(default="CDP_SESSION_SECRET",
                                    description="no longer used: sessions are server-side (sessions_file); "
                                                "kept so older configs still load")


class DagsterSettings(_Strict):
    raw_previews: bool = Field(
        default=False,
        description="show personal data unmasked in the row previews of Dagster's metadata (kept in "
                    "its event log, shown in its UI); default: emails, phones, names, addresses, birth "
                    "dates and identifiers masked (cdp/pii.py)")


class AuditSettings(_Strict):
    path: str = Field(default="audit.sqlite3",
                      description="the audit log (SQLite, append-only): who ran which workspace query, "
                                  "exported, saved, viewed a person, used an API key; relative to the "
                                  "config file, kept outside the warehouse so a rebuild never erases "
                                  "it; $CDP_AUDIT_LOG overrides")


SEGMENT_OPS = ("=", "!=", "<", "<=", ">", ">=", "between", "in", "is_null", "not_null", "contains")
Scalar = Union[bool, int, float, date, str]


class SegmentRule(_Strict):
    """One node of a segment: a condition (column op value on a table with a cdp_id), a reference
    to another segment, or all / any / not of other rules."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table: str = Field(default="c360.customer_360", description="schema.table holding cdp_id and the column")
    column: Optional[str] = None
    op: Optional[Literal[SEGMENT_OPS]] = None
    value: Any = None
    where: dict[str, Scalar] = Field(default_factory=dict,
                                     description="column = value filters on the same row, e.g. "
                                                 "{product_category: Bakery} on the propensity table")
    segment: Optional[str] = Field(default=None, description="another segment's name")
    all: Optional[list["SegmentRule"]] = None
    any: Optional[list["SegmentRule"]] = None
    not_: Optional["SegmentRule"] = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_form(self) -> "SegmentRule":
        forms = [f for f in ("column", "segment", "all", "any", "not_") if getattr(self, f) is not None]
        if len(forms) != 1:
            raise ValueError("a segment rule is exactly one of: a condition (column, op, value), "
                             "segment: NAME, all: [...], any: [...], not: {...}")
        if self.column is not None:
            if self.op is None:
                raise ValueError(f"condition on {self.column!r} needs an op: one of {', '.join(SEGMENT_OPS)}")
            v = self.value
            if self.op in ("is_null", "not_null"):
                if v is not None:
                    raise ValueError(f"op {self.op} takes no value")
            elif self.op == "between":
                if not (isinstance(v, list) and len(v) == 2 and all(_is_scalar(x) for x in v)):
                    raise ValueError("op between needs value: [low, high]")
            elif self.op == "in":
                if not (isinstance(v, list) and v and all(_is_scalar(x) for x in v)):
                    raise ValueError("op in needs value: a non-empty list")
            elif not _is_scalar(v):
                raise ValueError(f"op {self.op} needs one value (a number, text, date or boolean)")
        if self.all is not None and not self.all or self.any is not None and not self.any:
            raise ValueError("all / any need at least one rule")
        return self

    def referenced_segments(self) -> set[str]:
        refs = {self.segment} if self.segment else set()
        for child in (self.all or []) + (self.any or []) + ([self.not_] if self.not_ else []):
            refs |= child.referenced_segments()
        return refs


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float, str, date))


class Segment(SegmentRule):
    description: str = ""


def _segment_cycle(segments: dict[str, Segment]) -> list[str] | None:
    """A cycle of segment references (as a path), if any."""
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]):
        if state.get(name) == 1:
            return path[path.index(name):] + [name]
        if state.get(name) == 2 or name not in segments:
            return None
        state[name] = 1
        for ref in sorted(segments[name].referenced_segments()):
            found = visit(ref, path + [name])
            if found:
                return found
        state[name] = 2
        return None

    for n in segments:
        found = visit(n, [])
        if found:
            return found
    return None


EngineName = Literal["duckdb", "spark"]


class SparkSettings(_Strict):
    """Where and how the Spark engine runs (used when engine is spark)."""
    master: str = Field(default="local[2]", description="Spark master URL, e.g. local[2], spark://host:7077")
    lakehouse: str | None = Field(
        default=None, description="folder of the Spark tables (Parquet, one folder per schema/table), "
                                  "relative to the config; default: 'lakehouse' next to the warehouse")
    shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark configuration")

    @field_validator("master")
    @classmethod
    def _master_url(cls, v: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)(,\d+)?\])?|(spark|yarn|k8s|mesos)(://\S+)?)$", v):
            raise ValueError(f"{v!r} is not a Spark master URL (local[N], spark://host:port, yarn, "
                             "k8s://...)")
        return v


class TenantConfig(_Strict):
    tenant: str
    country: str = Field(default=DEFAULT_COUNTRY,
                         description="ISO 3166-1 alpha-2 country of the tenant's customers: how phones, "
                                     "postcodes, states and street lines are read when neither the record "
                                     "nor its source says (sources.<name>.country); also the default "
                                     "bi.holiday_country. Default US")
    warehouse: str = Field(default="warehouse.duckdb",
                           description="DuckDB file, relative to the config file")
    engine: EngineName = Field(default="duckdb", description="duckdb (embedded) or spark; "
                                                           "$CDP_ENGINE overrides")
    spark: SparkSettings = Field(default_factory=SparkSettings)
    sources: dict[str, Source]
    stitch: StitchSettings = Field(default_factory=StitchSettings)
    merge: MergeSettings = Field(default_factory=MergeSettings)
    databases: dict[str, Database] = Field(
        default_factory=dict,
        description="customer 360 databases by name (each its own schema); 'c360' is added from "
                    "`merge` when not listed")
    destinations: dict[str, AnyDestination] = Field(default_factory=dict)
    interactions: InteractionSettings = Field(default_factory=InteractionSettings)
    predictive: PredictiveSettings = Field(default_factory=PredictiveSettings)
    bi: BiSettings = Field(default_factory=BiSettings)
    rebuild_cron: str = Field(default="0 3 * * *", description="daily rebuild schedule")
    queries: QuerySettings | None = Field(default=None, description="saved Presto SQL queries")
    profile_api: ProfileApiSettings = Field(default_factory=ProfileApiSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)
    segments: dict[str, Segment] = Field(default_factory=dict, description="audiences, see segments.py")
    orchestrations: dict[str, Orchestration] = Field(default_factory=dict,
                                                     description="segment/query -> destination bindings")
    lakehouse: LakehouseSync | None = Field(default=None, description="outputs synced to a lakehouse "
                                                                      "folder (Parquet or Delta)")

    # set by load_config, not by the YAML
    base_dir: Path = Field(default=Path("."), exclude=True)
    config_path: Path | None = Field(default=None, exclude=True)

    @field_validator("rebuild_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(v):
            raise ValueError(f"{v!r} is not a cron schedule (five fields: minute hour day month weekday, "
                             "e.g. '0 3 * * *')")
        return v

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} must be a lowercase identifier ([a-z][a-z0-9_]*)")
        return v

    @field_validator("country", mode="before")
    @classmethod
    def _country_code(cls, v: Any) -> str:
        return iso_country(v)

    @model_validator(mode="after")
    def _inherit_country(self) -> "TenantConfig":
        """Sources without a country of their own, and public holidays, take the tenant's."""
        for src in self.sources.values():
            src._tenant_country = self.country
        if "holiday_country" not in self.bi.model_fields_set:
            self.bi.holiday_country = self.country
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> "TenantConfig":
        for name, src in self.sources.items():
            if not IDENTIFIER.match(name):
                raise ValueError(f"sources.{name}: source names must be lowercase identifiers "
                                 "([a-z][a-z0-9_]*), they become table names")
            if src.order_source is not None:
                target = self.sources.get(src.order_source)
                if src.kind != SourceKind.transaction_items:
                    raise ValueError(f"sources.{name}.order_source: only transaction_items sources name "
                                     "an order source")
                if target is None or target.kind != SourceKind.transactions:
                    raise ValueError(f"sources.{name}.order_source: {src.order_source!r} is not "
                                     "a transactions source of this tenant")
            if src.customer_source is not None:
                target = self.sources.get(src.customer_source)
                if target is None or target.kind != SourceKind.customers:
                    raise ValueError(f"sources.{name}.customer_source: {src.customer_source!r} is not "
                                     "a customers source of this tenant")
        if not self.customer_sources:
            raise ValueError("sources: at least one source must have kind 'customers'")
        for src in self.sources_of(SourceKind.customers).values():
            src._tenant_identifiers = self.identifier_columns
        attributes = self._check_attributes()
        for src in self.sources_of(SourceKind.customers).values():
            src._tenant_attributes = attributes
        for where, settings in [("merge", self.merge),
                                *((f"databases.{n}.merge", d.merge) for n, d in self.databases.items())]:
            for fname in settings.fields:
                if ATTRIBUTE_FIELD.match(fname) and fname not in attributes:
                    raise ValueError(f"{where}.fields.{fname}: no customers source keeps an attribute "
                                     f"{fname.removeprefix(ATTRIBUTE_PREFIX)!r}"
                                     + (f" (attributes: {', '.join(attributes)})" if attributes else ""))
        for fname, rule in self.merge.fields.items():
            for s in rule.sources:
                if s not in self.customer_sources:
                    raise ValueError(f"merge.fields.{fname}.sources: {s!r} is not a customers source")
            if rule.rule == "source_priority" and not rule.sources:
                raise ValueError(f"merge.fields.{fname}.sources: source_priority needs a list of sources")
        for s in self.merge.default.sources:
            if s not in self.customer_sources:
                raise ValueError(f"merge.default.sources: {s!r} is not a customers source")
        if "c360" in self.databases and "merge" in self.model_fields_set:
            raise ValueError("merge: the rules of database c360 are set in databases.c360.merge; "
                             "remove the top-level merge")
        for dbname, db in self.databases.items():
            where = f"databases.{dbname}"
            if not IDENTIFIER.match(dbname) or "__" in dbname:
                raise ValueError(f"{where}: database names must be lowercase identifiers without "
                                 "'__' ([a-z][a-z0-9_]*), they become schema names")
            if dbname in RESERVED_SCHEMAS:
                raise ValueError(f"{where}: {dbname!r} is a schema of cdp itself; choose another name")
            if isinstance(db.stitch_mode, float) and db.stitch_mode < self.stitch.match_threshold:
                raise ValueError(f"{where}.stitch_mode: {db.stitch_mode} is below stitch.match_threshold "
                                 f"({self.stitch.match_threshold}); a database can only be stricter "
                                 "than Stitch")
            for fname, rule in [("default", db.merge.default), *db.merge.fields.items()]:
                for s in rule.sources:
                    if s not in self.customer_sources:
                        raise ValueError(f"{where}.merge.fields.{fname}.sources: {s!r} is not a "
                                         "customers source")
                if rule.rule == "source_priority" and not rule.sources:
                    raise ValueError(f"{where}.merge.fields.{fname}.sources: source_priority needs a "
                                     "list of sources")
        for dname, dest in self.destinations.items():
            if not IDENTIFIER.match(dname):
                raise ValueError(f"destinations.{dname}: names must be lowercase identifiers")
        self._check_segments()
        self._check_orchestrations()
        self._check_deterministic_rules()
        from cdp.scope import check_references  # nothing may name a table the sources cannot build
        check_references(self)
        return self

    def _check_attributes(self) -> dict[str, str]:
        """attribute column -> type over every customers source, sorted; an attribute kept by several
        sources merges across them, so they must give it the same type."""
        found: dict[str, tuple[str, str]] = {}
        for name, src in self.sources_of(SourceKind.customers).items():
            for column, attr in src.attributes.items():
                where = f"sources.{name}.attributes.{column}"
                if attr.column in found and found[attr.column][0] != attr.type:
                    raise ValueError(f"{where}: attribute {attr.name!r} is type {attr.type} here but "
                                     f"{found[attr.column][0]} in {found[attr.column][1]}; one attribute "
                                     "has one type in every source")
                found.setdefault(attr.column, (attr.type, where))
        return {c: found[c][0] for c in sorted(found)}

    def _check_deterministic_rules(self) -> None:
        """A rule the tenant wrote must name fields its customer sources have; the default rules
        are used where their fields exist (see stitch.design)."""
        if "deterministic_rules" not in self.stitch.model_fields_set:
            return
        tagged = self.tagged_profile_fields
        for i, rule in enumerate(self.stitch.deterministic_rules):
            missing = [f for f in rule if f not in tagged]
            if missing:
                raise ValueError(f"stitch.deterministic_rules.{i}: {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not tagged in any customers "
                                 f"source (tagged: {', '.join(sorted(tagged))})")

    def _check_orchestrations(self) -> None:
        for oname, orch in self.orchestrations.items():
            if not IDENTIFIER.match(oname):
                raise ValueError(f"orchestrations.{oname}: names must be lowercase identifiers")
            if orch.destination not in self.destinations:
                raise ValueError(f"orchestrations.{oname}.destination: {orch.destination!r} is not a "
                                 f"destination of this tenant; defined: {', '.join(sorted(self.destinations))}")
            if orch.segment is not None and orch.segment not in self.segments:
                raise ValueError(f"orchestrations.{oname}.segment: {orch.segment!r} is not a segment")
            if orch.query is not None and self.queries is None:
                raise ValueError(f"orchestrations.{oname}.query: the tenant has no queries folder")
            for out, col in orch.fields.items():
                if not IDENTIFIER.match(out) or not IDENTIFIER.match(col):
                    raise ValueError(f"orchestrations.{oname}.fields.{out}: field and column names must be "
                                     "lowercase identifiers")

    def _check_segments(self) -> None:
        for sname, seg in self.segments.items():
            if not IDENTIFIER.match(sname):
                raise ValueError(f"segments.{sname}: names must be lowercase identifiers")
            for ref in sorted(seg.referenced_segments()):
                if ref not in self.segments:
                    raise ValueError(f"segments.{sname}: refers to segment {ref!r}, which is not defined")
        cycle = _segment_cycle(self.segments)
        if cycle:
            raise ValueError(f"segments.{cycle[0]}: segments refer to each other in a cycle: "
                             + " -> ".join(cycle))

    # ---- convenience -------------------------------------------------------------------------
    def sources_of(self, kind: SourceKind) -> dict[str, Source]:
        return {n: s for n, s in self.sources.items() if s.kind == kind}

    @property
    def customer_sources(self) -> list[str]:
        return list(self.sources_of(SourceKind.customers))

    @property
    def identifier_columns(self) -> list[str]:
        """Identifier columns of the customer domain tables beyond loyalty_id, from every customers
        source's tags (each customer domain table has all of them, so the sources union)."""
        found = {c for s in self.sources_of(SourceKind.customers).values() for c in s.identifier_columns()}
        return sorted(found - {"loyalty_id"})

    @property
    def attribute_columns(self) -> dict[str, str]:
        """Custom attribute columns (attr_<name>) of the customer tables -> their type."""
        return {c: t for s in self.sources_of(SourceKind.customers).values()
                for c, t in s.tenant_attributes.items()}

    @property
    def tagged_profile_fields(self) -> set[str]:
        """Profile fields some customers source carries (a full name gives both names; a street
        number is part of the address)."""
        fields: set[str] = set()
        for src in self.sources_of(SourceKind.customers).values():
            cols = set(src.domain_columns().values())
            if "full_name" in cols:
                cols |= {"given_name", "surname"}
            if "street_number" in cols:
                cols.add("address")
            fields |= cols
        return fields

    def resolve(self, path: str) -> Path:
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def warehouse_path(self) -> Path:
        override = os.environ.get("CDP_WAREHOUSE")
        return Path(override).resolve() if override else self.resolve(self.warehouse).resolve()

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance (runs, materializations, check results, sensor cursors) that
        `cdp run`, `cdp demo` and `cdp ui` share, so the UI shows what a run from the shell
        built: $DAGSTER_HOME if set, else `dagster_home/` beside the warehouse."""
        override = os.environ.get("DAGSTER_HOME")
        return Path(override).resolve() if override else self.warehouse_path.parent / "dagster_home"

    @property
    def active_engine(self) -> str:
        """The engine this run uses: $CDP_ENGINE if set, else the config's `engine`."""
        override = os.environ.get("CDP_ENGINE")
        if override is None or override == "":
            return self.engine
        if override not in ("duckdb", "spark"):
            raise ConfigError(f"CDP_ENGINE: {override!r} is not an engine; expected duckdb or spark")
        return override

    @property
    def lakehouse_path(self) -> Path:
        """Folder of the Spark engine's tables (Parquet)."""
        if self.spark.lakehouse:
            return self.resolve(self.spark.lakehouse).resolve()
        return self.warehouse_path.parent / "lakehouse"

    @property
    def customer_databases(self) -> dict[str, Database]:
        """Every customer 360 database; c360 (from the top-level `merge`) unless listed, first."""
        dbs = {"c360": self.databases.get("c360") or Database(
            description="The customer 360 (default database)", merge=self.merge)}
        dbs.update({n: d for n, d in self.databases.items() if n != "c360"})
        return dbs

    def dbt_vars(self) -> dict:
        """The part of the config dbt needs, passed with --vars. Each database's own rules and
        stitch mode are written into its generated model files (see cdp/stages/c360/assets.py), so a
        change to one database changes only its models."""
        merge = self.customer_databases["c360"].merge.dbt_rules()
        return {
            "tenant": self.tenant,
            "customer_sources": self.customer_sources,
            "transaction_sources": [
                {"name": n, "customer_source": s.customer_source,
                 "has": sorted(s.domain_columns().values())}
                for n, s in self.sources_of(SourceKind.transactions).items()],
            "item_sources": [{"name": n, "has": sorted(s.domain_columns().values()),
                              "order_source": s.order_source}
                             for n, s in self.sources_of(SourceKind.transaction_items).items()],
            "product_sources": [{"name": n, "has": sorted(s.domain_columns().values())}
                                for n, s in self.sources_of(SourceKind.products).items()],
            "merge_rules": merge,
            "address_group": list(ADDRESS_GROUP),
            "as_of_date": (self.interactions.as_of_date or date.today()).isoformat(),
            "early_repeat_days": self.interactions.early_repeat_days,
            "bi": self.bi.model_dump(),
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.dbt_vars(), sort_keys=True).encode()).hexdigest()[:16]


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        parts = list(e["loc"])
        if len(parts) > 2 and parts[0] == "destinations" and parts[2] in ("file", "postgres", "webhook"):
            del parts[2]  # the destination kind pydantic picked, not a field the user wrote
        loc = ".".join(str(p) for p in parts)
        msg = e["msg"].removeprefix("Value error, ")
        # model-level validators report their own dotted field inside the message
        if re.match(r"^[a-z_]+[\w.\[\]]*: ", msg) and loc:
            lines.append(f"{path}: {loc}.{msg}")
        elif re.match(r"^[a-z_]+[\w.\[\]]*: ", msg):
            lines.append(f"{path}: {msg}")
        else:
            lines.append(f"{path}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None) -> TenantConfig:
    """Load and validate a tenant config; raise ConfigError naming file and field."""
    path = Path(path or os.environ.get("CDP_CONFIG") or DEFAULT_CONFIG).resolve()
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping with tenant and sources")
    try:
        cfg = TenantConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
    cfg.base_dir = path.parent
    cfg.config_path = path
    # a deployment keeps the serving copy on its data volume and the users file in a secret,
    # and the audit log on a volume it may write, wherever the tenant config sits (deploy/: the
    # `serve` service)
    for env, section, field in (("CDP_PROFILE_STORE", cfg.profile_api, "store"),
                                ("CDP_KEYS_FILE", cfg.profile_api, "keys_file"),
                                ("CDP_USERS_FILE", cfg.workspace, "users_file"),
                                ("CDP_SESSIONS_FILE", cfg.workspace, "sessions_file"),
                                ("CDP_AUDIT_LOG", cfg.audit, "path")):
        if os.environ.get(env):
            setattr(section, field, os.environ[env])
    return cfg
