"""Stage 1 - sources -> domain tables.

One asset per configured source reads its file (CSV or Parquet), maps columns to semantic
tags, standardises the values and writes `domain.<source>` with a fixed schema per kind.
Rows that cannot be read or fail validation go to `domain.quarantine` with the raw row and
the reason, so every input row is accounted for: read = loaded + quarantined.
"""


import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from . import standardize as std
from .config import Source, SourceKind, TenantConfig
from .lakehouse import count_lakehouse_rows, read_lakehouse_table
from .scale_out import is_spark
from .warehouse import preview_md, replace_table

GROUP = "sources"

DOMAIN_COLUMNS: dict[SourceKind, list[str]] = {
    SourceKind.customers: [
        "source", "pk", "given_name", "surname", "full_name", "email", "phone", "address", "address2",
        "city", "state", "postal", "country", "birthdate", "gender", "loyalty_id", "created_at",
        "updated_at", "source_row"],
    SourceKind.transactions: [
        "source", "order_id", "customer_source", "customer_pk", "order_datetime", "order_revenue",
        "order_discount", "order_status", "channel", "store_id", "return_amount", "source_row"],
    SourceKind.transaction_items: [
        "source", "order_id", "line_number", "product_id", "item_quantity", "item_unit_price",
        "item_revenue", "product_category", "source_row"],
    SourceKind.products: [
        "source", "product_id", "product_name", "product_category", "product_brand",
        "product_price", "source_row"],
}



def domain_columns(source: Source) -> list[str]:
    """The columns of a source's domain table: its kind's, and for customers the identifier
    columns of the whole tenant (national_id, other_id...), so customer tables union."""
    if source.kind != SourceKind.customers:
        return DOMAIN_COLUMNS[source.kind]
    return [*DOMAIN_COLUMNS[source.kind][:-1], *source.tenant_identifier_columns, "source_row"]


QUARANTINE_DDL = """
create table if not exists domain.quarantine (
    source varchar, source_row bigint, raw_row varchar, reason varchar, quarantined_at timestamp
)"""


class SourceFileError(Exception):
    """The source file itself cannot be read (missing, wrong format, no header)."""


@dataclass
class Batch:
    """Rows of one source on their way to the domain table, with the ones set aside."""

    source: str
    rows: pd.DataFrame  # raw string columns + source_row
    rejects: list[dict] = field(default_factory=list)
    invalid_values: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raw = self.rows.copy()  # the rows as read, for quarantine

    def reject(self, mask: pd.Series, reason) -> None:
        """Move rows where mask is true to the quarantine with a reason (str or per-row Series)."""
        if not mask.any():
            return
        index = mask[mask].index
        reasons = reason[mask] if isinstance(reason, pd.Series) else [reason] * len(index)
        raw = self.raw.loc[index]
        raw_cols = [c for c in raw.columns if c != "source_row"]
        for (_, row), why in zip(raw.iterrows(), reasons):
            values = {c: row[c] for c in raw_cols if isinstance(row[c], str)}
            self.rejects.append({"source": self.source, "source_row": int(row["source_row"]),
                                 "raw_row": json.dumps(values), "reason": why})
        self.rows = self.rows[~mask]

    def count_invalid(self, column: str, mask: pd.Series) -> None:
        n = int(mask.sum())
        if n:
            self.invalid_values[column] = self.invalid_values.get(column, 0) + n


# ---- reading ------------------------------------------------------------------------------------

