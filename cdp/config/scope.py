"""What a tenant builds, from the kinds of data its sources bring.

Every tenant has customers sources, so sources, Stitch, every customer 360 database, segments,
file exports, saved queries and the profile store are always built. The purchase stages need
purchase data, in two steps:

    orders       a transactions source        interactions.unified_transactions,
                                              transaction_attributes(_extended); bi.holiday_calendar,
                                              dim_date, dim_customer, fact_sales;
                                              predictive.predicted_clv_attributes; and the purchase
                                              columns of every <db>.customer_360
    order_lines  transactions and             interactions.unified_product_catalog,
                 transaction_items sources    unified_itemized_transactions; bi.dim_product,
                                              fact_sales_items; predictive.product_category_propensity,
                                              recommendations; the category columns of
                                              transaction_attributes_extended (and bi.dim_customer)

A table whose data is missing is left out of the asset graph - not built empty - so the
Dagster UI shows what this tenant really has, with no stage that is always empty; a column whose
data is missing is left out of its table (not always null), so a segment or export on it is
a config error instead of an empty audience (so is an `attr_<name>` column of a customer 360
table that no source keeps as an attribute). A custom dbt model declares what it needs with
`meta: {cdp_needs: [orders]}`, and is left out, as is a saved query, when it reads a table that
is left out (cdp/dbt/project.py, queries.py). `check_references` refuses config entries
(segments, destinations, the lakehouse sync, orchestrations) that name what is left out.

The same decisions apply on every engine: they are made from the config and the dbt manifest
before anything runs, and reach dbt as the var `purchase_data` (macro `cdp_has(need)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing import TYPE_CHECKING

from cdp.config.activation import Destination, Postgres
from cdp.config.common import ConfigError
from cdp.config.segments import SegmentRule
from cdp.config.tags import ATTRIBUTE_PREFIX, SourceKind

if TYPE_CHECKING:  # the tenant model calls check_references from its validator
    from cdp.config.tenant import TenantConfig


@dataclass(frozen=True)
class Need:
    """Purchase data a table needs: the source kinds that must all be configured."""
    name: str                              # as in dbt (var purchase_data, meta cdp_needs)
    kinds: tuple[SourceKind, ...]
    label: str                             # what it is, for messages


ORDERS = Need("orders", (SourceKind.transactions,), "orders")
ORDER_LINES = Need("order_lines", (SourceKind.transactions, SourceKind.transaction_items),
                   "order lines")
NEEDS = {n.name: n for n in (ORDERS, ORDER_LINES)}

# the tables of cdp's own purchase stages (schema.table) -> the data they are built from
TABLE_NEEDS: dict[str, Need] = {
    "interactions.unified_transactions": ORDERS,
    "interactions.transaction_attributes": ORDERS,
    "interactions.transaction_attributes_extended": ORDERS,
    "interactions.built_orders": ORDERS,        # the incremental models' state (what they were built from)
    "interactions.touched_people": ORDERS,
    "interactions.unified_product_catalog": ORDER_LINES,
    "interactions.unified_itemized_transactions": ORDER_LINES,
    "bi.holiday_calendar": ORDERS,
    "bi.dim_date": ORDERS,
    "bi.dim_customer": ORDERS,
    "bi.fact_sales": ORDERS,
    "bi.dim_product": ORDER_LINES,
    "bi.fact_sales_items": ORDER_LINES,
    "predictive.predicted_clv_attributes": ORDERS,
    "predictive.product_category_propensity": ORDER_LINES,
    "predictive.recommendations": ORDER_LINES,
}
STAGES = ("interactions", "bi", "predictive")

# columns that tables built without the data leave out
PURCHASE_COLUMNS = ("first_order_date", "last_order_date", "order_count", "lifetime_revenue",
                    "average_order_value")           # of every <db>.customer_360
CATEGORY_COLUMNS = ("first_product_category", "last_product_category", "preferred_category",
                    "category_count", "units_purchased")  # of transaction_attributes_extended


@dataclass(frozen=True)
class TenantScope:
    """The source kinds of a tenant and what they let it build."""
    kinds: frozenset[SourceKind]
    customer_databases: tuple[str, ...] = ("c360",)
    attributes: tuple[str, ...] = ()       # custom attribute columns (attr_<name>) of the customers

    def has(self, need: Need) -> bool:
        return all(kind in self.kinds for kind in need.kinds)

    def why_not(self, need: Need) -> str:
        """The root cause, e.g. 'no transactions sources'."""
        missing = [k.value for k in need.kinds if k not in self.kinds]
        return f"no {' or '.join(missing)} sources"

    def builds(self, table: str) -> bool:
        """Whether schema.table of one of cdp's purchase stages is built (True for any other)."""
        need = TABLE_NEEDS.get(table)
        return need is None or self.has(need)

    def left_out_tables(self) -> dict[str, str]:
        """schema.table -> why, for every table of the purchase stages this tenant leaves out."""
        return {t: self.why_not(n) for t, n in TABLE_NEEDS.items() if not self.has(n)}

    def column_need(self, table: str, column: str) -> Need | None:
        """The purchase data a column of a built table comes from, if any."""
        schema, _, name = table.partition(".")
        if name == "customer_360" and schema in self.customer_databases and column in PURCHASE_COLUMNS:
            return ORDERS
        if table in ("interactions.transaction_attributes_extended", "bi.dim_customer") \
                and column in CATEGORY_COLUMNS:
            return ORDER_LINES
        return None

    def missing_column(self, table: str, column: str) -> str | None:
        """Why a column is not in its table for this tenant, or None when it is."""
        schema, _, name = table.partition(".")
        if (name in ("customer_360", "merged_customers") and schema in self.customer_databases
                and column.startswith(ATTRIBUTE_PREFIX)
                and column.removesuffix("__all") not in self.attributes):
            kept = f"attributes: {', '.join(self.attributes)}" if self.attributes else "it keeps none"
            return (f"column {column!r} of {table} is not a custom attribute of this tenant ({kept}; "
                    "sources.<name>.attributes keeps one)")
        need = self.column_need(table, column)
        if need is None or self.has(need):
            return None
        return f"column {column!r} of {table} comes from {need.label} and is left out ({self.why_not(need)})"

    def dbt_vars(self) -> dict:
        """What dbt's macro cdp_has(need) reads."""
        return {"purchase_data": {n.name: self.has(n) for n in NEEDS.values()}}

    def notes(self, source_names: Mapping[SourceKind, list[str]] | None = None) -> list[str]:
        """One line per stage or table group left out, naming its root cause."""
        if not self.has(ORDERS):
            notes = [f"{self.why_not(ORDERS)}: {', '.join(STAGES[:-1])} and {STAGES[-1]} tables are "
                     "left out, and customer 360 tables have no purchase columns "
                     f"({', '.join(PURCHASE_COLUMNS)})"]
            if SourceKind.transaction_items in self.kinds:
                notes.append("transaction_items sources are loaded but not used: order lines need "
                             "their orders (a transactions source)")
        elif not self.has(ORDER_LINES):
            tables = [t for t, n in TABLE_NEEDS.items() if n is ORDER_LINES]
            notes = [f"{self.why_not(ORDER_LINES)}: item-based tables are left out ({', '.join(tables)}), "
                     "and interactions.transaction_attributes_extended has no category columns"]
        else:
            notes = []
        if SourceKind.products in self.kinds and not self.has(ORDER_LINES):
            names = ", ".join((source_names or {}).get(SourceKind.products, [])) or "products"
            notes.append(f"products sources ({names}) are loaded but not used: the product catalogue "
                         "is built with order lines")
        return notes


