"""Which columns hold personal data, and their masked form (what a marketer sees in the workspace).

A column is PII by its name: the profile fields of a person (names, emails, phones, street
addresses, postal codes, birth dates, national, loyalty and other ids) as the standardised domain
tables, Stitch and customer 360 name them, with a prefix or suffix (`emails`, `email_2`,
`billing_address`). City, state, country and gender stay readable (segments are built on them).

    mask("email", "ann.lee@example.com") -> "a•••@example.com"
    mask("phone", "+15551234567")        -> "•••67"
    mask("given_name", "Ann")            -> "A•••"
    mask("birthdate", date(1980, 5, 1))  -> "•••"
"""

from __future__ import annotations

import re

DOT = "•••"
PII_WORDS = ("email", "emails", "phone", "phones", "given_name", "surname", "full_name", "first_name",
             "last_name", "middle_name", "name", "address", "address2", "street", "street_number",
             "postal", "postcode", "zip", "birthdate", "birth_date", "date_of_birth", "dob",
             "national_id", "other_id", "ssn", "loyalty_id", "ip_address")
_PII = re.compile(r"(^|_)(" + "|".join(sorted(PII_WORDS, key=len, reverse=True)) + r")(_\d+|s)?($|_)")
NOT_PII = {"source_name", "segment_name", "product_name", "store_name", "campaign_name", "name_match",
           "email_domain"}


def is_pii(column: str) -> bool:
    c = column.lower()
    return c not in NOT_PII and bool(_PII.search(c))


def _mask_one(column: str, value) -> object:
    if value is None:
        return None
    text = str(value)
    if not text:
        return text
    c = column.lower()
    if "email" in c and "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}{DOT}@{domain}"
    if "phone" in c:
        digits = re.sub(r"\D", "", text)
        return f"{DOT}{digits[-2:]}" if len(digits) > 4 else DOT
    if re.search(r"name", c):
        return f"{text[:1]}{DOT}"
    return DOT


def mask(column: str, value):
    """`value` as a marketer may see it (unchanged when the column is not PII)."""
    if not is_pii(column):
        return value
    if isinstance(value, (list, tuple)):
        return [_mask_one(column, v) for v in value]
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
            return value
    except ImportError:  # pragma: no cover
        pass
    return _mask_one(column, value)


def mask_rows(columns: list[str], rows) -> list[tuple]:
    pii = [is_pii(c) for c in columns]
    if not any(pii):
        return list(rows)
    return [tuple(mask(c, v) if p else v for c, p, v in zip(columns, pii, row)) for row in rows]


def mask_pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(k, mask(k, v)) for k, v in pairs]


def mask_frame(df):
    """A copy of a pandas DataFrame with its PII columns masked."""
    cols = [c for c in df.columns if is_pii(str(c))]
    if not cols:
        return df
    df = df.copy()
    for c in cols:
        df[c] = df[c].map(lambda v, c=c: mask(str(c), v)).astype(object)
    return df
