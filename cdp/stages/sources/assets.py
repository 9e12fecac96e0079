"""Stage 1 - sources -> domain tables.

One asset per configured source reads its file (CSV or Parquet), maps columns to semantic
tags, standardises the values and writes `domain.<source>` with a fixed schema per kind.
Rows that cannot be read or fail validation go to `domain.quarantine` with the raw row and
the reason, so every input row is accounted for: read = loaded + quarantined.

A customers column without a built-in tag can be kept as a custom attribute (`attributes:` in
the config): parsed by its type into `attr_<name>` (a value that does not parse is nulled and
counted in `invalid_values_nulled`, like a bad date). Columns neither tagged nor kept are not
loaded; the asset lists them in its `columns_ignored` metadata.
"""


import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from cdp.stages.sources import files as source_files
from cdp.stages.sources.accounting import account_for, file_units, tile  # noqa: F401 - their home before
from cdp.stages.sources import standardize as std
from cdp.config import Source, SourceKind, TenantConfig
from cdp.errors import UserError
from cdp.engine import SourceLoaders, WarehouseResource, warehouse_of
from cdp.engine.lakehouse import read_lakehouse_table
from cdp.engine.tables import preview_md, replace_table

GROUP = "sources"

DOMAIN_COLUMNS: dict[SourceKind, list[str]] = {
    SourceKind.customers: [
        "source", "pk", "given_name", "surname", "full_name", "email", "phone", "address", "address2",
        "city", "state", "postal", "country", "birthdate", "gender", "loyalty_id", "created_at",
        "updated_at", "source_row", "source_lines"],
    SourceKind.transactions: [
        "source", "order_id", "customer_source", "customer_pk", "order_datetime", "order_revenue",
        "order_discount", "order_status", "channel", "store_id", "return_amount", "source_row", "source_lines"],
    SourceKind.transaction_items: [
        "source", "order_id", "line_number", "product_id", "item_quantity", "item_unit_price",
        "item_revenue", "product_category", "source_row", "source_lines"],
    SourceKind.products: [
        "source", "product_id", "product_name", "product_category", "product_brand",
        "product_price", "source_row", "source_lines"],
}


# where a row came from: the line of a CSV file it starts on (1: the header) or its position in a
# Parquet/Delta source, and the physical lines it spans (a quoted field may hold line breaks)
SOURCE_POSITION = ("source_row", "source_lines")
# which delivery file brought a row's version and when it arrived (null for a one-file source);
# on every domain table, so customer tables union whichever way their sources arrive
DELIVERY_COLUMNS = ("delivery", "arrived_at")


def position_unit(source: Source) -> str:
    """What a source's source_row counts: the line of a CSV file a record starts on, or a row's
    position in Parquet/Delta."""
    return "row" if source.format in ("parquet", "delta") else "line"


def domain_columns(source: Source) -> list[str]:
    """The columns of a source's domain table: its kind's, and for customers the identifier
    columns and custom attributes (attr_<name>) of the whole tenant (national_id, other_id...),
    so customer tables union."""
    if source.kind != SourceKind.customers:
        return [*DOMAIN_COLUMNS[source.kind], *DELIVERY_COLUMNS]
    return [*DOMAIN_COLUMNS[source.kind][:-2], *source.tenant_identifier_columns,
            *source.tenant_attributes, *SOURCE_POSITION, *DELIVERY_COLUMNS]


def ignored_columns(source: Source, header: list[str]) -> list[str]:
    """Columns of a source file neither tagged nor kept as attributes: not loaded."""
    flag = source.deliveries.deleted_flag if source.deliveries else None
    return [c for c in header if c not in source.columns and c not in source.attributes
            and c not in SOURCE_POSITION and c != flag]


QUARANTINE_DDL = """
create table if not exists domain.quarantine (
    source varchar, source_row bigint, raw_row varchar, reason varchar, quarantined_at timestamp
)"""


class SourceFileError(UserError):
    """The source file itself cannot be read (missing, wrong format, no header)."""


@dataclass
class Batch:
    """Rows of one source on their way to the domain table, with the ones set aside."""

    source: str
    rows: pd.DataFrame  # raw string columns + source_row
    rejects: list[dict] = field(default_factory=list)
    invalid_values: dict[str, int] = field(default_factory=dict)
    read_as: dict = field(default_factory=dict)   # encoding, delimiter, physical lines (CSV)
    unit: str = "row"   # what source_row counts: see position_unit
    columns_ignored: list[str] = field(default_factory=list)  # in the file, neither tagged nor kept

    def __post_init__(self) -> None:
        self.raw = self.rows.copy()  # the rows as read, for quarantine

    def reject(self, mask: pd.Series, reason) -> None:
        """Move rows where mask is true to the quarantine with a reason (str or per-row Series)."""
        if not mask.any():
            return
        index = mask[mask].index
        reasons = reason[mask] if isinstance(reason, pd.Series) else [reason] * len(index)
        raw = self.raw.loc[index]
        raw_cols = [c for c in raw.columns if c not in SOURCE_POSITION]
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
            df[col] = df[col].astype(object).map(cell_text)
        df["source_row"] = range(1, len(df) + 1)
        df["source_lines"] = 1
        batch = Batch(name, df)
    else:
        batch = _read_csv(name, source, path)
    check_columns(name, source, [c for c in batch.rows.columns if c not in SOURCE_POSITION], path)
    return batch


