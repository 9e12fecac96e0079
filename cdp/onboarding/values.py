"""What a column's values say (value_scores): emails, phones, dates, postcodes, states,
countries, genders, person names, street lines, ids, amounts, quantities; and how a name's
and the values' scores combine into a tag (combine)."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import pandas as pd
import phonenumbers

from cdp.countries import DEFAULT_COUNTRY, country_code, fold, subdivision_codes
from cdp.stages.sources.standardize import EMAIL_RE, GENDERS, parse_dates


VALUE_SAMPLE = 1_000      # non-empty values each value rule looks at
MIN_VALUES = 3            # fewer non-empty values than this: the values say nothing
TAG_AT = 0.5              # a column is tagged from this score on ...
SURE_AT = 0.75            # ... and marked unsure below this one (or when another tag is close)
CLOSE = 0.15

NAME_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "de_DE", "de_AT", "fr_FR", "es_ES", "it_IT", "nl_NL",
                "pt_BR", "sv_SE", "da_DK", "pl_PL")


@lru_cache(maxsize=1)
def person_names() -> tuple[frozenset, frozenset]:
    """Folded given names and surnames of Faker's person lists of several countries."""
    given: set[str] = set()
    family: set[str] = set()
    for loc in NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except ImportError:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            given |= {fold(n) for n in getattr(provider, attr, ()) or ()}
        family |= {fold(n) for n in getattr(provider, "last_names", ()) or ()}
    return frozenset(given - {""}), frozenset(family - {""})


STREET_WORDS = ("street|st|road|rd|avenue|ave|av|drive|dr|lane|ln|court|ct|place|pl|crescent|cres|circuit|cct"
                "|way|close|cl|parade|pde|terrace|tce|ter|boulevard|blvd|highway|hwy|grove|gr|trail|trl|loop"
                "|row|square|sq|parkway|pkwy|circle|cir|walk|mews|gardens|gdns|hill|esplanade|promenade|alley"
                "|track|rise|view|vale|green|point|pass|run|path|trace|prk|park|pike|plaza|wy")
# after the street's type: 'Main St NW', '14th Ave S', 'Kansas Avenue Northwest'
DIRECTIONS = "(n|s|e|w|ne|nw|se|sw|north|south|east|west|northeast|northwest|southeast|southwest)"
# German-style lines end in the house number, maybe a range or a part: 'Hauptstr. 5', '12a', '5/7' (folded '5 7')
STREET_RE = re.compile(
    rf"(^\d+[a-z]?(-\d+)?,? .*[a-z]{{2,}})|(^.*\b({STREET_WORDS})\b\.?( {DIRECTIONS})?( \d.*)?$)"
    r"|(^.*(strasse|str|weg|gasse|allee|platz|ring|damm|ufer|chaussee)\b\.?,? ?\d+ ?[a-z]?( ?\d+ ?[a-z]?)?$)"
    r"|(^(\d+,? )?(rue|avenue|boulevard|bd|chemin|allee|impasse|place|route|quai|calle|avenida|plaza|paseo"
    r"|via|viale|piazza|corso|straat|laan|plein|gracht)\b.*)")
UNIT_RE = re.compile(r"^(apt|apartment|unit|suite|ste|flat|fl|flr|floor|#|bldg|building|room|rm|lot|level|lvl|"
                     r"wohnung|whg|etage|stock|og|appt|appartement|batiment|bat|escalier|piso|puerta|"
                     r"interno|scala)\b.*|^(#|no|nr)\s?\d+.*|^\d+\s?(st|nd|rd|th)?\s?(floor|fl|og|etage)$")
CHANNEL_WORDS = {"web", "app", "store", "pos", "online", "mobile", "email", "phone", "retail", "ecommerce",
                 "e-commerce", "marketplace", "in-store", "instore", "shop", "offline", "call center",
                 "catalog", "social", "wholesale", "amazon", "ebay", "android", "ios", "desktop", "kiosk"}
STATUS_WORDS = {"completed", "complete", "cancelled", "canceled", "returned", "pending", "shipped", "delivered",
                "refunded", "paid", "open", "closed", "failed", "processing", "new", "void", "on hold",
                "partially refunded", "fulfilled", "unfulfilled", "abgeschlossen", "storniert", "offen"}
