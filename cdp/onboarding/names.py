"""What a column's name says: NAME_RULES, the common names of each tag in English, German,
French, Spanish, Italian and Dutch, matched on the folded column name, with person prefixes
stripped and those of someone else discounted."""

from __future__ import annotations

import re

from cdp.countries import fold


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