def read_source_file(name: str, source: Source, path: Path) -> Batch:
    """Read every row as text. Unreadable CSV lines are quarantined, never dropped."""
    if not path.exists():
        raise SourceFileError(f"source {name!r}: file not found: {path}")
    if source.format in ("parquet", "delta"):
        try:
            table = read_lakehouse_table(path, source.format)
        except Exception as exc:  # noqa: BLE001 - any arrow error means the file is unreadable
            raise SourceFileError(f"source {name!r}: cannot read {source.format} {path}: {exc}") from exc
        df = table.to_pandas()
        for col in df.columns:
            df[col] = df[col].astype(object).map(_to_text)
        df["source_row"] = range(1, len(df) + 1)
        batch = Batch(name, df)
    else:
        batch = _read_csv(name, path)
    missing = [c for c in source.columns if c not in batch.rows.columns]
    if missing:
        raise SourceFileError(
            f"source {name!r}: columns {missing} are tagged in the config but not in {path} "
            f"(it has {[c for c in batch.rows.columns if c != 'source_row']})")
    return batch


def _to_text(v) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ") if isinstance(v, pd.Timestamp) else v.isoformat()
    return str(v)


def _read_csv(name: str, path: Path) -> Batch:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return parse_csv(name, fh, where=path)


def parse_csv(name: str, lines, where) -> Batch:
    """The rows of CSV text (an open file, or the file's text on a Spark executor): every data
    row numbered, the unreadable ones set aside with the reason."""
    rejects: list[dict] = []
    records: list[list[str]] = []
    row_numbers: list[int] = []
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise SourceFileError(f"source {name!r}: {where} is empty (no header row)") from None
    except csv.Error as exc:
        raise SourceFileError(f"source {name!r}: cannot read the header of {where}: {exc}") from exc
    n = len(header)
    row_no = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_no += 1
            rejects.append({"source": name, "source_row": row_no, "raw_row": json.dumps([]),
                            "reason": f"unreadable CSV line: {exc}"})
            continue
        row_no += 1
        if not values:  # blank line: nothing to load, but account for it
            rejects.append({"source": name, "source_row": row_no, "raw_row": "[]",
                            "reason": "blank line"})
            continue
        if len(values) != n:
            rejects.append({"source": name, "source_row": row_no, "raw_row": json.dumps(values),
                            "reason": f"expected {n} fields, found {len(values)}"})
            continue
        records.append(values)
        row_numbers.append(row_no)
    df = pd.DataFrame(records, columns=header, dtype=object)
    df["source_row"] = row_numbers
    return Batch(name, df, rejects)


def count_file_rows(source: Source, path: Path) -> int:
    """Data rows in the file, counted independently of the loader (for the accounting check)."""
    if source.format in ("parquet", "delta"):
        return count_lakehouse_rows(path, source.format)
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        n = 0
        while True:
            try:
                next(reader)
            except StopIteration:
                return n
            except csv.Error:
                pass
            n += 1


# ---- standardising per kind ---------------------------------------------------------------------

def _tagged(batch: Batch, source: Source) -> pd.DataFrame:
    """Columns renamed to their domain names; untagged domain columns are added as None."""
    mapping = source.domain_columns()
    df = batch.rows[list(mapping) + ["source_row"]].rename(columns=mapping)
    for col in [*domain_columns(source), "street_number"]:
        if col not in df.columns:
            df[col] = None
    return df


def _require(batch: Batch, df: pd.DataFrame, column: str, label: str) -> pd.DataFrame:
    values = std.identifier(df[column])
    mask = values.isna()
    batch.rows = df
    batch.reject(mask, f"missing {label}")
    out = batch.rows.copy()
    out[column] = values[~mask]
    return out


def _dedupe(batch: Batch, df: pd.DataFrame, keys: list[str], label: str) -> pd.DataFrame:
    dup = df.duplicated(subset=keys, keep="first")
    if dup.any():
        first_row = df.groupby(keys, dropna=False)["source_row"].transform("min")
        reason = "duplicate " + label + " (first seen at row " + first_row.astype(str) + ")"
        batch.rows = df
        batch.reject(dup, reason)
        return batch.rows
    return df