POSTAL_PATTERNS = {
    "US": r"\d{5}(-?\d{4})?", "DE": r"(D-?)?\d{5}", "AU": r"\d{4}", "CA": r"[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d",
    "GB": r"[A-Za-z]{1,2}\d[A-Za-z\d]? ?\d[A-Za-z]{2}", "FR": r"\d{5}", "ES": r"\d{5}", "IT": r"\d{5}",
    "NL": r"\d{4} ?[A-Za-z]{2}", "AT": r"\d{4}", "CH": r"\d{4}", "BE": r"\d{4}", "DK": r"\d{4}",
    "NO": r"\d{4}", "NZ": r"\d{4}", "SE": r"\d{3} ?\d{2}", "IE": r"[A-Za-z]\d[\dWw] ?[A-Za-z\d]{4}",
}
COUNTRY_CANDIDATES = ("US", "CA", "GB", "AU", "DE", "AT", "CH", "FR", "ES", "IT", "NL", "IE", "NZ", "BE")
NUMBER_RE = re.compile(r"^[-+]?[$€£]?\s?\d{1,3}(,?\d{3})*(\.\d+)?$|^[-+]?\d+([.,]\d+)?$")


@dataclass
class Profile:
    """What one column's values look like."""
    name: str
    values: list[str]               # non-empty sampled values
    rows: int                       # rows sampled
    filled: float                   # share of rows with a value
    unique: bool                    # every row has a value, and no value repeats
    distinct: int
    keyish: bool = False            # nearly so: a key with a few blanks or duplicates (quarantined)
    scores: dict[str, float] = field(default_factory=dict)   # tag -> how well the values fit it

    @property
    def enough(self) -> bool:
        return len(self.values) >= MIN_VALUES