def tenant_scope(cfg: TenantConfig) -> TenantScope:
    return TenantScope(kinds=frozenset(s.kind for s in cfg.sources.values()),
                       customer_databases=tuple(cfg.customer_databases),
                       attributes=tuple(cfg.attribute_columns))


def scope_notes(cfg: TenantConfig) -> list[str]:
    return tenant_scope(cfg).notes({k: list(cfg.sources_of(k)) for k in SourceKind})


def needs_of(names, where: str) -> list[Need]:
    """The Needs named by a dbt model's `meta: {cdp_needs: [...]}`."""
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in NEEDS]
    if unknown:
        raise ValueError(f"{where}: meta cdp_needs: {', '.join(map(repr, unknown))} is not purchase data "
                         f"cdp knows; expected one of: {', '.join(NEEDS)}")
    return [NEEDS[n] for n in names]


# ---- config entries that name what is left out --------------------------------------------------

def _conditions(rule: SegmentRule, where: str):
    """(field path, condition) of every condition of a segment rule, as compile_segment names them."""
    if rule.column is not None:
        yield where, rule
    children = [(f"{where}.all[{i}]", r) for i, r in enumerate(rule.all or [])]
    children += [(f"{where}.any[{i}]", r) for i, r in enumerate(rule.any or [])]
    if rule.not_ is not None:
        children.append((f"{where}.not", rule.not_))
    for path, child in children:
        yield from _conditions(child, path)