def _reject_unparseable(batch: Batch, df: pd.DataFrame, column: str, parsed: pd.Series,
                        bad: pd.Series, required: bool) -> pd.DataFrame:
    """Quarantine rows whose value could not be parsed (or is missing, when required)."""
    mask = bad | (parsed.isna() if required else False)
    if mask.any():
        reason = pd.Series(f"missing {column}", index=df.index, dtype=object)
        reason[bad] = f"invalid {column}: " + df.loc[bad, column].astype(str)
        batch.rows = df
        batch.reject(mask, reason)
        df = batch.rows.copy()
    df[column] = parsed[df.index]
    return df


def record_country(batch: Batch, values: pd.Series, default: str) -> pd.Series:
    """Each record's country (ISO alpha-2): its own, from a code or a name, else the source's or
    tenant's default. A value that is no country is counted and the default taken."""
    present = std.blank_to_none(values).notna()
    own = std.country(values)
    batch.count_invalid("country", present & own.isna())
    return own.where(own.notna(), default)


def standardise_customers(batch: Batch, source: Source) -> pd.DataFrame:
    df = _require(batch, _tagged(batch, source), "pk", "pk")
    df = _dedupe(batch, df, ["pk"], "pk")
    df = df.copy()
    if source.column_for("full-name"):
        given, surname = std.split_full_name(df["full_name"])
        df["given_name"] = std.name(df["given_name"]).where(lambda s: s.notna(), given)
        df["surname"] = std.name(df["surname"]).where(lambda s: s.notna(), surname)
        df["full_name"] = std.name(df["full_name"])
    else:
        df["given_name"], df["surname"] = std.name(df["given_name"]), std.name(df["surname"])
        joined = (df["given_name"].fillna("") + " " + df["surname"].fillna("")).str.strip()
        df["full_name"] = joined.where(joined != "", None)
    df["address"] = street_line(df["street_number"], df["address"])
    df["country"] = record_country(batch, df["country"], source.default_country)
    for col, fn in (("email", std.email), ("city", std.city), ("gender", std.gender),
                    *((c, std.identifier) for c in ("loyalty_id", *source.tenant_identifier_columns))):
        present = std.blank_to_none(df[col]).notna()
        df[col] = fn(df[col])
        batch.count_invalid(col, present & df[col].isna())
    # read by the rules of each record's country
    for col, fn in (("phone", std.phone), ("address", std.address), ("address2", std.address),
                    ("state", std.state), ("postal", std.postal)):
        present = std.blank_to_none(df[col]).notna()
        df[col] = fn(df[col], df["country"])
        batch.count_invalid(col, present & df[col].isna())
    birthdate, bad = std.parse_dates(df["birthdate"])
    future = birthdate > pd.Timestamp.now()
    batch.count_invalid("birthdate", bad | future)
    df["birthdate"] = birthdate.where(~future).dt.date.astype(object).where(birthdate.notna() & ~future, None)
    for col in ("created_at", "updated_at"):
        parsed, bad = std.parse_datetimes(df[col])
        batch.count_invalid(col, bad)
        df[col] = parsed
    df["source"] = batch.source
    return df[domain_columns(source)]


def street_line(number: pd.Series, street: pd.Series) -> pd.Series:
    """A street number tagged in its own column goes in front of the street ('6' + 'tullaroop
    street'); a street line that already starts with it is left alone."""
    number, street = std.blank_to_none(number), std.blank_to_none(street)
    has_both = number.notna() & street.notna()
    already = pd.Series([bool(b) and s.lower().startswith(n.lower() + " ")
                         for n, s, b in zip(number, street, has_both)], index=street.index, dtype=bool)
    joined = (number + " " + street).where(has_both & ~already, street)
    return std.as_optional(joined)


