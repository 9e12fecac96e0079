"""`cdp init DATA_FILES...`: a starting tenant config written from the data files themselves.

For each file it reads the header and a sample of rows, then suggests a source name, a kind
(customers | transactions | transaction_items | products) and a semantic tag per column:

* **reading** (`read_sample`): CSV as `cdp run` reads it (`source_files`: a BOM, else UTF-8,
  else the legacy code page detected; the header's delimiter), or Parquet; the first
  `SAMPLE_ROWS` rows, as text.
* **name rules** (`NAME_RULES`): the common names of each tag in English, German, French,
  Spanish, Italian and Dutch, matched on the folded column name (`FirstName`, `first_name`,
  `Vorname`, `Prénom` -> `first name`, `vorname`, `prenom`), with person prefixes stripped
  (`customer_email`, `mailing_address_city`) and those of someone else discounted
  (`employer_city`).
* **value rules** (`value_scores`): emails, phones (phonenumbers, in the file's country), dates
  (birth dates are decades apart, timestamps recent), postcodes and states of the country,
  countries (pycountry), genders, given names and surnames (Faker's name lists of several
  countries), street lines, social security numbers, ids (unique per row: a pk), amounts,
  quantities; and across files, a column whose values are another file's key (customer-pk with
  `customer_source`, the order-id of order lines, a product-id). Values override a misleading
  name and tag a column whose name means nothing (`col1`, `field_7`).
* **kind**: the kind whose tags fit the columns best (its required tags most of all), helped by
  the file name (`orders.csv`, `kunden.csv`).
* **country**: `--country`, else the data's (a country column, +international phones, states,
  postcodes, the header's language); a source whose records are of another country than the
  tenant's gets its own `country:`.
* **writing** (`render_config`): YAML with relative paths; what is unsure carries a comment
  (`# unsure: phone, or email (its name)`), untagged columns are listed in a comment. The
  result passes `load_config`.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd
import phonenumbers
import yaml

from cdp.stages.sources import files as source_files
from cdp.config import REQUIRED_TAGS, TAGS_BY_KIND, SourceKind, load_config
from cdp.countries import DEFAULT_COUNTRY, country_code, fold, subdivision_codes
from cdp.stages.sources.standardize import EMAIL_RE, GENDERS, parse_dates, parse_datetimes

SAMPLE_ROWS = 20_000      # rows read per file ...
HEAD_BYTES = 16 << 20     # ... from at most its first 16 MiB
VALUE_SAMPLE = 1_000      # non-empty values each value rule looks at
MIN_VALUES = 3            # fewer non-empty values than this: the values say nothing
TAG_AT = 0.5              # a column is tagged from this score on ...
SURE_AT = 0.75            # ... and marked unsure below this one (or when another tag is close)
CLOSE = 0.15
KINDS = [k.value for k in SourceKind]


class InitError(ValueError):
    """A data file cannot be read; the message is one line naming the file."""


# ---- reading --------------------------------------------------------------------------------

@dataclass
class Sample:
    path: Path
    columns: list[str]
    rows: pd.DataFrame              # the sample, every value text or None
    format: str                     # csv | parquet
    encoding: str | None = None
    delimiter: str | None = None


def _shape(cell: str) -> str:
    """What a cell looks like: empty, a date, a number, an email, or text."""
    cell = cell.strip()
    if not cell:
        return "empty"
    if re.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}([ T]\d{1,2}:\d{2}.*)?", cell):
        return "date"
    if re.fullmatch(r"[-+]?[$€£]?\s?[\d.,\s()/-]+", cell) and re.search(r"\d", cell):
        return "number"
    return "email" if re.fullmatch(EMAIL_RE, cell.lower()) else "text"


def _first_line_is_data(header: list[str], rows: list[list[str | None]]) -> bool:
    """A first line whose cells look like the values under them (a date over dates, a number
    over numbers, an email over emails, a blank) in at least two columns and a quarter of them:
    column names are words, rarely blank and never shaped like their column's values."""
    if not rows:
        return sum(_shape(h) != "text" for h in header) * 2 > len(header)
    alike = 0
    for i, h in enumerate(header):
        shape = _shape(h)
        below = Counter(_shape(r[i] or "") for r in rows[:200])
        if shape == "empty" or (shape != "text" and below.most_common(1)[0][0] == shape):
            alike += 1
    return alike >= 2 and alike * 4 >= len(header)


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat(sep=" ")
    if hasattr(v, "isoformat"):
        return v.isoformat()
    s = str(v).strip()
    return s or None


