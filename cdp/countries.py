"""Reference data for standardising international customer records: countries and their states.

* ISO 3166-1: a country written as a code (`AU`, `AUS`) or a name (`Australia`, `Deutschland`,
  `UK`) -> its alpha-2 code.
* ISO 3166-2: a state, province or Land written as a name or an abbreviation, keyed by the
  record's country (`wa` is Western Australia in AU, Washington in US) -> the subdivision code
  without the country prefix (`NSW`, `QC`, `BY`).

pycountry (the ISO 3166 tables and translations of Debian's iso-codes, shipped in its wheel, no
network) is the source of the codes and official names, in English, German and French. What it
lacks is listed here: the abbreviations people write (`Qld`, `Vic.`, `NRW`, `Que.`), the English
names of the German Länder (`Bavaria` is there, `Lower Saxony` is not), the French names of the
Canadian provinces it misspells, USPS-only codes (armed forces), and the names of the UK that are
not ISO (`UK`, `England` as a country). Matching is on a folded form of the text: lowercase,
accents dropped (`Québec` = `Quebec`), German umlauts also as ae/oe/ue (`Baden-Wuerttemberg`),
ß as ss, dots and apostrophes removed (`N.S.W.` = `NSW`), other punctuation as spaces.
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import lru_cache

import pycountry

# The country of a record when neither the record, its source nor its tenant says otherwise: cdp
# started US-only, so a tenant that sets no `country` keeps standardising as it always did.
DEFAULT_COUNTRY = "US"

# Countries whose list of subdivisions is closed: a state that is none of them is invalid (nulled
# and counted). Elsewhere an unknown value is kept as written, uppercase: in GB the `state` is
# usually a county, and ISO 3166-2:GB lists only some of the counties people write.
CLOSED_SUBDIVISIONS = frozenset({"US", "CA", "AU", "DE"})

# languages of pycountry's translations that country names are looked up in
COUNTRY_NAME_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt")
# ... and subdivision names
SUBDIVISION_LANGUAGES = ("en", "de", "fr")

COUNTRY_ALIASES = {
    "uk": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "america": "US", "united states": "US",
    "brd": "DE", "holland": "NL", "czech republic": "CZ", "turkey": "TR", "russia": "RU",
    "korea": "KR", "aussie": "AU", "oz": "AU",
}

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

# names and abbreviations pycountry does not have; codes are the ISO 3166-2 suffixes
SUBDIVISION_ALIASES: dict[str, dict[str, str]] = {
    "US": {**US_STATES, **{code.lower(): code for code in ("AA", "AE", "AP", "MH", "PW", "FM")},
           "washington dc": "DC", "dc": "DC"},
    "AU": {"nsw": "NSW", "vic": "VIC", "victoria": "VIC", "qld": "QLD", "queensland": "QLD",
           "tas": "TAS", "tassie": "TAS", "act": "ACT", "nt": "NT", "wa": "WA", "sa": "SA",
           "n territory": "NT", "aus capital territory": "ACT"},
    "CA": {"ont": "ON", "que": "QC", "pq": "QC", "alta": "AB", "sask": "SK", "man": "MB",
           "nfld": "NL", "nf": "NL", "newfoundland": "NL", "lab": "NL", "pei": "PE", "nwt": "NT",
           "yukon territory": "YT", "nvt": "NU", "colombie britannique": "BC",
           "nouveau brunswick": "NB", "nouvelle ecosse": "NS", "terre neuve et labrador": "NL",
           "terre neuve": "NL", "ile du prince edouard": "PE", "territoires du nord ouest": "NT"},
    "DE": {"bavaria": "BY", "hesse": "HE", "lower saxony": "NI", "north rhine westphalia": "NW",
           "north rhine westfalia": "NW", "nrw": "NW", "rhineland palatinate": "RP", "rlp": "RP",
           "saxony": "SN", "saxony anhalt": "ST", "thuringia": "TH", "bawue": "BW", "bawu": "BW",
           "mecklenburg western pomerania": "MV", "mecklenburg west pomerania": "MV",
           "mecklenburg vorpommern": "MV", "freistaat bayern": "BY", "freistaat sachsen": "SN",
           "freistaat thüringen": "TH", "freie und hansestadt hamburg": "HH",
           "freie hansestadt bremen": "HB"},
    "GB": {"cymru": "WLS", "cym": "WLS", "n ireland": "NIR", "ni": "NIR", "ulster": "NIR"},
}

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_DROPPED = re.compile(r"[.'’`]")
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """The form names are matched on: lowercase, without accents, ß as ss, '&' as 'and', dots and
    apostrophes removed, other punctuation as single spaces ('Île-du-Prince-Édouard' ->
    'ile du prince edouard', 'N.S.W.' -> 'nsw')."""
    text = text.lower().replace("ß", "ss").replace("&", " and ")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SEPARATORS.sub(" ", _DROPPED.sub("", text)).strip()


def _keys(name: str) -> set[str]:
    """The folded forms a name is found by: as written, and with German umlauts as ae/oe/ue."""
    name = re.sub(r"\s*\[.*?\]|\s*\(.*?\)", "", name)  # 'Wales [Cymru GB-CYM]' -> 'Wales'
    return {fold(name), fold(name.lower().translate(_UMLAUTS))} - {""}


def _translations(domain: str, languages: tuple[str, ...]) -> list[gettext.NullTranslations]:
    return [gettext.translation(domain, pycountry.LOCALES_DIR, languages=[lang], fallback=True)
            for lang in languages]


@lru_cache(maxsize=1)
def country_names() -> dict[str, str]:
    """Folded country name or code -> ISO 3166-1 alpha-2."""
    names: dict[str, str] = {}

    def add(name: str | None, code: str) -> None:
        for key in _keys(name) if name else ():
            names.setdefault(key, code)  # the first meaning wins: English before translations

    for c in pycountry.countries:
        for name in (c.alpha_2, c.alpha_3, c.name, getattr(c, "official_name", None),
                     getattr(c, "common_name", None)):
            add(name, c.alpha_2)
    for name, code in COUNTRY_ALIASES.items():
        add(name, code)
    for tr in _translations("iso3166-1", COUNTRY_NAME_LANGUAGES):
        for c in pycountry.countries:
            add(tr.gettext(c.name), c.alpha_2)
    return names


def country_code(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 of a country written as a code or a name; None when it is none."""
    if not value:
        return None
    key = fold(value)
    return country_names().get(key) or country_names().get(key.removeprefix("the "))


def is_country_code(value: str) -> bool:
    """Whether value is an assigned ISO 3166-1 alpha-2 code (any case)."""
    return len(value) == 2 and pycountry.countries.get(alpha_2=value.upper()) is not None


@lru_cache(maxsize=None)
def subdivision_codes(country: str) -> dict[str, str]:
    """Folded name, abbreviation or code of a country's top-level subdivisions -> its ISO 3166-2
    code without the country prefix ('new south wales', 'nsw', 'au nsw' -> 'NSW' for AU)."""
    codes: dict[str, str] = {}

    def add(name: str, code: str) -> None:
        for key in _keys(name):
            codes.setdefault(key, code)

    top = [s for s in pycountry.subdivisions.get(country_code=country) or () if s.parent_code is None]
    for s in top:
        suffix = s.code.split("-", 1)[1]
        add(suffix, suffix)
        add(s.code, suffix)  # 'AU-NSW'
        add(s.name, suffix)
    for name, code in SUBDIVISION_ALIASES.get(country, {}).items():
        add(name, code)
        add(f"{country}-{code}", code)
    for tr in _translations("iso3166-2", SUBDIVISION_LANGUAGES):
        for s in top:
            add(tr.gettext(s.name), s.code.split("-", 1)[1])
    return codes