def share_fitting(values: list[str], test) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def _phone_ok(value: str, region: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15 or re.search(r"[A-Za-z]{2,}", value):
        return False
    try:
        num = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(num) or (
        phonenumbers.is_possible_number(num) and len(digits) >= 9)


def _dates(values: list[str]) -> tuple[float, float, float]:
    """(share parsed as dates, share with a time of day, median year)."""
    s = pd.Series(values, dtype=object)
    parsed, _ = parse_dates(s)
    iso = pd.to_datetime(s.str.replace("T", " ").str.replace("Z", ""), errors="coerce", format="ISO8601")
    both = parsed.where(parsed.notna(), iso)
    ok = both.notna()
    if not ok.any():
        return 0.0, 0.0, 0.0
    timed = s[ok].str.contains(r"\d{1,2}:\d{2}", regex=True).mean()
    return float(ok.mean()), float(timed), float(both[ok].dt.year.median())


def as_numbers(values: list[str]) -> pd.Series:
    cleaned = pd.Series(values, dtype=object).str.replace(r"[$€£,\s]", "", regex=True)
    return pd.to_numeric(cleaned, errors="coerce")


def id_like(v: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-.:/#]{0,63}", v)) and bool(re.search(r"\d", v)) \
        and not re.fullmatch(r"\d+\.\d+", v)


def profile_column(name: str, values: pd.Series, country: str | None) -> Profile:
    present = [v for v in values.tolist() if v is not None and fold(v) not in ("", "null", "none", "nan", "na")]
    rows = len(values)
    prof = Profile(name, present[:VALUE_SAMPLE], rows, len(present) / rows if rows else 0.0,
                   bool(rows) and len(present) == rows and len(set(present)) == rows, len(set(present)))
    prof.keyish = prof.unique or (prof.filled >= 0.97 and prof.distinct >= 0.97 * len(present))
    if prof.enough:
        prof.scores = value_scores(prof, country)
    return prof


def value_scores(prof: Profile, country: str | None) -> dict[str, float]:
    """Tag -> share of the values that fit it (0-1), from the values alone."""
    vals = prof.values
    low = [v.lower() for v in vals]
    folded = [fold(v) for v in vals]
    region = country or DEFAULT_COUNTRY
    s: dict[str, float] = {}
    s["email"] = share_fitting(low, lambda v: re.fullmatch(EMAIL_RE, v.replace(" ", "")) is not None)
    if s["email"] < 0.5:
        s["phone"] = share_fitting(vals, lambda v: _phone_ok(v, region))
    d_share, timed, year = _dates(vals)
    nums = as_numbers(vals)
    num_share = float(nums.notna().mean())
    ints = nums.dropna()
    int_share = float(((ints == ints.round()) & ~pd.Series(vals)[nums.notna().values].str.contains(r"\.").values)
                      .sum() / len(vals)) if len(ints) else 0.0
    if d_share >= 0.5 and not (int_share > 0.9 and not re.fullmatch(r"\d{8}", vals[0])):
        spread = len(set(vals)) >= min(20, 0.3 * len(vals))  # birthdays are many different days
        if timed < 0.5 and 1900 <= year <= date.today().year - 10 and spread:
            s["birthdate"] = d_share
        recent = (1.0 if year >= 1995 else 0.3) * (1.0 if spread else 0.4)
        for tag in ("create-datetime", "update-datetime", "order-datetime"):
            s[tag] = d_share * recent
    # only what cdp's standardiser keeps: 'Herr'/'Frau' or 'weiblich' tagged gender would be nulled
    s["gender"] = share_fitting(low, lambda v: v in GENDERS) if prof.distinct <= 8 else 0.0
    s["country"] = share_fitting(vals, lambda v: country_code(v) is not None) if prof.distinct <= 300 else 0.0
    codes = subdivision_codes(region)
    s["state"] = share_fitting(folded, lambda v: v in codes)
    pattern = POSTAL_PATTERNS.get(region)
    if pattern:
        # digits alone could be many things; a pattern with letters (GB, CA, NL) is plain
        s["postal"] = share_fitting(vals, lambda v: re.fullmatch(pattern, v) is not None) * (
            0.8 if pattern.startswith(r"\d") else 1.0)
    given, family = person_names()
    tokens = [f.split() for f in folded]
    single = [t for t in tokens if len(t) == 1]
    if share_fitting(vals, lambda v: re.search(r"\d|@", v) is None) > 0.9:
        g = sum(1 for t in tokens if t and t[0] in given) / len(vals)
        f = sum(1 for t in tokens if t and t[-1] in family) / len(vals)
        multi = sum(1 for t in tokens if len(t) >= 2) / len(vals)
        if multi > 0.7:
            s["full-name"] = sum(1 for t in tokens if len(t) >= 2 and (t[0] in given or t[-1] in family)) / len(vals)
        elif len(single) >= 0.7 * len(vals) and prof.distinct >= min(20, 0.2 * len(vals)):
            # the name lists are far from every name there is: 40% of a surname column found
            # in them is much (a city column: a few percent)
            s["given-name"] = min(1.0, 1.25 * g) if g > f + 0.1 else g * 0.6
            s["surname"] = min(1.0, 1.6 * f) if f > g + 0.1 else f * 0.6
        s["city"] = 0.5 if multi < 0.6 and g < 0.3 and f < 0.3 and prof.distinct > 5 else 0.0
    s["address"] = share_fitting(folded, lambda v: STREET_RE.match(v) is not None and len(v) > 4)
    s["address-line-2"] = share_fitting(folded, lambda v: UNIT_RE.match(v) is not None)
    s["national-id"] = share_fitting(vals, lambda v: re.fullmatch(r"\d{3}-\d{2}-\d{4}", v) is not None)
    id_share = share_fitting(vals, id_like)
    if id_share > 0.95 and s["email"] < 0.5 and s.get("phone", 0) < 0.5 and d_share < 0.5:
        s["pk"] = 1.0 if prof.unique else 0.9 if prof.keyish else 0.0
        # unique, but not on every row, and long enough to be a card number
        card = not prof.keyish and prof.distinct >= 0.95 * len(vals) and pd.Series(vals).str.len().median() >= 6
        s["loyalty-id"] = 0.9 if card else 0.5 * id_share
        s["other-id"] = 0.5 * id_share
        s["order-id"] = s["product-id"] = 1.0 if prof.keyish else 0.6
        s["customer-pk"] = 0.5
        s["store-id"] = 0.6 if prof.distinct < 0.05 * len(vals) + 20 else 0.0
    house = pd.Series(vals).str.fullmatch(r"\d{1,5}\s?[a-zA-Z]?(-\d{1,5})?")
    widths = pd.Series([len(v) for v in vals]).value_counts(normalize=True)
    # 7, 48, 1203: house numbers have no fixed width and no leading zeros (postcodes do)
    if house.mean() > 0.9 and not prof.keyish and prof.distinct > 10 and len(ints) and ints.median() > 10 \
            and ints.max() > 200 and widths.iloc[0] < 0.8 and share_fitting(vals, lambda v: v.startswith("0")) < 0.01:
        s["street-number"] = float(house.mean())
    if num_share > 0.95 and len(ints):
        decimals = pd.Series(vals).str.contains(r"[.,]\d{1,2}$").mean()
        money = 1.0 if decimals > 0.5 and (ints >= 0).mean() > 0.9 else 0.0
        zeros = float((ints == 0).mean())
        s["order-revenue"] = s["item-revenue"] = money * (1.0 if zeros < 0.2 else 0.4)
        s["item-unit-price"] = s["product-price"] = money * (1.0 if zeros < 0.2 else 0.4)
        s["order-discount"] = money * (0.9 if zeros >= 0.3 else 0.3)
        s["order-return-amount"] = money * (0.8 if prof.filled < 0.3 else 0.2)
        small = float(((ints >= 0) & (ints <= 1000) & (ints == ints.round())).mean())
        if int_share > 0.95 and ints.median() <= 20:
            # line numbers count up within an order: each is 1 or the one before plus 1
            seq = ints.values
            counting = float(((seq[1:] == 1) | (seq[1:] == seq[:-1] + 1)).mean()) if len(seq) > 1 else 0.0
            s["item-quantity"] = small * (1.0 - 0.5 * counting)
            s["line-number"] = small * counting * (1.0 if ints.min() <= 1 else 0.3)
    text = share_fitting(vals, lambda v: re.search(r"[A-Za-z]", v) is not None and not re.search(r"\d", v))
    if text > 0.9 and s["email"] < 0.5:
        few = prof.distinct <= max(3, 0.3 * len(vals))
        s["channel"] = share_fitting(low, lambda v: v in CHANNEL_WORDS) if prof.distinct <= 12 else 0.0
        s["order-status"] = share_fitting(low, lambda v: v in STATUS_WORDS) if prof.distinct <= 15 else 0.0
        s["product-category"] = 0.8 if few and prof.distinct >= 2 else 0.0
        s["product-brand"] = 0.7 if few and prof.distinct >= 2 else 0.0
        words = sum(len(t) for t in tokens) / len(vals)
        s["product-name"] = 0.9 if not few and words >= 2 else 0.0
    return {k: round(v, 3) for k, v in s.items() if v > 0}


# how far the values alone may take a tag (a column named col1), and how much the values count
# next to a matching name (0: not at all; 1: a name whose values do not fit is worth nothing)
VALUE_ONLY = {"email": 0.95, "phone": 0.9, "birthdate": 0.8, "gender": 0.85, "country": 0.75, "state": 0.75,
              "postal": 0.7, "national-id": 0.85, "full-name": 0.75, "given-name": 0.8, "surname": 0.8,
              "address": 0.75, "address-line-2": 0.75, "pk": 0.8, "create-datetime": 0.6,
              "update-datetime": 0.62, "order-datetime": 0.8, "order-revenue": 0.7, "item-revenue": 0.7,
              "item-unit-price": 0.6, "product-price": 0.75, "order-discount": 0.65, "item-quantity": 0.65,
              "line-number": 0.55, "order-id": 0.55, "product-id": 0.5, "channel": 0.8, "order-status": 0.8,
              "product-category": 0.7, "product-name": 0.7, "city": 0.45, "store-id": 0.85,
              "order-return-amount": 0.65, "loyalty-id": 0.6, "street-number": 0.6, "other-id": 0.3, "customer-pk": 0.3,
              "product-brand": 0.72}
VALUE_WEIGHT = {"email": 0.65, "phone": 0.6, "birthdate": 0.6, "gender": 0.6, "country": 0.5, "pk": 0.6,
                "create-datetime": 0.6, "update-datetime": 0.6, "order-datetime": 0.6, "state": 0.4,
                "postal": 0.45, "given-name": 0.3, "surname": 0.3, "full-name": 0.3, "address": 0.3,
                "order-revenue": 0.5, "item-revenue": 0.5, "item-unit-price": 0.5, "product-price": 0.5,
                "order-discount": 0.4, "item-quantity": 0.5, "line-number": 0.4, "national-id": 0.2}
# tags whose values show it plainly: they override a name that says otherwise
STRONG = {"email", "phone", "birthdate", "gender", "national-id", "full-name", "address"}


@dataclass
class Choice:
    tag: str | None
    score: float = 0.0
    alternatives: list[tuple[str, float, str]] = field(default_factory=list)   # (tag, score, why)
    why: str = ""                   # 'name', 'values', 'name and values', 'refers to <source>.<col>'
    name_disagrees: bool = False    # the name says another tag than the values do

    @property
    def unsure(self) -> bool:
        return self.tag is not None and (self.score < SURE_AT or self.name_disagrees or any(
            alt[1] >= self.score - CLOSE for alt in self.alternatives))


def combine(tag: str, name: dict, meaningless: bool, prof: Profile) -> tuple[float, str]:
    """One column's score for one tag, from its name and its values; and what said so."""
    n = name.get(tag, 0.0)
    v = prof.scores.get(tag, 0.0) if prof.enough else None
    if n > 0:
        if v is None:
            return n * 0.85, "name"
        w = VALUE_WEIGHT.get(tag, 0.1)
        return n * (1 - w + w * v), "name and values" if v >= 0.5 else "name"
    if v is None:
        return 0.0, ""
    factor = VALUE_ONLY.get(tag, 0.3)
    if None in name:                        # a name known to carry no tag (middle_name)
        factor *= 0.5 if tag in STRONG else 0.2
    elif not meaningless and tag not in STRONG:
        factor *= 0.75                      # a name that means something else ('survey_date')
    return v * factor, "values"