def read_sample(path: str | os.PathLike, rows: int = SAMPLE_ROWS) -> Sample:
    """The header and the first `rows` rows of a CSV or Parquet file, as text."""
    path = Path(path)
    if not path.is_file():
        raise InitError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            batch = next(pf.iter_batches(batch_size=rows), None)
            names = pf.schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - any arrow error: not a Parquet file we can read
            raise InitError(f"{path}: cannot read it as Parquet: {str(exc).splitlines()[0]}") from None
        df = batch.to_pandas() if batch is not None else pd.DataFrame(columns=names)
        df = pd.DataFrame({c: [_text(v) for v in df[c]] for c in names}, dtype=object)
        return Sample(path, list(names), df, "parquet")
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        cut = bool(fh.read(1))
    if not head.strip():
        raise InitError(f"{path}: the file is empty (no header row)")
    if b"\x00" in head and not head.startswith(tuple(bom for bom, _ in source_files.BOMS)):
        raise InitError(f"{path}: not a text file (CSV) nor Parquet")
    if cut:  # the last line read may be cut short: end at a line break (UTF-16/32: a whole character)
        wide = head.startswith(tuple(bom for bom, name in source_files.BOMS if name != "utf-8-sig"))
        head = head[:len(head) // 4 * 4] if wide else head[:max(head.rfind(b"\n"), head.rfind(b"\r")) + 1] or head
    # read as `cdp run` will read it (cdp/stages/sources/files.py): what it decodes and splits
    # the same way is what the config written here will say
    try:
        parsed = source_files.parse(head)
    except source_files.FileFormatError as exc:
        raise InitError(f"{path}: {exc}") from None
    header, encoding, delimiter = parsed.header, parsed.encoding, parsed.delimiter
    records = [[v.strip() or None for v in r.fields] for r in parsed.records
               if r.problem is None and r.fields is not None and len(r.fields) == len(header)][:rows]
    if len(header) < 2 and not records:
        raise InitError(f"{path}: no data rows under the header")
    if _first_line_is_data(header, records):
        raise InitError(f"{path}: has no header row (its first line looks like data: "
                        f"{', '.join(header[:3])}); add a line of column names")
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise InitError(f"{path}: column names appear twice in the header: {', '.join(map(repr, dupes))}")
    return Sample(path, header, pd.DataFrame(records, columns=header, dtype=object), "csv",
                  encoding, delimiter)


# ---- column names ---------------------------------------------------------------------------

def name_key(column: str) -> str:
    """The form names are matched on: words split at camelCase and digits, folded (lowercase,
    no accents, punctuation as spaces): 'FirstName' -> 'first name', 'Address1' -> 'address 1',
    'E-Mail' -> 'e mail', 'Straße' -> 'strasse'."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", s)
    s = re.sub(r"([A-Za-z])(\d)|(\d)([A-Za-z])", lambda m: " ".join(g for g in m.groups() if g), s)
    return fold(s)


# tag -> regular expression a whole (folded) column name matches; None: names that are known
# to carry nothing a tag takes (a middle name, an age, a note)
_ID = r"(id|key|no|nr|num|number|code|ref|reference|uid|uuid|guid|nummer)"
NAME_RULES: list[tuple[str | None, str]] = [
    # customers
    ("pk", rf"{_ID}|(record|rec|row|person|party|contact|account|profile|master|crm) ?{_ID}"
           r"|kundennummer|kundennr|kdnr|numero client|n client"),
    ("given-name", r"first ?name|first|fname|given ?names?|given|forenames?|christian name|vorname|rufname"
                   r"|prenom|nombre|nome|voornaam|fornavn|fornamn|imie"),
    ("surname", r"last ?name|last|lname|surname|family ?name|family|fam ?name|sur ?name|nachname|familienname|zuname"
                r"|nom|nom de famille|apellidos?|cognome|achternaam|efternavn|efternamn|nazwisko"),
    ("full-name", r"(full|display|complete|contact)? ?name|names|nom complet|nombre completo|nome completo"
                  r"|vollstandiger name|volle name|naam"),
    ("email", r"e ?mail( address| adresse| addr)?|email ?address|mail|courriel|correo( electronico)?"
              r"|adresse e ?mail|adresse electronique|posta elettronica"),
    ("phone", r"(phone|tel|telephone|telefon|telefono|telefoon|fon|handy|mobil|mobile|cell|cellphone|"
              r"mobile phone|cell phone|portable|movil|cellulare|gsm)( ?(number|no|nr|nummer|1))?"
              r"|phone ?number|numero de telephone|rufnummer|tel ?nr|mobilnummer|handynummer"),
    ("address", r"(street|str|strasse)( ?(address|line|name|line 1|and number))?|address( ?line)?( ?1)?"
                r"|addr( ?line)?( ?1)?|adr|adresse( 1)?|anschrift|strasse und hausnummer|adresse postale"
                r"|rue|calle|direccion|via|indirizzo|straat|adres|line 1|mailing address|home address"),
    ("street-number", r"(street|house|building|civic) ?(number|no|nr|num)|hausnummer|hausnr|hnr"
                      r"|numero|num rue|numero civico|huisnummer|street num"),
    ("address-line-2", r"(address|addr|adresse)( ?line)? ?2|line 2|unit( ?(number|no|nr))?|apt|apartment"
                       r"|suite|flat|adresszusatz|zusatz|complement( d adresse)?|piso|interno|toevoeging"),
    ("city", r"city|town|suburb|locality|municipality|ort|stadt|wohnort|ortschaft|gemeinde|ville|commune"
             r"|ciudad|localidad|poblacion|citta|comune|localita|plaats|woonplaats|stad|city name|town city"),
    ("state", r"state( ?(code|province|abbr|name))?|province|prov|region|county|territory|bundesland"
              r"|kanton|departement|provincia|regione|estado|provincie|state province"),
    ("postal", r"zip( ?code)?|zipcode|zip 5|zip5|post ?code|postal( ?code)?|postcode|plz|postleitzahl"
               r"|code postal|cp|cap|codigo postal|codice postale|postnummer|postnr|post nr|eircode"),
    ("country", r"country( ?(code|name|iso))?|iso country|nation|land|pays|pais|paese|nazione|staat"),
    ("birthdate", r"dob|d o b|birth ?(date|day)|date of birth|birth|bday|born( on)?|geburtsdatum|geburtstag"
                  r"|geb( datum)?|date de naissance|fecha de nacimiento|fecha nacimiento|data di nascita"
                  r"|data nascita|geboortedatum|fodelsedatum|fodselsdato"),
    ("gender", r"gender|sex|geschlecht|sexe|genre|sexo|genere|sesso|geslacht|kon|kjonn"),
    ("loyalty-id", r"loyalty( ?(id|number|no|nr|card|card number|num))?|(member|membership|rewards?|club)"
                   r" ?(card|number|no|nr)( number)?|card ?(number|no)|kundenkarte|payback|carte fidelite"),
    ("national-id", r"ssn|ssn ?id|social security( ?(number|no|id))?|soc ?sec( ?(id|no|number))?|sin"
                    r"|national ?(id|number|insurance( number)?)|nino|tax ?(id|number)|tin"
                    r"|steuer ?(id|nummer)|steuer identifikationsnummer|nir|insee|dni|nif|nie"
                    r"|codice fiscale|bsn|personnummer|pesel|id ?number"),
    ("create-datetime", r"(created|creation|create|signup|sign up|registration|registered|joined|join|enrolled"
                        r"|enrollment|enrolment|opt ?in|subscribed|since|first seen|erstellt|angelegt"
                        r"|registriert|anmeldung)( ?(at|on|date|time|ts|datetime|timestamp|am|datum))?"
                        r"|date (created|joined|added)|customer since|member since|kunde seit"),
    ("update-datetime", r"(updated|update|modified|modification|changed|change|last ?(updated|modified|changed"
                        r"|update|seen|activity)|geandert|aktualisiert)( ?(at|on|date|time|ts|datetime"
                        r"|timestamp|am|datum))?|date (updated|modified)"),
    (None, r"middle( ?(name|names|initial|initials))?|mi|title|salutation|anrede|honorific|suffix|prefix"
           r"|age|alter|notes?|comments?|remarks?|bemerkung|description|race|ethnicity|race ethnicity"
           r"|relationship.*|housing.*|po ?box|marital.*|income|wages|salary|occupation|job.*|password"
           r"|hash|ip( address)?|user agent|url|website|lat|lon|lng|latitude|longitude|year|years"),
    # transactions
    ("order-id", r"(order|receipt|transaction|txn|trans|invoice|sale|purchase|basket|ticket|booking|bestell)"
                 r" ?(id|no|nr|num|number|ref|key|code|nummer)?|bestellnummer|auftragsnummer|belegnummer"
                 r"|rechnungsnummer|bon ?nr|numero de commande"),
    ("customer-pk", rf"(customer|cust|client|member|subscriber|kunde|kunden|user|account|buyer|shopper|"
                    rf"contact|person|guest) ?{_ID}?|kundennummer|kundennr|kdnr"),
    ("order-datetime", r"(order|receipt|transaction|txn|purchase|sale|sales|booking|invoice|bestell|kauf)"
                       r" ?(date|ts|time|datetime|timestamp|at|datum|zeit|day)|date|datetime|timestamp|ts|time"
                       r"|datum|created( at)?|placed( at)?|ordered( at)?|purchased( at)?"),
    ("order-revenue", r"(order|receipt|transaction|sale|sales|basket|invoice|grand|gross|net)? ?(total|amount"
                      r"|revenue|value|sum)( ?(amount|value|usd|eur|gbp))?|total|amount|revenue|umsatz|betrag"
                      r"|summe|gesamt(betrag|summe)?|montant|importe|totale|bedrag|spend|sales"),
    ("order-discount", r"(order )?discount( ?(amount|value|total))?|rabatt|nachlass|promo( ?amount)?"
                       r"|coupon( ?amount)?|voucher( ?amount)?|remise|descuento|sconto|korting"),
    ("order-status", r"(order )?status|state|order state|bestellstatus|statut|estado"),
    ("channel", r"(sales |order )?channel|kanal|vertriebskanal|canal|canale|platform|source"),
    ("store-id", r"(store|shop|branch|outlet|location|filiale|laden|magasin|tienda|negozio|winkel)"
                 r" ?(id|no|nr|number|code|key|nummer)?"),
    ("order-return-amount", r"(refund|refunded|return|returned|erstattung|retoure)( ?(amount|value|total))?"),
    # transaction items
    ("line-number", r"(order )?(line|position|pos|item|row)( ?(number|no|nr|num|id))|line|position|pos"
                    r"|ln|zeile|ligne|linea|regel"),
    ("product-id", r"sku|product( ?(id|code|number|no|nr|key|ref))?|prod ?id|item( ?(id|code|no|number))?"
                   r"|article( ?(id|number|no))?|artikel( ?(nr|nummer|id))?|artikelnummer|ean|upc|gtin"
                   r"|barcode|produit|producto|prodotto|material ?(number|nr)?"),
    ("item-quantity", r"qty|quantity|units|menge|anzahl|stuck|quantite|cantidad|quantita|aantal|count|pieces"),
    ("item-unit-price", r"(unit|item|single)? ?price( ?(each|per unit|unit))?|price each|each|unit cost"
                        r"|einzelpreis|stuckpreis|prix( unitaire)?|precio( unitario)?|prezzo|prijs"),
    ("item-revenue", r"(line|item|position)? ?(total|amount|revenue|value|sum|subtotal)|subtotal|extended price"
                     r"|line ?amount|gesamtpreis|positionswert|montant|importe|totale|bedrag"),
    ("product-category", r"(product )?(category|cat|categorie|kategorie|department|dept|class|family|group"
                         r"|type|segment)( ?name)?|warengruppe|rubrik|categoria|categorie|afdeling"),
    # products
    ("product-name", r"(product|item|article)? ?(name|title|description|desc)|bezeichnung|produktname"
                     r"|artikelname|artikelbezeichnung|libelle|designation|nom( du produit)?|nombre"
                     r"|descripcion|nome|naam|omschrijving"),
    ("product-brand", r"(product )?brand( ?name)?|marke|hersteller|manufacturer|vendor|maker|label|marque"
                      r"|marca|merk|make"),
    ("product-price", r"(list|retail|unit|sale|selling|regular|base)? ?price|msrp|rrp|srp|preis|listenpreis"
                      r"|verkaufspreis|prix|precio|prezzo|prijs|cost"),
]
_COMPILED = [(tag, re.compile(rx)) for tag, rx in NAME_RULES]
# leading words naming the person the column describes, stripped before matching
PERSON_PREFIXES = {"customer", "cust", "client", "contact", "member", "user", "person", "subscriber",
                   "kunde", "kunden", "mailing", "home", "primary", "main", "personal", "private", "privat",
                   "my", "the", "billing", "bill", "shipping", "ship", "delivery", "residence", "residential",
                   "current", "address", "addr", "adr", "adresse", "account", "patient", "guest", "owner",
                   "buyer", "shopper", "profile", "c", "cus"}
# ... and those naming someone or something else (an employer's city is not the customer's)
OTHER_PREFIXES = {"employer", "company", "business", "work", "office", "org", "organisation", "organization",
                  "firma", "arbeitgeber", "emergency", "spouse", "partner", "parent", "mother", "father",
                  "guardian", "agent", "rep", "vendor", "supplier", "merchant", "bank", "store", "shop",
                  "referrer", "referral", "previous", "prev", "old", "former", "alt", "alternate"}
# names that say nothing: values alone decide
MEANINGLESS = re.compile(r"(col|column|field|feld|spalte|champ|campo|attr|attribute|var|variable|value|val|"
                         r"data|x|c|f|v|unnamed|unknown|untitled|extra|misc|custom)?( ?\d+)*|[a-z]")
HEADER_LANGUAGE = {   # folded header words -> the country they suggest
    "DE": {"vorname", "nachname", "strasse", "plz", "postleitzahl", "ort", "wohnort", "geburtsdatum",
           "geschlecht", "telefon", "handy", "bundesland", "hausnummer", "kundennummer", "anrede",
           "geburtstag", "familienname", "stadt", "land"},
    "FR": {"prenom", "nom", "rue", "ville", "code postal", "date de naissance", "courriel", "sexe", "pays",
           "telephone", "adresse", "departement", "commune"},
    "ES": {"nombre", "apellido", "apellidos", "calle", "ciudad", "codigo postal", "fecha de nacimiento",
           "telefono", "provincia", "pais", "direccion", "sexo", "localidad"},
    "IT": {"nome", "cognome", "via", "citta", "cap", "data di nascita", "provincia", "indirizzo", "sesso",
           "comune", "codice fiscale", "telefono", "paese"},
    "NL": {"voornaam", "achternaam", "straat", "plaats", "woonplaats", "geboortedatum", "huisnummer",
           "geslacht", "telefoon", "adres", "provincie"},
}


def _strip(words: list[str], prefixes: set[str]) -> list[str]:
    while len(words) > 1 and words[0] in prefixes:
        words = words[1:]
    return words


def name_scores(column: str) -> tuple[dict[str | None, float], bool]:
    """Tag -> how well the column's name says it (1 the name itself; less with a prefix
    stripped or when a rule's words are only part of the name), and whether the name means
    nothing (col1). Key None: a name known to carry no tag."""
    key = name_key(column)
    if not key or MEANINGLESS.fullmatch(key):
        return {}, True
    words = key.split(" ")
    forms: list[tuple[str, float]] = [(key, 1.0)]
    own = _strip(words, PERSON_PREFIXES)
    if own != words:
        forms.append((" ".join(own), 0.95))
    other = _strip(words, OTHER_PREFIXES | PERSON_PREFIXES)
    if other != words and other != own and set(words[:len(words) - len(other)]) & OTHER_PREFIXES:
        forms.append((" ".join(other), 0.35))
    scores: dict[str | None, float] = {}
    for form, weight in forms:
        for tag, rx in _COMPILED:
            if rx.fullmatch(form):
                scores[tag] = max(scores.get(tag, 0.0), weight)
    if not scores:  # a rule's words inside a longer name: 'preferred email', 'date of last order'
        for tag, rx in _COMPILED:
            for m in re.finditer(rf"(?<![a-z0-9])(?:{rx.pattern})(?![a-z0-9])", key):
                if len(m.group(0)) >= 3:
                    scores[tag] = max(scores.get(tag, 0.0), 0.6 if tag else 0.5)
    return scores, False


# ---- values ---------------------------------------------------------------------------------

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


def _share(values: list[str], test) -> float:
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


def _numbers(values: list[str]) -> pd.Series:
    cleaned = pd.Series(values, dtype=object).str.replace(r"[$€£,\s]", "", regex=True)
    return pd.to_numeric(cleaned, errors="coerce")


def _id_like(v: str) -> bool:
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
    s["email"] = _share(low, lambda v: re.fullmatch(EMAIL_RE, v.replace(" ", "")) is not None)
    if s["email"] < 0.5:
        s["phone"] = _share(vals, lambda v: _phone_ok(v, region))
    d_share, timed, year = _dates(vals)
    nums = _numbers(vals)
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
    s["gender"] = _share(low, lambda v: v in GENDERS) if prof.distinct <= 8 else 0.0
    s["country"] = _share(vals, lambda v: country_code(v) is not None) if prof.distinct <= 300 else 0.0
    codes = subdivision_codes(region)
    s["state"] = _share(folded, lambda v: v in codes)
    pattern = POSTAL_PATTERNS.get(region)
    if pattern:
        # digits alone could be many things; a pattern with letters (GB, CA, NL) is plain
        s["postal"] = _share(vals, lambda v: re.fullmatch(pattern, v) is not None) * (
            0.8 if pattern.startswith(r"\d") else 1.0)
    given, family = person_names()
    tokens = [f.split() for f in folded]
    single = [t for t in tokens if len(t) == 1]
    if _share(vals, lambda v: re.search(r"\d|@", v) is None) > 0.9:
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
    s["address"] = _share(folded, lambda v: STREET_RE.match(v) is not None and len(v) > 4)
    s["address-line-2"] = _share(folded, lambda v: UNIT_RE.match(v) is not None)
    s["national-id"] = _share(vals, lambda v: re.fullmatch(r"\d{3}-\d{2}-\d{4}", v) is not None)
    id_share = _share(vals, _id_like)
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
            and ints.max() > 200 and widths.iloc[0] < 0.8 and _share(vals, lambda v: v.startswith("0")) < 0.01:
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
    text = _share(vals, lambda v: re.search(r"[A-Za-z]", v) is not None and not re.search(r"\d", v))
    if text > 0.9 and s["email"] < 0.5:
        few = prof.distinct <= max(3, 0.3 * len(vals))
        s["channel"] = _share(low, lambda v: v in CHANNEL_WORDS) if prof.distinct <= 12 else 0.0
        s["order-status"] = _share(low, lambda v: v in STATUS_WORDS) if prof.distinct <= 15 else 0.0
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


# ---- files ------------------------------------------------------------------------------------

@dataclass
class FileGuess:
    sample: Sample
    source: str
    country: str | None = None
    country_why: str = ""
    profiles: dict[str, Profile] = field(default_factory=dict)
    names: dict[str, tuple[dict, bool]] = field(default_factory=dict)
    refs: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # col -> (file, col, share)
    kind: str = "customers"
    kind_scores: dict[str, float] = field(default_factory=dict)
    columns: dict[str, Choice] = field(default_factory=dict)
    customer_source: str | None = None
    customer_source_sure: bool = True
    skipped: str = ""               # why the file is not a source of the config (a comment instead)
    notes: list[str] = field(default_factory=list)


def source_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", fold(path.stem).replace(" ", "_")).strip("_") or "source"
    if not base[0].isalpha():
        base = f"s_{base}"
    base = base[:60]
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def guess_country(sample: Sample, names: dict[str, tuple[dict, bool]]) -> tuple[str | None, str]:
    """The country of a file's records, from its data: (ISO code or None, why)."""
    votes: Counter = Counter()
    why: dict[str, tuple[float, str]] = {}

    def vote(code: str | None, weight: float, reason: str) -> None:
        if code:
            votes[code] += weight
            if weight > why.get(code, (0.0, ""))[0]:  # the strongest evidence is the one said
                why[code] = (weight, reason)

    df = sample.rows
    for col in sample.columns:
        vals = [v for v in df[col].head(2000).tolist() if v]
        if len(vals) < MIN_VALUES:
            continue
        tags = names[col][0]
        if ("country" in tags or len(set(vals)) <= 30) and "state" not in tags:
            codes = [country_code(v) for v in vals]
            if sum(c is not None for c in codes) >= 0.8 * len(vals) and ("country" in tags or len(set(vals)) > 1):
                top, n = Counter(c for c in codes if c).most_common(1)[0]
                vote(top, 4 * n / len(vals), f"its column {col}")
        plus = [v for v in vals[:500] if v.startswith("+")]
        if len(plus) >= 0.3 * len(vals[:500]):
            regions = Counter()
            for v in plus:
                try:
                    regions[phonenumbers.region_code_for_number(phonenumbers.parse(v, None))] += 1
                except phonenumbers.NumberParseException:
                    pass
            if regions:
                top, n = regions.most_common(1)[0]
                vote(top, 3 * n / len(plus), f"the phone numbers in {col}")
        unnamed = names[col][1]
        if "state" in tags or (unnamed and len(set(vals)) <= 200 and max(map(len, vals[:1000])) <= 30
                               and not all(v.isdigit() for v in vals[:1000])):  # AT's are digits
            folded = [fold(v) for v in vals[:1000]]
            shares = {c: sum(f in subdivision_codes(c) for f in folded) / len(folded) for c in COUNTRY_CANDIDATES}
            best = max(shares.values())
            for c, sh in shares.items():
                if sh >= (0.8 if "state" in tags else 0.9) and sh >= best - 0.02:
                    vote(c, 2.5 * sh * (1.0 if c == max(shares, key=shares.get) else 0.8), f"the states in {col}")
        if "postal" in tags or unnamed:
            for c in COUNTRY_CANDIDATES if "postal" in tags else ("GB", "CA", "NL", "IE"):
                sh = _share(vals[:1000], lambda v, p=POSTAL_PATTERNS.get(c, "x^"): re.fullmatch(p, v) is not None)
                if sh >= 0.9:
                    vote(c, 1.0 if c in ("GB", "CA", "NL", "IE") else 0.3, f"the postcodes in {col}")
    words = {name_key(c) for c in sample.columns}
    for code, vocab in HEADER_LANGUAGE.items():
        hits = len(words & vocab)
        if hits >= 2:
            vote(code, 1.5 * hits, "the language of its column names")
    if not votes:
        return None, ""
    top = max(votes, key=lambda c: (votes[c], c == DEFAULT_COUNTRY))
    return top, why[top][1]


def _pk_candidates(g: FileGuess) -> dict[str, set[str]]:
    return {c: set(g.sample.rows[c].dropna()) for c, p in g.profiles.items()
            if p.keyish and p.scores.get("pk", 0) > 0}


def find_references(guesses: list[FileGuess]) -> None:
    """A column whose values are (mostly) another file's unique key refers to that file."""
    keys = [(_pk_candidates(g)) for g in guesses]
    for i, g in enumerate(guesses):
        for col, prof in g.profiles.items():
            vals = set(v for v in g.sample.rows[col].dropna())
            if len(vals) < MIN_VALUES or not all(_id_like(v) for v in list(vals)[:200]):
                continue
            if all(re.fullmatch(r"\d{1,2}", v) for v in list(vals)[:200]):
                continue  # 1, 2, 3: any small numbers are in any list of numbers
            found = []
            for j, cand in enumerate(keys):
                if j == i:
                    continue
                for kcol, kvals in cand.items():
                    share = len(vals & kvals) / len(vals)
                    if share >= 0.2:
                        found.append((share, j, kcol))
            if not found:
                continue
            share, j, kcol = max(found)
            if share >= 0.6:
                g.refs[col] = (j, kcol, share)
            elif sum(f[0] for f in found) >= 0.9:  # order lines of two order files: keys of both
                g.refs[col] = (j, kcol, min(1.0, sum(f[0] for f in found)))


def choose_tags(g: FileGuess, kind: str, guesses: list[FileGuess], kinds: list[str] | None) -> tuple[dict, float]:
    """The best tag per column for one kind, each tag once; and how well the kind fits."""
    allowed = set(TAGS_BY_KIND[SourceKind(kind)])
    if kind == "customers":
        allowed |= {"other-id"}
    cands: dict[str, list[tuple[float, str, str]]] = {}
    for col, prof in g.profiles.items():
        name, meaningless = g.names[col]
        scored = []
        for tag in allowed:
            score, why = combine(tag, name, meaningless, prof)
            ref = g.refs.get(col)
            if ref and kinds is not None:
                target_kind = kinds[ref[0]]
                target = guesses[ref[0]].source
                # a key of another file: which tag it is depends on what that file is
                linked = {("transactions", "customers"): "customer-pk",
                          ("transaction_items", "transactions"): "order-id",
                          ("transaction_items", "products"): "product-id",
                          ("transactions", "products"): None}.get((kind, target_kind))
                if linked == tag:
                    score, why = max(score, 0.7 + 0.3 * ref[2]), f"values are keys of {target}.{ref[1]}"
                elif kind == "customers" and tag == "pk" and target_kind == "customers":
                    score *= 0.8  # a customers file keyed by another's ids is odd, not wrong
            if score > 0:
                scored.append((round(score, 3), tag, why))
        scored.sort(reverse=True)
        cands[col] = scored
    # greedy: the strongest (column, tag) pairs first, each column and each tag once
    pairs = sorted(((s, col, tag, why) for col, lst in cands.items() for s, tag, why in lst),
                   key=lambda p: (-p[0], list(g.profiles).index(p[1])))
    chosen: dict[str, Choice] = {}
    used: set[str] = set()
    for s, col, tag, why in pairs:
        if col in chosen or tag in used or s < TAG_AT:
            continue
        chosen[col] = Choice(tag, s, why=why)
        used.add(tag)
    _order_pairs(g, chosen)
    if "city" in allowed and "city" not in used:
        _city_beside_state(g, chosen)
        used |= {"city"} & {c.tag for c in chosen.values()}
    for tag in REQUIRED_TAGS[SourceKind(kind)]:
        if tag in used:
            continue  # a required tag untaken: the best free column for it, however weak
        free = [(s, col, why) for col, lst in cands.items() if col not in chosen
                for s, t, why in lst if t == tag]
        if not free and tag == "pk":  # no id: the free column nearest to unique, if one is
            free = [(0.3, col, "values: nearly unique") for col, p in g.profiles.items()
                    if col not in chosen and p.filled >= 0.9 and p.distinct >= 0.9 * p.rows]
        if free:
            s, col, why = max(free)
            chosen[col] = Choice(tag, min(s, SURE_AT - 0.01), why=why or "required")
            used.add(tag)
    for col, lst in cands.items():
        c = chosen.get(col)
        alts = [(t, s, why) for s, t, why in lst if (c is None or t != c.tag) and s >= 0.35][:2]
        name = g.names[col][0]
        said = max((t for t in name if t in allowed), key=lambda t: name[t], default=None)
        if c is not None and c.why == "values" and said and said != c.tag and name[said] >= 0.6:
            c.name_disagrees = True  # a misleading name, or misleading values: the user decides
            if said not in [a[0] for a in alts]:
                alts.append((said, next(s for s, t, _ in lst if t == said), "name"))
        if c is None:
            chosen[col] = Choice(None, 0.0, alts)
        else:
            c.alternatives = alts
    chosen = {col: chosen[col] for col in g.profiles}   # in the file's order
    fit = sum(c.score for c in chosen.values() if c.tag)
    missing = [t for t in REQUIRED_TAGS[SourceKind(kind)] if t not in used]
    fit += sum(1.0 for t in REQUIRED_TAGS[SourceKind(kind)] if t in used) - 3.0 * len(missing)
    return chosen, fit - (100 if missing else 0)


# two tags the values alone tell apart only row by row: the first is the smaller on each row
ORDERED_PAIRS = (("create-datetime", "update-datetime"), ("item-unit-price", "item-revenue"),
                 ("product-category", "product-brand"))  # a catalogue has fewer categories than brands


def _city_beside_state(g: FileGuess, chosen: dict[str, Choice]) -> None:
    """Place names are not told from other words by their values alone (no list of every town),
    but nearly every address layout puts the city beside the state or the postcode (city, state
    zip; PLZ Ort; suburb, state, postcode): an untagged column of place-like words there, whose
    name says nothing else, is taken as the city, unsure."""
    order = list(g.profiles)
    beside = {order[i + d] for i, col in enumerate(order) if col in chosen and chosen[col].tag in ("state", "postal")
              for d in (-1, 1) if 0 <= i + d < len(order)}
    free = [(g.profiles[c].scores.get("city", 0.0), -order.index(c), c) for c in beside
            if c not in chosen and g.profiles[c].scores.get("city", 0.0) > 0 and not g.names[c][0]]
    if free:
        col = max(free)[2]
        chosen[col] = Choice("city", SURE_AT - 0.1, why="from place names beside its state or postcode")


def _order_pairs(g: FileGuess, chosen: dict[str, Choice]) -> None:
    """Columns that got such a pair of tags from their values alone swap them when the rows say
    so (created before updated; a line's total at least its unit price)."""
    by_tag = {c.tag: col for col, c in chosen.items() if c.tag}
    for first, second in ORDERED_PAIRS:
        a, b = by_tag.get(first), by_tag.get(second)
        if not a or not b or chosen[a].why != "values" or chosen[b].why != "values":
            continue
        rows = g.sample.rows[[a, b]].dropna().head(VALUE_SAMPLE)
        if first == "product-category":
            if g.profiles[a].distinct > g.profiles[b].distinct:
                chosen[a].tag, chosen[b].tag = second, first
            continue
        if first.endswith("datetime"):
            x, y = (parse_datetimes(rows[c])[0] for c in (a, b))
        else:
            x, y = (_numbers(rows[c].tolist()).set_axis(rows.index) for c in (a, b))
        if (x > y).sum() > (x < y).sum():
            chosen[a].tag, chosen[b].tag = second, first


KIND_WORDS = {
    "transaction_items": {"items", "item", "lines", "line", "order_items", "orderitems", "line_items", "details",
                          "positions", "basket", "positionen", "lignes", "order_lines", "orderlines"},
    "transactions": {"orders", "order", "transactions", "transaction", "sales", "receipts", "receipt",
                     "purchases", "invoices", "bestellungen", "txns", "payments", "tickets", "commandes",
                     "pedidos", "ordini", "bookings"},
    "products": {"products", "product", "catalog", "catalogue", "skus", "articles", "artikel", "inventory",
                 "produkte", "produits", "productos", "prodotti", "items_master"},
    "customers": {"customers", "customer", "clients", "members", "subscribers", "contacts", "people", "persons",
                  "kunden", "users", "accounts", "crm", "patients", "leads", "census", "profiles", "loyalty"},
}


def _kind_hint(stem: str) -> str | None:
    words = set(re.split(r"[^a-z]+", fold(stem).replace(" ", "_")))
    words |= {"_".join(p) for p in zip(list(words), list(words)[1:])}
    for kind in ("transaction_items", "transactions", "products", "customers"):
        if words & KIND_WORDS[kind] or fold(stem).replace(" ", "_") in KIND_WORDS[kind]:
            return kind
    return None


def decide(guesses: list[FileGuess]) -> None:
    """Kinds and tags of every file: first without the references between files, then with
    them (an orders file is one whose customer column holds a customers file's keys)."""
    kinds: list[str] | None = None
    for _round in range(2):
        new_kinds = []
        for g in guesses:
            hint = _kind_hint(g.sample.path.stem)
            results = {}
            for kind in KINDS:
                tags, fit = choose_tags(g, kind, guesses, kinds)
                results[kind] = (tags, fit + (1.5 if hint == kind else 0.0))
            g.kind_scores = {k: round(f, 2) for k, (_, f) in results.items()}
            g.kind = max(KINDS, key=lambda k: results[k][1])
            g.columns = results[g.kind][0]
            new_kinds.append(g.kind)
        if kinds == new_kinds:
            break
        kinds = new_kinds
    if not any(g.kind == "customers" for g in guesses):  # a tenant needs one: the most customer-like
        g = max(guesses, key=lambda g: g.kind_scores["customers"])
        g.kind = "customers"
        g.columns = choose_tags(g, "customers", guesses, kinds)[0]
    kinds = [g.kind for g in guesses]
    for g in guesses:
        g.columns = choose_tags(g, g.kind, guesses, kinds)[0]
        tags = {c.tag for c in g.columns.values()}
        missing = [t for t in REQUIRED_TAGS[SourceKind(g.kind)] if t not in tags]
        if missing:
            g.skipped = f"no column of it could be its {', '.join(missing)} (required for kind {g.kind})"
    customers = [g.source for g in guesses if g.kind == "customers" and not g.skipped]
    if not customers:
        raise InitError("none of the files can be a customers source (one with a column unique per row, its "
                        "pk): " + "; ".join(f"{g.sample.path}: {g.skipped or 'kind ' + g.kind}" for g in guesses))
    for g in guesses:
        if g.kind != "transactions" or g.skipped:
            continue
        col = next((c for c, ch in g.columns.items() if ch.tag == "customer-pk"), None)
        ref = g.refs.get(col) if col else None
        if ref and guesses[ref[0]].source in customers:
            g.customer_source = guesses[ref[0]].source
        else:  # no column holds a customers file's keys: the first customers source, unsure
            g.customer_source = customers[0]
            g.customer_source_sure = False


def guess_files(paths: list[str | os.PathLike], country: str | None = None) -> tuple[list[FileGuess], str, str]:
    """Read and guess every file. Returns (guesses, tenant country, why)."""
    taken: set[str] = set()
    guesses = []
    for p in paths:
        sample = read_sample(p)
        g = FileGuess(sample, source_name(sample.path, taken))
        g.names = {c: name_scores(c) for c in sample.columns}
        g.country, g.country_why = guess_country(sample, g.names)
        guesses.append(g)
    if country:
        tenant_country, why = country.upper(), "--country"
    else:
        votes = Counter(g.country for g in guesses if g.country)
        if votes:
            tenant_country = max(votes, key=lambda c: (votes[c], -next(i for i, g in enumerate(guesses)
                                                                          if g.country == c)))
            why = next(g.country_why for g in guesses if g.country == tenant_country)
            why = f"from {why} in {next(g.sample.path.name for g in guesses if g.country == tenant_country)}"
        else:
            tenant_country, why = DEFAULT_COUNTRY, "nothing in the data says; the default"
    for g in guesses:
        read_as = g.country or tenant_country
        g.profiles = {c: profile_column(c, g.sample.rows[c], read_as) for c in g.sample.columns}
    find_references(guesses)
    decide(guesses)
    return guesses, tenant_country, why


# ---- writing ----------------------------------------------------------------------------------

def _key(text: str) -> str:
    """A YAML mapping key that reads back as this string (quoted when it would not)."""
    plain = f"{text}: x"
    try:
        if text and yaml.safe_load(plain) == {text: "x"} and not text.startswith(("#", "&", "*", "!", "'", '"')):
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scalar(text: str) -> str:
    """A YAML value that reads back as this string."""
    try:
        if yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alts(choice: Choice) -> str:
    return ", ".join(f"{t} ({s:.2f}, {'its name' if why.startswith('name') else why})"
                     for t, s, why in choice.alternatives)


def render_config(guesses: list[FileGuess], tenant: str, country: str, country_why: str, out: Path) -> str:
    lines = [
        f"# Written by `cdp init` from {len(guesses)} file{'s' if len(guesses) != 1 else ''}: a starting point to check.",
        "# Every line marked `# unsure` is a guess with its alternatives; untagged columns are listed",
        "# above each source's columns. Then: cdp check-config THIS_FILE && cdp run --config THIS_FILE",
        f"tenant: {tenant}",
        "warehouse: warehouse.duckdb",
        f"country: {country:<24}# {country_why}",
        "",
        "sources:",
    ]
    for g in guesses:
        s = g.sample
        rel = Path(os.path.relpath(s.path.resolve(), out.resolve().parent)).as_posix()
        if g.skipped:
            lines += _wrap(f"{rel} is left out: {g.skipped}; tag one and add it as a source", "  # ")
            lines.append("")
            continue
        lines.append(f"  {g.source}:")
        kind_alts = sorted(((f, k) for k, f in g.kind_scores.items() if k != g.kind), reverse=True)
        kind_note = ""
        if kind_alts and kind_alts[0][0] > g.kind_scores[g.kind] - 1.0 and kind_alts[0][0] > -50:
            kind_note = f"  # unsure: or kind {kind_alts[0][1]}"
        lines.append(f"    path: {_scalar(rel)}")
        lines.append(f"    kind: {g.kind}{kind_note}")
        if g.kind == "transactions":
            note = "" if g.customer_source_sure else "  # unsure: no column holds its keys; check"
            lines.append(f"    customer_source: {g.customer_source}{note}")
        if g.country and g.country != country:
            lines.append(f"    country: {g.country:<22}# from {g.country_why}")
        if s.format == "csv" and s.encoding not in ("utf-8", "utf-8-sig"):
            lines.append(f"    encoding: {s.encoding:<21}# detected from its bytes")
        if s.format == "csv" and s.delimiter != ",":
            delim = r'"\t"' if s.delimiter == "\t" else _scalar(s.delimiter)
            lines.append(f"    delimiter: {delim}")
        untagged = [c for c, ch in g.columns.items() if ch.tag is None]
        if untagged:
            text = ", ".join(c + (f" (maybe {ch.alternatives[0][0]})" if ch.alternatives else "")
                             for c in untagged if (ch := g.columns[c]))
            lines += _wrap(f"not tagged: {text}", "    # ")
        lines.append("    columns:")
        width = max((len(_key(c)) for c, ch in g.columns.items() if ch.tag), default=0) + 2
        for col, ch in g.columns.items():
            if ch.tag is None:
                continue
            entry = f"      {(_key(col) + ':'):<{width}} {ch.tag}"
            prof = g.profiles[col]
            if ch.unsure:
                why = (f"from its {ch.why}" if ch.why in ("name", "values", "name and values") else ch.why) \
                    or "weak evidence"
                alts = _alts(ch)
                entry = f"{entry:<44}# unsure: {ch.tag} {why} ({ch.score:.2f})" + (
                    f"; or {alts}" if alts else "; no other tag fits")
            if ch.tag in ("pk", "order-id", "product-id") and g.kind == KEY_KIND[ch.tag] and not prof.unique:
                bad = prof.rows - prof.distinct
                entry = f"{entry:<44}# " if "#" not in entry else f"{entry}; "
                entry += f"{bad} blank or repeated keys in the sample: those rows go to domain.quarantine"
            lines.append(entry)
        lines.append("")
    return "\n".join(lines)


KEY_KIND = {"pk": "customers", "order-id": "transactions", "product-id": "products"}


def _wrap(text: str, prefix: str, width: int = 100) -> list[str]:
    out, line = [], ""
    for word in text.split(" "):
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            out.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([prefix + line] if line else [])


def tenant_name(name: str | None, out: Path) -> str:
    base = name or out.resolve().parent.name or "tenant"
    ident = re.sub(r"[^a-z0-9_]+", "_", fold(base).replace(" ", "_")).strip("_")
    if not ident or not ident[0].isalpha():
        ident = f"t_{ident}" if ident else "tenant"
    return ident[:63]


def init_config(paths: list[str | os.PathLike], out: str | os.PathLike = "tenant.yaml", tenant: str | None = None,
                country: str | None = None, force: bool = False) -> tuple[Path, list[FileGuess]]:
    """Write a starting tenant config for the data files; returns (its path, the guesses)."""
    out = Path(out)
    if out.exists() and not force:
        raise InitError(f"{out}: already exists; use --force to overwrite it")
    if country:
        from cdp.config import iso_country
        try:
            country = iso_country(country)
        except ValueError as exc:
            raise InitError(f"--country: {exc}") from None
    if not paths:
        raise InitError("no data files given")
    guesses, tenant_country, why = guess_files(paths, country)
    text = render_config(guesses, tenant_name(tenant, out), tenant_country, why, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_config(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(out)
    return out, guesses


def summary(guesses: list[FileGuess]) -> list[str]:
    """One line per source for the terminal."""
    out = []
    for g in guesses:
        if g.skipped:
            out.append(f"  {g.source:<24} left out: {g.skipped}")
            continue
        tagged = sum(1 for c in g.columns.values() if c.tag)
        unsure = sum(1 for c in g.columns.values() if c.unsure)
        out.append(f"  {g.source:<24} {g.kind:<18} {tagged}/{len(g.columns)} columns tagged"
                   + (f", {unsure} unsure" if unsure else ""))
    return out


def as_mapping(guesses: list[FileGuess]) -> dict[str, dict]:
    """file name -> {kind, columns: {column: tag or None}} (for benchmarks and tests)."""
    return {g.sample.path.name: {
        "kind": g.kind, "source": g.source, "customer_source": g.customer_source, "country": g.country,
        "columns": {c: ch.tag for c, ch in g.columns.items()},
        "unsure": {c for c, ch in g.columns.items() if ch.unsure},
        "hinted": {c for c, ch in g.columns.items() if ch.tag is None and ch.alternatives}}
        for g in guesses}


__all__ = ["InitError", "init_config", "guess_files", "read_sample", "name_scores", "as_mapping", "summary",
           ]