def check_columns(name: str, source: Source, header: list[str], path: Path) -> None:
    """Every tagged column and kept attribute is in the file's header."""
    missing = [c for c in [*source.columns, *source.attributes] if c not in header]
    if missing:
        how = "tagged" if all(c in source.columns for c in missing) else "tagged or kept as attributes"
        raise SourceFileError(f"source {name!r}: columns {missing} are {how} in the config but not in "
                              f"{path} (it has {header})")


def cell_text(v) -> str | None:
    """A value read from a parquet/delta file as the text a CSV cell would hold (None for nulls)."""
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ") if isinstance(v, pd.Timestamp) else v.isoformat()
    return str(v)


def _read_csv(name: str, source: Source, path: Path) -> Batch:
    return csv_batch(name, source, path.read_bytes(), where=path)


def csv_batch(name: str, source: Source, data: bytes, where) -> Batch:
    """The rows of a CSV file's bytes (read here, or by Spark on an executor): every record
    numbered by the physical line it starts on, the unreadable ones set aside with the reason
    and their raw text (see source_files.py)."""
    try:
        parsed = source_files.parse(data, source.encoding, source.delimiter)
    except source_files.FileFormatError as exc:
        raise SourceFileError(f"source {name!r}: cannot read {where}: {exc}") from None
    header = parsed.header
    duplicated = sorted({h for h in header if h and header.count(h) > 1})
    if duplicated:
        raise SourceFileError(f"source {name!r}: {where}: the header names {duplicated} more than once")
    n = len(header)
    rejects: list[dict] = []
    rows, lines, spans = [], [], []
    for rec in parsed.records:
        reason = _unreadable(rec, n, parsed.encoding)
        if reason is None:
            rows.append(rec.fields)
            lines.append(rec.line)
            spans.append(rec.lines)
            continue
        raw = json.dumps(rec.fields) if reason.startswith("expected") else json.dumps({"line": rec.text})
        rejects.append({"source": name, "source_row": rec.line, "raw_row": raw, "reason": reason})
    df = pd.DataFrame(rows, columns=header, dtype=object)
    df["source_row"] = lines
    df["source_lines"] = spans
    batch = Batch(name, df, rejects, unit="line")
    batch.read_as = {"encoding": parsed.encoding, "encoding_from": parsed.how,
                     "delimiter": parsed.delimiter, "physical_lines": parsed.physical_lines}
    return batch


def _unreadable(rec: source_files.Record, width: int, encoding: str) -> str | None:
    """Why a record cannot be loaded, or None."""
    if rec.problem == "undecodable bytes":
        return f"undecodable bytes: not {encoding} (set the source's encoding:)"
    if rec.problem:
        return f"unreadable CSV line: {rec.problem}"
    if not rec.fields or (len(rec.fields) == 1 and not rec.fields[0].strip()):
        return "blank line"
    if len(rec.fields) != width:
        return f"expected {width} fields, found {len(rec.fields)}"
    longest = max(len(v) for v in rec.fields)
    if longest > source_files.MAX_FIELD_CHARS:
        return f"a field of {longest:,} characters (over {source_files.MAX_FIELD_CHARS:,})"
    return None


# ---- standardising per kind ---------------------------------------------------------------------

def _tagged(batch: Batch, source: Source) -> pd.DataFrame:
    """Columns renamed to their domain names; untagged domain columns are added as None."""
    mapping = {**source.domain_columns(), **{c: a.column for c, a in source.attributes.items()}}
    df = batch.rows[[*mapping, *SOURCE_POSITION]].rename(columns=mapping)
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
        reason = f"duplicate {label} (first seen at {batch.unit} " + first_row.astype(str) + ")"
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
    birthdate, bad = std.parse_dates(df["birthdate"], df["country"], source.date_order)
    future = birthdate > pd.Timestamp.now()
    batch.count_invalid("birthdate", bad | future)
    df["birthdate"] = birthdate.where(~future).dt.date.astype(object).where(birthdate.notna() & ~future, None)
    for col in ("created_at", "updated_at"):
        parsed, bad = std.parse_datetimes(df[col], df["country"], source.date_order)
        batch.count_invalid(col, bad)
        df[col] = parsed
    for col, kind in source.tenant_attributes.items():
        # a value that does not parse as the attribute's type is nulled and counted, the row kept
        df[col], bad = std.attribute_values(df[col], kind, df["country"], source.date_order)
        batch.count_invalid(col, bad)
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
    when, bad = std.parse_datetimes(df["order_datetime"], source.default_country, source.date_order)
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
    batch.columns_ignored = ignored_columns(source, list(batch.rows.columns))
    rows_read = len(batch.rows) + len(batch.rejects)
    domain = STANDARDISERS[source.kind](batch, source)
    return without_delivery(domain.reset_index(drop=True)), batch, rows_read


