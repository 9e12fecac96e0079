"""Standardisation of semantic fields: emails, phones, names, addresses, postal codes, dates.

Every function takes and returns a pandas Series of strings (None for missing) so a domain
table is standardised column by column. Values that cannot be made valid become None; the
caller counts them.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import phonenumbers

EMAIL_RE = r"^[a-z0-9._%+'\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$"

US_STATES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI", "minnesota": "MN",
    "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
    "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR",
    "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC", "south dakota": "SD",
    "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA",
    "washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
    "puerto rico": "PR", "guam": "GU", "virgin islands": "VI", "american samoa": "AS",
    "northern mariana islands": "MP", "armed forces americas": "AA", "armed forces europe": "AE",
    "armed forces pacific": "AP", "marshall islands": "MH", "palau": "PW",
    "federated states of micronesia": "FM",
}
COUNTRIES = {"us": "US", "usa": "US", "u.s.": "US", "u.s.a.": "US", "united states": "US",
             "united states of america": "US", "america": "US", "ca": "CA", "canada": "CA",
             "gb": "GB", "uk": "GB", "united kingdom": "GB", "mx": "MX", "mexico": "MX"}
GENDERS = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F",
           "x": "X", "non-binary": "X", "nonbinary": "X"}
STREET_SUFFIXES = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr",
    "lane": "ln", "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter",
    "parkway": "pkwy", "highway": "hwy", "circle": "cir", "square": "sq", "trail": "trl",
    "apartment": "apt", "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w",
    "unit": "apt", "#": "apt",
}
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%m-%d-%Y", "%Y%m%d")
EMPTY = {"", "null", "none", "n/a", "na", "nan", "nat", "-", "?"}


def as_optional(s: pd.Series) -> pd.Series:
    """An object Series whose missing values are None (not NaN / pd.NA)."""
    s = s.astype(object)
    return s.where(s.notna(), None)


def blank_to_none(s: pd.Series) -> pd.Series:
    """Trim whitespace; empty strings and null markers become None."""
    s = s.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
    return s.mask(s.str.lower().isin(EMPTY)).astype(object).where(lambda x: x.notna(), None)


def email(s: pd.Series) -> pd.Series:
    s = blank_to_none(s).str.replace(" ", "", regex=False).str.lower()
    return as_optional(s.where(s.str.match(EMAIL_RE, na=False), None))


@lru_cache(maxsize=1_000_000)
def _e164(raw: str, region: str) -> str | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def phone(s: pd.Series, region: str = "US") -> pd.Series:
    s = blank_to_none(s)
    return as_optional(s.map(lambda v: _e164(v, region) if isinstance(v, str) else None))


def name(s: pd.Series) -> pd.Series:
    """Trim, collapse spaces, drop stray punctuation, Title Case (O'Brien, Smith-Jones)."""
    s = blank_to_none(s).str.replace(r"[^\w\s'\-\.]", "", regex=True).str.strip()
    s = s.str.title().where(lambda x: x.str.len() > 0, None)
    return s.astype(object).where(s.notna(), None)


def split_full_name(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Robert J. Smith' -> ('Robert', 'Smith'); a single token is a given name."""
    parts = name(full).str.split(" ")
    given = parts.str[0]
    surname = parts.map(lambda p: p[-1] if isinstance(p, list) and len(p) > 1 else None)
    return as_optional(given), as_optional(surname)


def address(s: pd.Series) -> pd.Series:
    """Lowercase street line with standard USPS suffix abbreviations ('12 Oak Street' -> '12 oak st')."""
    s = blank_to_none(s).str.lower().str.replace(r"[.,]", " ", regex=True)
    s = s.str.replace(r"\s+", " ", regex=True).str.strip()

    def abbreviate(v):
        if not isinstance(v, str):
            return None
        return " ".join(STREET_SUFFIXES.get(tok, tok) for tok in v.split(" ")) or None

    return as_optional(s.map(abbreviate))


def city(s: pd.Series) -> pd.Series:
    return name(s)


def state(s: pd.Series) -> pd.Series:
    s = blank_to_none(s)
    low = s.str.lower()
    mapped = low.map(US_STATES)
    upper = s.str.upper()
    return mapped.where(mapped.notna(), upper).astype(object).where(lambda x: x.notna(), None)


def country(s: pd.Series) -> pd.Series:
    s = blank_to_none(s)
    mapped = s.str.lower().map(COUNTRIES)
    return mapped.where(mapped.notna(), s.str.upper()).astype(object).where(lambda x: x.notna(), None)


def postal(s: pd.Series, countries: pd.Series | None = None) -> pd.Series:
    """US ZIP: first five digits, zero-padded when a spreadsheet dropped the leading zero."""
    s = blank_to_none(s)
    digits = s.str.replace(r"[^0-9]", "", regex=True)
    us_like = s.str.match(r"^\d{3,5}(-?\d{4})?$", na=False)
    if countries is not None:
        us_like &= countries.isna() | (countries == "US")
    zip5 = digits.str.slice(0, 5).where(digits.str.len() != 9, digits.str.slice(0, 5))
    zip5 = zip5.where(digits.str.len() >= 5, digits.str.zfill(5))
    other = s.str.upper()
    out = zip5.where(us_like, other)
    return out.astype(object).where(out.notna(), None)


def gender(s: pd.Series) -> pd.Series:
    return as_optional(blank_to_none(s).str.lower().map(GENDERS))


def identifier(s: pd.Series) -> pd.Series:
    return blank_to_none(s)


def parse_dates(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse dates written in any of the common formats.

    Returns (dates as datetime64, mask of values that were present but could not be parsed).
    """
    s = blank_to_none(s)
    present = s.notna()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    text = s.astype("string").str.slice(0, 10)
    for fmt in DATE_FORMATS:
        todo = present & out.isna()
        if not todo.any():
            break
        out[todo] = pd.to_datetime(text[todo], format=fmt, errors="coerce")
    bad = present & out.isna()
    return out, bad


def parse_datetimes(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse timestamps (ISO 8601 with or without 'T'/'Z', or any date format)."""
    s = blank_to_none(s)
    present = s.notna()
    text = s.astype("string").str.replace("T", " ", regex=False).str.replace("Z", "", regex=False)
    out = pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    todo = present & out.isna()
    if todo.any():
        out[todo] = pd.to_datetime(text[todo], format="ISO8601", errors="coerce")
    todo = present & out.isna()
    if todo.any():
        dates, _ = parse_dates(s[todo])
        out[todo] = dates
    return out, present & out.isna()


def numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse amounts like '1,234.50' or '$12.00'; returns (floats, mask of unparseable values)."""
    s = blank_to_none(s)
    present = s.notna()
    cleaned = s.astype("string").str.replace(r"[$,\s]", "", regex=True)
    out = pd.to_numeric(cleaned, errors="coerce")
    return out, present & out.isna()