def standardise_transactions(batch: Batch, source: Source) -> pd.DataFrame:
    df = _require(batch, _tagged(batch, source), "order_id", "order id")
    df = _require(batch, df, "customer_pk", "customer pk")
    df = _dedupe(batch, df, ["order_id"], "order id")
    when, bad = std.parse_datetimes(df["order_datetime"])
    df = _reject_unparseable(batch, df, "order_datetime", when, bad, required=True)
    revenue, bad = std.numbers(df["order_revenue"])
    df = _reject_unparseable(batch, df, "order_revenue", revenue, bad, required=True)
    discount, bad = std.numbers(df["order_discount"])
    batch.count_invalid("order_discount", bad)
    df["order_discount"] = discount[df.index].fillna(0.0)
    returned, bad = std.numbers(df["return_amount"])
    batch.count_invalid("return_amount", bad)
    df["return_amount"] = returned[df.index]
    df["order_status"] = std.identifier(df["order_status"]).str.lower().fillna("completed")
    df["channel"] = std.identifier(df["channel"]).str.lower().fillna(
        "store" if source.column_for("store-id") else batch.source)
    df["store_id"] = std.identifier(df["store_id"])
    df["customer_source"] = source.customer_source
    df["source"] = batch.source
    return df[DOMAIN_COLUMNS[SourceKind.transactions]]


def standardise_items(batch: Batch, source: Source) -> pd.DataFrame:
    df = _require(batch, _tagged(batch, source), "order_id", "order id")
    df = _require(batch, df, "product_id", "product id")
    line, bad = std.numbers(df["line_number"])
    batch.count_invalid("line_number", bad)
    df = df.copy()
    df["line_number"] = line.where(line.notna(), df.groupby("order_id").cumcount() + 1).astype("int64")
    df = _dedupe(batch, df, ["order_id", "line_number"], "order line")
    qty, bad = std.numbers(df["item_quantity"])
    df = _reject_unparseable(batch, df, "item_quantity", qty, bad, required=True)
    revenue, bad = std.numbers(df["item_revenue"])
    df = _reject_unparseable(batch, df, "item_revenue", revenue, bad, required=True)
    price, bad = std.numbers(df["item_unit_price"])
    batch.count_invalid("item_unit_price", bad)
    df["item_unit_price"] = price[df.index]
    df["product_category"] = std.identifier(df["product_category"])
    df["source"] = batch.source
    return df[DOMAIN_COLUMNS[SourceKind.transaction_items]]


def standardise_products(batch: Batch, source: Source) -> pd.DataFrame:
    df = _require(batch, _tagged(batch, source), "product_id", "product id")
    df = _dedupe(batch, df, ["product_id"], "product id")
    df = df.copy()
    price, bad = std.numbers(df["product_price"])
    batch.count_invalid("product_price", bad)
    df["product_price"] = price
    for col in ("product_name", "product_category", "product_brand"):
        df[col] = std.identifier(df[col])
    df["source"] = batch.source
    return df[DOMAIN_COLUMNS[SourceKind.products]]


STANDARDISERS = {
    SourceKind.customers: standardise_customers,
    SourceKind.transactions: standardise_transactions,
    SourceKind.transaction_items: standardise_items,
    SourceKind.products: standardise_products,
}


def build_domain_table(name: str, source: Source, path: Path) -> tuple[pd.DataFrame, Batch, int]:
    """Read + standardise one source. Returns (domain rows, batch with rejects, rows read)."""
    batch = read_source_file(name, source, path)
    rows_read = len(batch.rows) + len(batch.rejects)
    domain = STANDARDISERS[source.kind](batch, source)
    return domain.reset_index(drop=True), batch, rows_read


def write_quarantine(con, source: str, rejects: list[dict]) -> None:
    q = None
    if rejects:
        q = pd.DataFrame(rejects, columns=["source", "source_row", "raw_row", "reason"])
        q["quarantined_at"] = pd.Timestamp.now()
        con.register("_quarantine_batch", q)
    try:
        replace_quarantine_rows(con, source, "_quarantine_batch" if q is not None else None)
    finally:
        if q is not None:
            con.unregister("_quarantine_batch")


