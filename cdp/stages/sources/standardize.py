"""Standardisation of semantic fields: emails, phones, names, addresses, postal codes, dates.

Every function takes and returns a pandas Series of strings (None for missing) so a domain
table is standardised column by column. Values that cannot be made valid become None; the
caller counts them.

Phones, street lines, states and postcodes follow the rules of each record's country (an ISO
3166-1 alpha-2 code per record, or one for all; countries.py holds the reference data):

* phone: parsed with the country as the region (`02 1234 5678` is +61 2 in AU); a number in
  +international form keeps its own country. E.164.
* postal: US ZIP5 (ZIP+4 cut, a 3-4 digit ZIP that lost its leading zeros padded), CA `A1A 1A1`,
  GB outward + inward code (`SW1A 1AA`), AU 4 digits, DE 5 digits (a PLZ that lost its leading
  zero padded); a value that cannot be a postcode of these countries is None. Elsewhere: as
  written, uppercase.
* state: names and abbreviations -> ISO 3166-2 code without the country (`NSW`, `QC`, `BY`,
  `ENG`), for every country pycountry knows; in US, CA, AU and DE anything else is None.
* address: USPS-style suffix abbreviations where streets are named in English (US, CA, AU, GB,
  IE, NZ); `straße`/`strasse`/`str.` -> `str` and ß -> ss where in German (DE, AT, CH, LI).

A record whose country is None (unknown) gets none of the country rules: a phone must be in
+international form, postcodes and states are kept as written (uppercase), street lines are only
lowercased and de-punctuated.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import phonenumbers

from cdp.countries import (CLOSED_SUBDIVISIONS, DEFAULT_COUNTRY, US_STATES,  # noqa: F401 - US_STATES
                        country_code, fold, subdivision_codes)       # is read by generate.py

EMAIL_RE = r"^[a-z0-9._%+'\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$"

GENDERS = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F",
           "x": "X", "non-binary": "X", "nonbinary": "X"}
STREET_SUFFIXES = {
    "street": "st", "str": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr",
    "lane": "ln", "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter",
    "parkway": "pkwy", "highway": "hwy", "circle": "cir", "square": "sq", "trail": "trl",
    "apartment": "apt", "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w",
    "unit": "apt", "#": "apt",
}
# where street lines are written in English (USPS suffixes) or in German (Straße -> str)
ENGLISH_STREETS = frozenset({"US", "CA", "AU", "GB", "IE", "NZ"})
GERMAN_STREETS = frozenset({"DE", "AT", "CH", "LI"})
GERMAN_STREET = re.compile(r"stra(?:ß|ss)e(?=\s|$)")   # Hauptstraße, Berliner Strasse
MIN_YEAR, MAX_YEAR = 1800, 2200  # dates outside are typos (and beyond pandas' nanosecond range)
# formats that read one way only; then the ones whose day and month can swap (03/04/1980),
# read day first or month first by the record's country unless the value says (25/03/1980)
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")
MONTH_FIRST = ("%m/%d/%Y", "%m-%d-%Y", "%m%d%Y")
DAY_FIRST = ("%d/%m/%Y", "%d-%m-%Y", "%d%m%Y")
# where 03/04/1980 is March 4th: the United States and its territories, the Philippines, the
# Pacific states in free association with the US, Belize, and Canada (where both are written;
# a source says date_order: dmy for French-Canadian exports). Elsewhere it is April 3rd.
MONTH_FIRST_COUNTRIES = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM", "PH", "FM", "MH", "PW",
                                   "BZ", "CA"})
EMPTY = {"", "null", "none", "n/a", "na", "nan", "nat", "-", "?"}

def as_optional(s: pd.Series) -> pd.Series:
    """An object Series whose missing values are None (not NaN / pd.NA)."""
    s = s.astype(object)
    return s.where(s.notna(), None)


def blank_to_none(s: pd.Series) -> pd.Series:
    """Trim whitespace; empty strings and null markers become None."""
    s = s.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
    return s.mask(s.str.lower().isin(EMPTY)).astype(object).where(lambda x: x.notna(), None)


def per_record(countries: pd.Series | str | None, index: pd.Index) -> pd.Series:
    """The country of each record: a Series aligned on index, from a Series or one for all."""
    if isinstance(countries, pd.Series):
        return as_optional(countries.reindex(index))
    return as_optional(pd.Series(countries, index=index, dtype=object))


def _each_unique(s: pd.Series, fn) -> pd.Series:
    """fn applied once per distinct present value (a column of a million rows has few)."""
    present = s.dropna()
    mapping = {v: fn(v) for v in pd.unique(present)}
    return as_optional(s.map(mapping))


def email(s: pd.Series) -> pd.Series:
    s = blank_to_none(s).str.replace(" ", "", regex=False).str.lower()
    return as_optional(s.where(s.str.match(EMAIL_RE, na=False), None))


@lru_cache(maxsize=1_000_000)
def _e164(raw: str, region: str | None) -> str | None:
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def phone(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY) -> pd.Series:
    """E.164, a national number read in its record's country (+international ones keep theirs).
    Each distinct number is parsed once per country."""
    s = blank_to_none(s)
    regions = per_record(countries, s.index).where(lambda r: r.notna(), "ZZ")  # ZZ: unknown
    out = pd.Series(None, index=s.index, dtype=object)
    for region in regions[s.notna()].unique():
        rows = (regions == region) & s.notna()
        codes, distinct = pd.factorize(s[rows])
        parsed = np.array([_e164(v, region) for v in distinct], dtype=object)
        out[rows] = parsed[codes]
    return as_optional(out)


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


def address(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY) -> pd.Series:
    """Lowercase street line, punctuation as spaces, with the street-type abbreviations of the
    record's country: USPS suffixes in English ('12 Oak Street' -> '12 oak st'), 'str' in German
    ('Hauptstraße 5' -> 'hauptstr 5')."""
    s = blank_to_none(s).str.lower().str.replace(r"[.,]", " ", regex=True)
    s = as_optional(s.str.replace(r"\s+", " ", regex=True).str.strip())
    regions = per_record(countries, s.index)
    english = regions.isin(ENGLISH_STREETS) & s.notna()
    german = regions.isin(GERMAN_STREETS) & s.notna()
    out = s.copy()
    out[english] = _each_unique(s[english], _english_suffixes)
    out[german] = _each_unique(s[german], _german_street)
    return as_optional(out.where(out != "", None))


def _english_suffixes(line: str) -> str:
    return " ".join(STREET_SUFFIXES.get(tok, tok) for tok in line.split(" "))


def _german_street(line: str) -> str:
    return GERMAN_STREET.sub("str", line).replace("ß", "ss")


def city(s: pd.Series) -> pd.Series:
    return name(s)


def state(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY) -> pd.Series:
    """ISO 3166-2 subdivision code (without the country) from a name, abbreviation or code, read
    in the record's country ('wa' is WA in AU and in US, 'Bayern' and 'Bavaria' are BY). In a
    country whose subdivisions are a closed list (US, CA, AU, DE) anything else is None;
    elsewhere (a GB county, say) it is kept as written, uppercase."""
    s = blank_to_none(s)
    regions = per_record(countries, s.index)
    out = as_optional(s.str.upper())
    folded = _each_unique(s, fold)
    for country in regions[s.notna()].dropna().unique():
        rows = (regions == country) & s.notna()
        codes = as_optional(folded[rows].map(subdivision_codes(country)))
        out[rows] = codes if country in CLOSED_SUBDIVISIONS else codes.where(codes.notna(), out[rows])
    return as_optional(out)


def country(s: pd.Series) -> pd.Series:
    """ISO 3166-1 alpha-2 from a code or a name ('Australia', 'Deutschland', 'UK'); None when
    the value is no country."""
    return _each_unique(blank_to_none(s), country_code)


def postal(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY) -> pd.Series:
    """A postcode in its record's country's format (see the module docstring); None when it
    cannot be one."""
    s = blank_to_none(s)
    regions = per_record(countries, s.index)
    out = as_optional(s.str.upper())
    for country, rule in POSTCODE_RULES.items():
        rows = (regions == country) & s.notna()
        if rows.any():
            out[rows] = rule(out[rows].str.replace(" ", "", regex=False))
    return as_optional(out)


def _us_zip(s: pd.Series) -> pd.Series:
    """ZIP5: ZIP+4 cut to five digits; 3-4 digits are a ZIP whose leading zeros a spreadsheet
    dropped (2139 -> 02139)."""
    zip5 = s.str.extract(r"^(\d{5})-?\d{4}$|^(\d{3,5})(?:-\d{4})?$")
    return zip5[0].fillna(zip5[1]).str.zfill(5)


def _ca_postal(s: pd.Series) -> pd.Series:
    """A1A 1A1 (letters D F I O Q U never appear; W Z never first)."""
    s = s.str.replace("-", "", regex=False)
    ok = s.str.fullmatch(r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]\d[ABCEGHJ-NPRSTV-Z]\d", na=False)
    return (s.str.slice(0, 3) + " " + s.str.slice(3)).where(ok, None)


def _gb_postcode(s: pd.Series) -> pd.Series:
    """Outward code, one space, inward code: sw1a1aa -> SW1A 1AA."""
    parts = s.str.extract(r"^([A-Z]{1,2}\d[A-Z\d]?|GIR)(\d[A-Z]{2})$")
    return parts[0] + " " + parts[1]


def _au_postcode(s: pd.Series) -> pd.Series:
    """Four digits; three are a Northern Territory (08xx) or ACT (02xx) postcode that lost its
    leading zero. Never five."""
    return s.where(s.str.fullmatch(r"\d{3,4}", na=False), None).str.zfill(4)


def _de_postcode(s: pd.Series) -> pd.Series:
    """Five digits (a 'D-' prefix dropped); four are a PLZ of the east (01067 Dresden) that lost
    its leading zero. None start with 00."""
    s = s.str.replace(r"^DE?-", "", regex=True)
    plz = s.where(s.str.fullmatch(r"\d{4,5}", na=False), None).str.zfill(5)
    return plz.where(~plz.str.startswith("00", na=False), None)


POSTCODE_RULES = {"US": _us_zip, "CA": _ca_postal, "GB": _gb_postcode, "AU": _au_postcode,
                  "DE": _de_postcode}


def gender(s: pd.Series) -> pd.Series:
    return as_optional(blank_to_none(s).str.lower().map(GENDERS))


def identifier(s: pd.Series) -> pd.Series:
    return blank_to_none(s)


def parse_dates(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY,
                order: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Parse dates written in any of the common formats.

    A value whose day and month could swap (03/04/1980, 03041980) is read in `order` ("mdy" or
    "dmy", a source's date_order) if given, else by the convention of its record's country;
    a value only one reading allows (25/03/1980) is read that way wherever it comes from.
    Returns (dates as datetime64, mask of values that were present but could not be parsed).
    """
    s = blank_to_none(s)
    present = s.notna()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    text = s.astype("string").str.slice(0, 10)
    for fmt in DATE_FORMATS:
        _fill(out, text, present, fmt)
    if (present & out.isna()).any():
        if order is None:
            month_first = per_record(countries, s.index).isin(MONTH_FIRST_COUNTRIES)
        else:
            month_first = pd.Series(order == "mdy", index=s.index)
        for preferred, other in ((MONTH_FIRST, DAY_FIRST), (DAY_FIRST, MONTH_FIRST)):
            rows = present & (month_first if preferred is MONTH_FIRST else ~month_first)
            for fmt in (*preferred, *other):  # the convention first, then what the value allows
                _fill(out, text, rows, fmt)
    bad = present & out.isna()
    return out, bad