def without_delivery(domain: pd.DataFrame) -> pd.DataFrame:
    """The delivery columns of a row no delivery brought: null, typed (text, timestamp)."""
    return domain.assign(delivery=pd.Series(None, index=domain.index, dtype="string"),
                         arrived_at=pd.Series(pd.NaT, index=domain.index, dtype="datetime64[us]"))


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
        con.execute("insert into domain.quarantine (source, source_row, raw_row, reason, quarantined_at) "
                    f"select source, source_row, raw_row, reason, quarantined_at from {batch}")


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
            "read_as": batch.read_as, "columns_ignored": batch.columns_ignored, "preview": domain.head(5)}




# ---- Dagster assets -----------------------------------------------------------------------------

def domain_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["domain", name])


def _without_distributed(con, name, source, path, buckets) -> dict:
    raise RuntimeError("this source asset was built without the distributed loader: build the stage "
                       "with cdp.stages.sources.definitions(cfg)")


def _loaders(loaders: SourceLoaders | None) -> SourceLoaders:
    return loaders or SourceLoaders(in_process=load_domain_table_here, distributed=_without_distributed)


def build_source_asset(cfg: TenantConfig, name: str, source: Source,
                       loaders: SourceLoaders | None = None) -> dg.AssetsDefinition:
    """domain.<name> from the source's file, loaded by the engine's choice of `loaders`: in this
    process (load_domain_table_here) or as a job on the executors (cdp/stages/sources/spark.py,
    handed in by the stage's definitions: that module builds on this one)."""
    path = cfg.resolve(source.path)

    @dg.asset(
        key=domain_asset_key(name),
        group_name=GROUP,
        description=(f"{source.description or name}: `{source.path}` ({source.kind.value}) standardised "
                     f"into `domain.{name}`; rejected rows go to `domain.quarantine`."),
        kinds={cfg.active_engine, source.format or "csv"},
        metadata={"source_file": str(path), "semantic_tags": dg.MetadataValue.json(source.columns),
                  **({"attributes": dg.MetadataValue.json({c: {"column": a.column, "type": a.type}
                                                           for c, a in source.attributes.items()})}
                     if source.attributes else {})},
        tags={"cdp/kind": source.kind.value},
    )
    def _domain_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            report = warehouse_of(con).load_source(con, _loaders(loaders), name, source, path,
                                                   cfg.spark.shuffle_partitions)
        context.log.info(f"{name}: read {report['rows_read']}, loaded {report['rows_loaded']}, "
                         f"quarantined {report['rows_quarantined']}")
        if report["columns_ignored"]:
            context.log.warning(f"{name}: columns {', '.join(report['columns_ignored'])} are neither tagged "
                                "nor kept as attributes: not loaded")
        return dg.MaterializeResult(metadata=report_metadata(cfg, report))

    return _domain_table


def report_metadata(cfg: TenantConfig, report: dict) -> dict:
    """What a domain asset shows of a load's report."""
    return {
        "dagster/row_count": report["rows_loaded"],
        "rows_read": report["rows_read"],
        "rows_quarantined": report["rows_quarantined"],
        "quarantine_reasons": dg.MetadataValue.json(report["quarantine_reasons"]),
        "invalid_values_nulled": dg.MetadataValue.json(report["invalid_values_nulled"]),
        "columns_ignored": dg.MetadataValue.json(report["columns_ignored"]),
        **({"read_as": dg.MetadataValue.json(report["read_as"])} if report.get("read_as") else {}),
        "preview": dg.MetadataValue.md(preview_md(report["preview"], raw=cfg.dagster.raw_previews)),
    }


def build_accounting_check(cfg: TenantConfig, name: str, source: Source) -> dg.AssetChecksDefinition:
    path = cfg.resolve(source.path)
    unit = "rows" if source.format in ("parquet", "delta") else "lines"

    @dg.asset_check(asset=domain_asset_key(name), name="every_row_accounted_for",
                    description=f"every {unit[:-1]} of the file, counted without the loader's parser, "
                                "starts or continues exactly one row of the domain table or of quarantine")
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        in_file = file_units(source, path)
        with warehouse.get_connection() as con:
            figures = account_for(con, name, in_file, first=1 if unit == "rows" else 2)
        return dg.AssetCheckResult(passed=not figures["problems"], metadata={
            f"{unit}_in_file": in_file, **{k: v for k, v in figures.items() if k != "problems"},
            "problems": dg.MetadataValue.json(figures["problems"])})

    return _check


def source_definitions(cfg: TenantConfig, loaders: SourceLoaders) -> dg.Definitions:
    """One domain.<source> asset per configured one-file source, each with its row-accounting
    check (a source of deliveries is built by delivery_assets.py)."""
    files = {name: source for name, source in cfg.sources.items() if source.deliveries is None}
    return dg.Definitions(assets=[build_source_asset(cfg, name, source, loaders)
                                  for name, source in files.items()],
                          asset_checks=[build_accounting_check(cfg, name, source)
                                        for name, source in files.items()])
