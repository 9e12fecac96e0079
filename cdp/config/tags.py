"""Semantic tags: what a source column means (email, order-id, product-category...), per source
kind, and the domain column each tag becomes; the profile fields merge rules apply to; custom
attributes (a customers column without a tag kept as `attr_<name>`)."""

from __future__ import annotations

import re
from enum import Enum


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