def _fill(out: pd.Series, text: pd.Series, rows: pd.Series, fmt: str) -> None:
    """Dates of `fmt` into the rows of `out` still empty."""
    todo = rows & out.isna()
    if not todo.any():
        return
    parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
    # a year like 9932 parses (pandas 3 keeps it at second resolution) but is no date of ours,
    # and would not fit the nanosecond column: it counts as unparseable
    plausible = parsed.notna() & parsed.dt.year.between(MIN_YEAR, MAX_YEAR)
    out[plausible[plausible].index] = parsed[plausible].astype("datetime64[ns]")


def parse_datetimes(s: pd.Series, countries: pd.Series | str | None = DEFAULT_COUNTRY,
                    order: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Parse timestamps (ISO 8601 with or without 'T'/'Z', or any date format of parse_dates)."""
    s = blank_to_none(s)
    present = s.notna()
    text = s.astype("string").str.replace("T", " ", regex=False).str.replace("Z", "", regex=False)
    out = pd.to_datetime(text, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    todo = present & out.isna()
    if todo.any():
        out[todo] = pd.to_datetime(text[todo], format="ISO8601", errors="coerce")
    todo = present & out.isna()
    if todo.any():
        dates, _ = parse_dates(s[todo], countries, order)
        out[todo] = dates
    # microseconds whatever pandas' default resolution (2.x: nanoseconds, 3.x: microseconds): a
    # DuckDB TIMESTAMP, which Spark and PostgreSQL read from the warehouse's Parquet and COPY
    # (TIMESTAMP_NS is an 'illegal Parquet type' to Spark and text to BI Connect)
    out = out.where(out.isna() | out.dt.year.between(MIN_YEAR, MAX_YEAR))
    return out.astype("datetime64[us]"), present & out.isna()


def numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse amounts like '1,234.50' or '$12.00'; returns (floats, mask of unparseable values)."""
    s = blank_to_none(s)
    present = s.notna()
    cleaned = s.astype("string").str.replace(r"[$,\s]", "", regex=True)
    out = pd.to_numeric(cleaned, errors="coerce")
    return out, present & out.isna()


TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


def booleans(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """true/false, yes/no, y/n, t/f, 1/0 in any case; returns (booleans, mask of unparseable values)."""
    text = blank_to_none(s).str.lower()
    out = text.map(lambda v: True if v in TRUE else False if v in FALSE else None).astype("boolean")
    return out, text.notna() & out.isna()


def attribute_values(s: pd.Series, kind: str, countries: pd.Series | str | None = DEFAULT_COUNTRY,
                     order: str | None = None) -> tuple[pd.Series, pd.Series]:
    """A custom attribute's values parsed by its type (config.ATTRIBUTE_TYPES), in a column dtype
    that keeps the type when every value is missing (dates read as parse_dates does, by the
    record's country or the source's date_order); returns (values, mask of unparseable values)."""
    import pyarrow as pa

    if kind == "string":
        text = blank_to_none(s)
        return text.astype("string"), pd.Series(False, index=s.index)
    if kind in ("integer", "number"):
        values, bad = numbers(s)
        if kind == "number":
            return values.astype("float64"), bad
        fraction = values.notna() & (values % 1 != 0)
        return values.where(~fraction).astype("Int64"), bad | fraction
    if kind == "boolean":
        return booleans(s)
    if kind == "date":
        dates, bad = parse_dates(s, countries, order)
        return pd.Series(pa.array(dates).cast(pa.date32()), index=s.index,
                         dtype=pd.ArrowDtype(pa.date32())), bad
    if kind == "timestamp":
        return parse_datetimes(s, countries, order)
    raise ValueError(f"unknown attribute type {kind!r}")
