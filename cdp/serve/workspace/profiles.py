"""The profile viewer: find people by name, email, phone or id, and show one person whole.

Search reads the c360 database: an email or phone is standardised as the sources are and looked
up in every customers record (so an old address still finds the person); a cdp_id or a source
record's pk is matched exactly; anything else is a name, every word of which must start the
given name, surname or full name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdp import pii
from cdp.serve.lookup_values import standard_email, standard_phone
from cdp.config import SourceKind, TenantConfig
from cdp.stages.activation.segments import SCHEMA as SEGMENT_SCHEMA, segment_status
from cdp.serve.workspace.reader import columns_of, quote, table_exists

SEARCH_LIMIT = 50
TRANSACTIONS_SHOWN = 100
PHONE_LIKE = re.compile(r"^[+()\d][\d\s().\-]{6,}$")
RESULT_COLUMNS = ["cdp_id", "given_name", "surname", "email", "phone", "city", "postal", "record_count"]


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple]

    @classmethod
    def of(cls, cursor) -> "Table":
        return cls([d[0] for d in cursor.description], cursor.fetchall())


@dataclass
class Person:
    cdp_id: str
    profile: list[tuple[str, object]]
    records: dict[str, Table] = field(default_factory=dict)      # source -> its records
    pairs: Table | None = None
    transactions: Table | None = None
    transaction_count: int = 0
    attributes: list[tuple[str, object]] = field(default_factory=list)
    predictive: list[tuple[str, object]] = field(default_factory=list)
    propensities: Table | None = None
    segments: list[str] = field(default_factory=list)


def _c360_columns(con) -> list[str]:
    present = set(columns_of(con, "c360", "customer_360"))
    return [c for c in RESULT_COLUMNS if c in present]


def search(con, cfg: TenantConfig, text: str) -> tuple[str, Table]:
    """(what the text was read as, matching people)."""
    text = text.strip()[:200]
    cols = ", ".join(f"c.{quote(c)}" for c in _c360_columns(con))
    if not text:
        return "nothing", Table(_c360_columns(con), [])
    ids_sql, params, kind = None, [], "name"
    if "@" in text:
        kind, value = "email", standard_email(text)
        ids_sql, params = _identity_ids_sql(con, cfg, "email"), [value]
    elif PHONE_LIKE.match(text) and standard_phone(text, cfg.country):
        kind, value = "phone", standard_phone(text, cfg.country)
        ids_sql, params = _identity_ids_sql(con, cfg, "phone"), [value]
    if ids_sql is not None and params[0] is not None:
        cur = con.execute(f"select {cols} from c360.customer_360 c where c.cdp_id in ({ids_sql}) "
                          f"order by c.cdp_id limit {SEARCH_LIMIT}", params)
        return f"{kind} {params[0]}", Table.of(cur)
    if ids_sql is not None:
        return f"{kind} (not a valid {kind})", Table(_c360_columns(con), [])
    # an id (cdp_id or a source pk) or a name
    words = [w.lower() for w in re.split(r"\s+", text) if w][:4]
    present = columns_of(con, "c360", "customer_360")
    name_cols = [c for c in ("given_name", "surname", "full_name") if c in present]
    name_tests = [" or ".join(f"starts_with(lower(c.{quote(col)}), ?)" for col in name_cols) for _ in words]
    name_params = [w for w in words for _ in name_cols]
    where = " and ".join(f"({t})" for t in name_tests) or "false"
    cur = con.execute(f"""
        select {cols} from c360.customer_360 c
        where c.cdp_id = ? or c.cdp_id in (select cdp_id from stitch.unified_coalesced where pk = ?)
           or ({where})
        order by c.cdp_id = ? desc, c.surname, c.given_name, c.cdp_id limit {SEARCH_LIMIT}""",
                      [text, text, *name_params, text])
    return "id or name", Table.of(cur)


def _identity_ids_sql(con, cfg: TenantConfig, column: str) -> str:
    parts = ["select cdp_id from c360.customer_360 where " + quote(column) + " = $1"]
    for name in cfg.sources_of(SourceKind.customers):
        if table_exists(con, "domain", name) and column in columns_of(con, "domain", name):
            parts.append(f"""select u.cdp_id from domain.{quote(name)} d join stitch.unified_coalesced u
                             on u.source = '{name}' and u.pk = d.pk where d.{quote(column)} = $1""")
    return " union ".join(parts)


def _one_row(con, schema: str, table: str, cdp_id: str) -> list[tuple[str, object]]:
    if not table_exists(con, schema, table):
        return []
    cur = con.execute(f"select * exclude (cdp_id) from {quote(schema)}.{quote(table)} where cdp_id = ?", [cdp_id])
    row = cur.fetchone()
    return list(zip([d[0] for d in cur.description], row)) if row else []


def person(con, cfg: TenantConfig, cdp_id: str) -> Person | None:
    cur = con.execute("select * from c360.customer_360 where cdp_id = ?", [cdp_id])
    row = cur.fetchone()
    if row is None:
        return None
    out = Person(cdp_id=cdp_id, profile=list(zip([d[0] for d in cur.description], row)))
    for name in cfg.sources_of(SourceKind.customers):
        if not table_exists(con, "domain", name):
            continue
        shown = ", ".join(f"d.{quote(c)}" for c in columns_of(con, "domain", name) if c != "source")
        cur = con.execute(f"""select {shown} from domain.{quote(name)} d where d.pk in
                              (select pk from stitch.unified_coalesced where source = ? and cdp_id = ?)
                              order by d.pk""", [name, cdp_id])
        table = Table.of(cur)
        if table.rows:
            out.records[name] = table
    if table_exists(con, "stitch", "unified_scores"):
        # the pairs Stitch scored between this person's records: the evidence that joined them
        out.pairs = Table.of(con.execute("""
            with mine as (select source, pk from stitch.unified_coalesced where cdp_id = ?)
            select s.source_l || '/' || s.pk_l as record_l, s.source_r || '/' || s.pk_r as record_r,
                   round(s.match_probability, 4) as match_probability, round(s.match_weight, 2) as match_weight,
                   s.deterministic_rule, s.label, s.linked
            from stitch.unified_scores s
            join mine l on l.source = s.source_l and l.pk = s.pk_l
            join mine r on r.source = s.source_r and r.pk = s.pk_r
            order by s.match_probability desc""", [cdp_id]))
    if table_exists(con, "interactions", "unified_transactions"):
        out.transaction_count = con.execute(
            "select count(*) from interactions.unified_transactions where cdp_id = ?", [cdp_id]).fetchone()[0]
        wanted = ["order_datetime", "source", "order_id", "channel", "store_id", "order_status",
                  "net_revenue", "order_revenue", "item_count"]
        present = [c for c in wanted if c in columns_of(con, "interactions", "unified_transactions")]
        out.transactions = Table.of(con.execute(
            f"select {', '.join(quote(c) for c in present)} from interactions.unified_transactions "
            f"where cdp_id = ? order by order_datetime desc limit {TRANSACTIONS_SHOWN}", [cdp_id]))
    out.attributes = (_one_row(con, "interactions", "transaction_attributes", cdp_id)
                      + _one_row(con, "interactions", "transaction_attributes_extended", cdp_id))
    out.predictive = _one_row(con, "predictive", "predicted_clv_attributes", cdp_id)
    if table_exists(con, "predictive", "product_category_propensity"):
        out.propensities = Table.of(con.execute(
            "select product_category, round(propensity, 3) as propensity from predictive.product_category_propensity "
            "where cdp_id = ? order by propensity desc", [cdp_id]))
    status = segment_status(con)  # the segments the last build built (not one it left out)
    names = [n for n, o in status.items() if o.built] if status is not None else list(cfg.segments)
    segment_tables = [n for n in names if table_exists(con, SEGMENT_SCHEMA, f"segment_{n}")]
    if segment_tables:
        union = " union all ".join(f"select '{n}' as segment from {SEGMENT_SCHEMA}.{quote('segment_' + n)} "
                                   "where cdp_id = $1" for n in segment_tables)
        out.segments = sorted(r[0] for r in con.execute(union, [cdp_id]).fetchall())
    return out


def _masked_table(t: Table | None) -> Table | None:
    return None if t is None else Table(t.columns, pii.mask_rows(t.columns, t.rows))


def masked(p: Person) -> Person:
    """The person as a marketer sees them: every PII field masked (pii.py)."""
    return Person(cdp_id=p.cdp_id, profile=pii.mask_pairs(p.profile),
                  records={s: _masked_table(t) for s, t in p.records.items()}, pairs=_masked_table(p.pairs),
                  transactions=_masked_table(p.transactions), transaction_count=p.transaction_count,
                  attributes=pii.mask_pairs(p.attributes), predictive=pii.mask_pairs(p.predictive),
                  propensities=_masked_table(p.propensities), segments=p.segments)