def replace_quarantine_rows(con, source: str, batch: str | None) -> None:
    """domain.quarantine's rows of `source` become those of table/view `batch` (source,
    source_row, raw_row, reason, quarantined_at); none when batch is None. Both engines."""
    con.execute("create schema if not exists domain")
    con.execute(QUARANTINE_DDL)
    con.execute("delete from domain.quarantine where source = ?", [source])
    if batch is not None:
        con.execute("insert into domain.quarantine select source, source_row, raw_row, reason, "
                    f"quarantined_at from {batch}")


def reason_key(reason: str) -> str:
    """A quarantine reason's metadata key: its text before any detail."""
    return reason.split(" (")[0].split(":")[0]


def load_domain_table_here(con, name: str, source: Source, path: Path) -> dict:
    """Read and standardise a source in this process; write domain.<name> and its quarantine rows.
    Returns what the asset reports."""
    domain, batch, rows_read = build_domain_table(name, source, path)
    replace_table(con, "domain", name, domain)
    write_quarantine(con, name, batch.rejects)
    reasons: dict[str, int] = {}
    for r in batch.rejects:
        key = reason_key(r["reason"])
        reasons[key] = reasons.get(key, 0) + 1
    return {"rows_read": rows_read, "rows_loaded": len(domain), "rows_quarantined": len(batch.rejects),
            "quarantine_reasons": reasons, "invalid_values_nulled": batch.invalid_values,
            "preview": domain.head(5)}


# ---- Dagster assets -----------------------------------------------------------------------------

def domain_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["domain", name])


def build_source_asset(cfg: TenantConfig, name: str, source: Source) -> dg.AssetsDefinition:
    path = cfg.resolve(source.path)

    @dg.asset(
        key=domain_asset_key(name),
        group_name=GROUP,
        description=(f"{source.description or name}: `{source.path}` ({source.kind.value}) standardised "
                     f"into `domain.{name}`; rejected rows go to `domain.quarantine`."),
        kinds={cfg.active_engine, source.format or "csv"},
        metadata={"source_file": str(path), "semantic_tags": dg.MetadataValue.json(source.columns)},
        tags={"cdp/kind": source.kind.value},
    )
    def _domain_table(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            if is_spark(con):  # a Spark job: read and standardised on the executors
                from .spark_sources import load_domain_table

                report = load_domain_table(con, name, source, path, cfg.spark.shuffle_partitions)
            else:
                report = load_domain_table_here(con, name, source, path)
        context.log.info(f"{name}: read {report['rows_read']}, loaded {report['rows_loaded']}, "
                         f"quarantined {report['rows_quarantined']}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": report["rows_loaded"],
            "rows_read": report["rows_read"],
            "rows_quarantined": report["rows_quarantined"],
            "quarantine_reasons": dg.MetadataValue.json(report["quarantine_reasons"]),
            "invalid_values_nulled": dg.MetadataValue.json(report["invalid_values_nulled"]),
            "preview": dg.MetadataValue.md(preview_md(report["preview"])),
        })

    return _domain_table


def build_accounting_check(cfg: TenantConfig, name: str, source: Source) -> dg.AssetChecksDefinition:
    path = cfg.resolve(source.path)

    @dg.asset_check(asset=domain_asset_key(name), name="every_row_accounted_for",
                    description="rows in the file = rows in the domain table + rows in quarantine")
    def _check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        in_file = count_file_rows(source, path)
        with warehouse.get_connection() as con:
            loaded = con.execute(f'select count(*) from domain."{name}"').fetchone()[0]
            quarantined = con.execute("select count(*) from domain.quarantine where source = ?",
                                      [name]).fetchone()[0]
        return dg.AssetCheckResult(
            passed=in_file == loaded + quarantined,
            metadata={"rows_in_file": in_file, "rows_loaded": loaded, "rows_quarantined": quarantined})

    return _check


def build_source_definitions(cfg: TenantConfig) -> tuple[list, list]:
    assets, checks = [], []
    for name, source in cfg.sources.items():
        assets.append(build_source_asset(cfg, name, source))
        checks.append(build_accounting_check(cfg, name, source))
    return assets, checks