def _table_problem(left_out: Mapping[str, str], table: str) -> str | None:
    if table in left_out:
        return f"{table} is not built for this tenant ({left_out[table]})"
    return None


def segment_problem(cfg: TenantConfig, name: str, segment: SegmentRule,
                    left_out: Mapping[str, str] | None = None) -> str | None:
    """'<field>: <problem>' for the first condition of a segment that names a table or column this
    tenant does not build, or None."""
    scope = tenant_scope(cfg)
    left_out = scope.left_out_tables() if left_out is None else left_out
    for where, cond in _conditions(segment, f"segments.{name}"):
        problem = _table_problem(left_out, cond.table)
        if problem:
            return f"{where}.table: {problem}"
        for column, field in [(cond.column, "column"), *((c, f"where.{c}") for c in cond.where)]:
            problem = scope.missing_column(cond.table, column)
            if problem:
                return f"{where}.{field}: {problem}"
    return None


def check_references(cfg: TenantConfig, left_out: Mapping[str, str] | None = None) -> None:
    """Raise ValueError('<field>: <problem>') for the first config entry that names a table or
    column this tenant does not build. `left_out` (schema.table -> why) defaults to the purchase
    stages' tables; cdp adds custom models and saved queries once the dbt manifest is parsed."""
    scope = tenant_scope(cfg)
    left_out = scope.left_out_tables() if left_out is None else left_out
    for name, segment in cfg.segments.items():
        problem = segment_problem(cfg, name, segment, left_out)
        if problem:
            raise ValueError(problem)
    for name, dest in cfg.destinations.items():
        if isinstance(dest, Destination):
            problem = _table_problem(left_out, dest.table)
            if problem:
                raise ValueError(f"destinations.{name}.table: {problem}")
            for column in dest.columns or []:
                problem = scope.missing_column(dest.table, column)
                if problem:
                    raise ValueError(f"destinations.{name}.columns: {problem}")
        elif isinstance(dest, Postgres):
            built = [t for t in dest.tables if t not in left_out]
            if "tables" not in dest.model_fields_set and built != dest.tables:
                dest.tables = built  # the default tables: those of them this tenant builds
            for table in dest.tables:
                problem = _table_problem(left_out, table)
                if problem:
                    raise ValueError(f"destinations.{name}.tables: {problem}")
    if cfg.lakehouse is not None:
        for table in cfg.lakehouse.tables:
            problem = _table_problem(left_out, table)
            if problem:
                raise ValueError(f"lakehouse.tables: {problem}")
    for name, orch in cfg.orchestrations.items():
        if orch.query is not None and f"queries.{orch.query}" in left_out:
            raise ValueError(f"orchestrations.{name}.query: saved query {orch.query!r} is not built for "
                             f"this tenant ({left_out[f'queries.{orch.query}']})")
        if orch.segment is not None:  # a segment sends its members' c360.customer_360 rows
            for out, column in orch.fields.items():
                problem = scope.missing_column("c360.customer_360", column)
                if problem:
                    raise ValueError(f"orchestrations.{name}.fields.{out}: {problem}")


def check_built_references(cfg: TenantConfig, left_out: Mapping[str, str]) -> None:
    """check_references once custom models and saved queries are known: a ConfigError naming the
    config file and the field, before anything runs."""
    try:
        check_references(cfg, left_out)
    except ValueError as exc:
        raise ConfigError(f"{cfg.config_path or 'tenant config'}: {exc}") from None
