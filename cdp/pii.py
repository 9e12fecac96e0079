"""Which columns carry personal data, and how a preview (or a marketer's page) shows them masked.

Dagster keeps every materialization's metadata in its event log, and Dagster's UI shows it to
whoever can open the UI. Row previews (`warehouse.preview_md`) therefore mask personal data by
default: the tenant setting `dagster: {raw_previews: true}` turns raw previews back on.

The PII columns are derived from the semantic tags (config.PROFILE_TAGS, one list here, not per
call site), plus the names those columns take further down the graph: Splink's `_l`/`_r` pairs,
`all_values` lists (`email__all`), derived matching keys (`email_user`, `name_key_*`), the
blocklist's and the provenance table's (field, value) rows, and the usual names a destination
renames them to (`first_name`, `zip`). Anything else that looks like an email address or a phone
number is masked wherever it appears in a text cell (a JSON profile, a quarantined raw line).

    email      jane.doe@example.com  -> j***@example.com
    phone      +12145550123          -> ***-***-0123
    name       Jane Doe              -> J. D.
    address    12 Oak Street         -> 1***
    postal     75201                 -> 75***
    birthdate  1984-03-07            -> 1984-**-**
    identifier LOY-0012345           -> ***45
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime

import numpy as np
import pandas as pd

from cdp.config import PROFILE_TAGS

# semantic tag -> kind of personal data (the tags config.PROFILE_TAGS defines that identify a person)
PII_TAGS = {
    "given-name": "name", "surname": "name", "full-name": "name",
    "email": "email", "phone": "phone",
    "address": "address", "street-number": "address", "address-line-2": "address",
    "postal": "postal", "birthdate": "birthdate",
    "loyalty-id": "identifier", "national-id": "identifier", "other-id": "identifier",
}
# domain column -> kind, from the tags
PII_COLUMNS = {PROFILE_TAGS[tag]: kind for tag, kind in PII_TAGS.items()}
# names the same data takes in derived tables and destinations (prefix -> kind)
_DERIVED_PREFIXES = (
    ("email", "email"), ("phone", "phone"), ("mobile", "phone"),
    ("given_name", "name"), ("surname", "name"), ("full_name", "name"), ("name_key", "name"),
    ("first_name", "name"), ("last_name", "name"), ("family_name", "name"),
    ("street", "address"), ("address", "address"),
    ("postal", "postal"), ("zip", "postal"), ("postcode", "postal"),
    ("birth", "birthdate"), ("date_of_birth", "birthdate"), ("dob", "birthdate"),
    ("other_id", "identifier"), ("loyalty", "identifier"), ("national_id", "identifier"),
    ("name", "name"),
)
_PAIR_SUFFIX = re.compile(r"(__all|_l|_r|s)$")
EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# E.164 and the usual national writings: +15551234567, (555) 123-4567, 555.123.4567, 020 7946 0000
PHONE_IN_TEXT = re.compile(r"(?<![\w.])(?:\+\d{7,15}|\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4})(?![\w])")
MASK = "***"


def pii_kind(column: str) -> str | None:
    """The kind of personal data a column holds (email, phone, name, address, postal, birthdate,
    identifier), or None. `<field>__from` columns name a source, not a value."""
    col = str(column).lower()
    if col.endswith("__from"):
        return None
    for name in (col, _PAIR_SUFFIX.sub("", col)):
        if name in PII_COLUMNS:
            return PII_COLUMNS[name]
    for prefix, kind in _DERIVED_PREFIXES:
        if col in (prefix, prefix + "s") or col.startswith(prefix + "_"):
            return kind
    return None


def _is_null(v) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def mask_value(kind: str | None, value):
    """`value` as a preview shows it: masked for a PII kind, else with any email or phone in it
    masked. Lists (all_values columns) are masked element by element."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [mask_value(kind, v) for v in value]
    if isinstance(value, dict):   # a struct
        return _mask_json(value, kind)
    if _is_null(value):
        return value
    if kind is None:
        return mask_text(value) if isinstance(value, str) else value
    if kind == "birthdate":
        if isinstance(value, (date, datetime, pd.Timestamp)):
            return f"{value.year}-**-**"
        m = re.search(r"(19|20)\d\d", str(value))
        return f"{m.group(0)}-**-**" if m else MASK
    text = str(value).strip()
    if not text:
        return value
    if kind == "email":
        local, at, domain = text.rpartition("@")
        return f"{local[:1]}{MASK}@{domain}" if at else MASK
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return f"{MASK}-{MASK}-{digits[-4:]}" if len(digits) >= 7 else MASK
    if kind == "name":
        return " ".join(f"{w[0].upper()}." for w in re.split(r"[\s,]+", text) if w)
    if kind == "postal":
        return text[:2] + MASK if len(text) > 3 else MASK
    if kind == "identifier":
        return MASK + text[-2:] if len(text) > 4 else MASK
    return text[:1] + MASK  # address


def mask_text(text: str) -> str:
    """Emails and phone numbers inside free text masked; a JSON document masked key by key."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(_mask_json(doc, None), ensure_ascii=False, default=str)
    text = EMAIL_IN_TEXT.sub(lambda m: mask_value("email", m.group(0)), text)
    return PHONE_IN_TEXT.sub(lambda m: mask_value("phone", m.group(0)), text)


def _mask_json(node, kind):
    if isinstance(node, dict):
        # a struct's own fields say what they hold; its `value` is what the enclosing column holds
        return {k: _mask_json(v, pii_kind(k) or (kind if k in ("value", "values") else None))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_json(v, kind) for v in node]
    if isinstance(node, str):
        return mask_value(kind, node) if kind else mask_text(node)
    return node


def mask_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of df with PII masked: PII columns by their kind, a (field, value) table's value by
    its field's kind, and emails / phones found in any other text."""
    out = df.astype(object).copy()
    field_col = "field" if "field" in map(str, out.columns) else None
    for column in out.columns:
        if field_col and str(column) == "value":
            out[column] = [mask_value(pii_kind(f) if isinstance(f, str) else None, v)
                           for f, v in zip(out[field_col], out[column])]
        else:
            kind = pii_kind(column)
            out[column] = [mask_value(kind, v) for v in out[column]]
    return out


# ---- the workspace, for a role that may not see personal data (a marketer) ----------------------
# the same kinds and masked forms as the previews, masked on the server before a page is rendered

def is_pii(column: str) -> bool:
    return pii_kind(column) is not None


def mask(column: str, value):
    """`value` of `column` as a marketer sees it (emails and phones in other text masked too)."""
    return mask_value(pii_kind(column), value)


def mask_rows(columns: list[str], rows) -> list[tuple]:
    kinds = [pii_kind(c) for c in columns]
    return [tuple(mask_value(k, v) for k, v in zip(kinds, row)) for row in rows]


def mask_pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(k, mask(k, v)) for k, v in pairs]
