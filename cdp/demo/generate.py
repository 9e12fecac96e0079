"""Demo data: four messy customer sources of one brand, with orders, items, products and the truth.

`generate_demo_data(out_dir, people=N, seed=S)` invents N people (seeded Faker pools + one
`random.Random`, so the same seed gives byte-identical files) and writes them the way real
systems would hold them:

* `pos_customers.csv`      till records: nicknames, junk emails/phones typed by cashiers,
                           US phone format, MM/DD/YYYY dates, ZIPs that lost their leading zero,
                           duplicate walk-in records, and a few broken lines.
* `ecommerce_customers.csv` web accounts: full names, ZIP+4, full state names, ISO timestamps,
                           shared household logins, second accounts.
* `email_subscribers.csv`  email platform: often just an email, sometimes a first name.
* `loyalty_members.parquet` loyalty programme: typed dates, upper-case addresses, digits-only mobiles,
                           the member's tier (gold / silver / bronze, from how often they shop).
* `pos_orders.csv`, `ecommerce_orders.csv`, `order_items.csv`, `products.csv`: purchase
  histories with repeat buyers, category preferences and a Nov/Dec peak.
* `ground_truth.csv`       (source, pk, person_id, household_id) for every record that should
                           load, so stitch quality can be measured.

People live in households (shared address, landline and sometimes a family email), some move
(one source keeps the old address), and some values are junk (`test@test.com`,
`000-000-0000`) that would glue strangers together if a matcher believed them.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from faker import Faker

from cdp.stages.sources.standardize import US_STATES
from cdp.stages.stitch.preprocess import NICKNAMES

END_DATE = dt.date(2026, 10, 31)  # fixed so a seed always gives the same files
HISTORY_DAYS = 3 * 365

STREET_SUFFIXES = [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"),
                   ("Lane", "Ln"), ("Court", "Ct"), ("Boulevard", "Blvd"), ("Place", "Pl"),
                   ("Terrace", "Ter"), ("Way", "Way")]
EMAIL_DOMAINS = ["gmail.com"] * 8 + ["yahoo.com"] * 3 + ["outlook.com"] * 2 + [
    "hotmail.com", "icloud.com", "aol.com", "comcast.net", "proton.me"]
AREA_CODES = ["212", "213", "214", "215", "303", "305", "312", "313", "404", "407", "415",
              "503", "512", "602", "608", "612", "617", "702", "704", "713", "720", "773",
              "801", "813", "818", "858", "907", "916", "919", "971"]
JUNK_EMAILS = ["test@test.com", "none@none.com", "noemail@example.com"]
JUNK_PHONES = ["000-000-0000", "999-999-9999", "111-111-1111"]
TREES = ["Oak", "Maple", "Cedar", "Pine", "Elm", "Birch", "Walnut", "Willow", "Chestnut", "Spruce",
         "Hickory", "Aspen", "Magnolia", "Sycamore", "Dogwood", "Laurel", "Juniper", "Poplar"]
COUNTRY_SPELLINGS = ["US"] * 6 + ["USA", "United States", "us"]

CATEGORIES = {
    "Bakery": (["Sourdough Loaf", "Whole Wheat Bread", "Bagels", "Croissants", "Rye Bread",
                "Baguette", "Muffins", "Cinnamon Rolls"], (2.5, 7.0)),
    "Soft Drinks": (["Cola", "Lemon Soda", "Ginger Ale", "Root Beer", "Sparkling Water",
                     "Orange Soda", "Iced Tea"], (1.0, 6.0)),
    "Dairy": (["Whole Milk", "Greek Yogurt", "Cheddar Cheese", "Butter", "Cream Cheese",
               "Mozzarella"], (1.5, 8.0)),
    "Produce": (["Bananas", "Apples", "Avocados", "Spinach", "Tomatoes", "Strawberries",
                 "Carrots"], (1.0, 6.0)),
    "Snacks": (["Potato Chips", "Pretzels", "Trail Mix", "Granola Bars", "Popcorn",
                "Tortilla Chips"], (2.0, 6.5)),
    "Frozen": (["Frozen Pizza", "Ice Cream", "Frozen Peas", "Fish Sticks", "Waffles"], (3.0, 9.0)),
    "Meat & Seafood": (["Chicken Breast", "Ground Beef", "Salmon Fillet", "Bacon", "Pork Chops"],
                       (5.0, 18.0)),
    "Household": (["Paper Towels", "Dish Soap", "Laundry Detergent", "Trash Bags", "Sponges"],
                  (3.0, 15.0)),
    "Personal Care": (["Shampoo", "Toothpaste", "Body Wash", "Deodorant", "Hand Soap"],
                      (2.5, 12.0)),
    "Pantry": (["Pasta", "Olive Oil", "Rice", "Peanut Butter", "Coffee Beans", "Cereal",
                "Tomato Sauce"], (1.5, 14.0)),
}
BRANDS = ["Harvest Lane", "Blue Ridge", "Golden Acre", "Northfield", "Sunny Valley", "Crestwood",
          "Maple & Co", "Brightside", "Evergreen", "Riverbend"]
STORES = [f"S{n:03d}" for n in range(1, 13)]
MONTH_WEIGHT = {1: 0.8, 2: 0.8, 3: 0.9, 4: 0.9, 5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0, 9: 0.9,
                10: 1.0, 11: 1.4, 12: 1.8}

STATE_NAME = {abbr: name.title() for name, abbr in US_STATES.items()}  # 'MA' -> 'Massachusetts'

CUSTOMER_FILES = ["pos_customers.csv", "ecommerce_customers.csv", "email_subscribers.csv",
                  "loyalty_members.parquet"]


# ---- people -------------------------------------------------------------------------------------

@dataclass
class Address:
    number: int
    street: str
    suffix: tuple[str, str]
    unit: str | None
    city: str
    state: str
    zip5: str


@dataclass
class Person:
    person_id: str
    household_id: str
    given: str
    surname: str
    gender: str
    birthdate: dt.date
    email: str
    work_email: str | None
    mobile: str
    landline: str | None
    address: Address
    old_address: Address | None
    family_email: str | None = None
    loyalty_id: str | None = None
    first_seen: dt.date = END_DATE
    category_weights: list[float] = field(default_factory=list)
    orders_per_year: float = 0.0
    churn_date: dt.date = END_DATE
    records: dict[str, list[str]] = field(default_factory=dict)  # source -> pks


class Pools:
    """Name, street and locality pools drawn once from Faker, so generating is fast at any N."""

    def __init__(self, fake: Faker, rng: random.Random, localities: int):
        formal = sorted({v for v in NICKNAMES.values()})
        self.male = sorted({fake.first_name_male() for _ in range(2500)})
        self.female = sorted({fake.first_name_female() for _ in range(2500)})
        self.formal_male = [n.title() for n in formal if n.title() in set(self.male)] or self.male
        self.formal_female = [n.title() for n in formal if n.title() in set(self.female)] or self.female
        self.surnames = sorted({fake.last_name() for _ in range(6000)})
        self.streets = sorted({rng.choice([fake.last_name, fake.first_name, lambda: rng.choice(TREES)])()
                               for _ in range(1500)})
        self.localities = []
        for _ in range(localities):
            state = fake.state_abbr(include_territories=False)
            self.localities.append((fake.city(), state, fake.zipcode_in_state(state)))
        self.nicknames: dict[str, list[str]] = {}
        for nick, formal_name in NICKNAMES.items():
            if nick != formal_name:
                self.nicknames.setdefault(formal_name.title(), []).append(nick.title())


def _address(rng: random.Random, pools: Pools, near: Address | None = None) -> Address:
    city, state, zip5 = (near.city, near.state, near.zip5) if near and rng.random() < 0.4 \
        else rng.choice(pools.localities)
    unit = f"{rng.choice(['Apt', 'Unit', 'Apt'])} {rng.randint(1, 40)}" if rng.random() < 0.18 else None
    return Address(rng.randint(1, 9899), rng.choice(pools.streets), rng.choice(STREET_SUFFIXES),
                   unit, city, state, zip5)


def _phone(rng: random.Random) -> str:
    return f"{rng.choice(AREA_CODES)}{rng.randint(201, 989)}{rng.randint(0, 9999):04d}"


def _email(rng: random.Random, given: str, surname: str, taken: set[str]) -> str:
    """A mailbox nobody else has (providers do not hand out an address twice)."""
    g, s = given.lower().replace("'", ""), surname.lower().replace("'", "").replace(" ", "")
    local = rng.choice([f"{g}.{s}", f"{g}{s}", f"{g[0]}{s}", f"{g}_{s}", f"{g}{s[0]}", f"{s}.{g}"])
    if rng.random() < 0.55:
        local += str(rng.randint(1, 99) if rng.random() < 0.7 else rng.randint(1950, 2006))
    return _claim(rng, local, rng.choice(EMAIL_DOMAINS), taken)


def _claim(rng: random.Random, local: str, domain: str, taken: set[str]) -> str:
    address = f"{local}@{domain}"
    while address in taken:
        address = f"{local}{rng.randint(1, 9999)}@{domain}"
    taken.add(address)
    return address


def _dirichlet(rng: random.Random, k: int, concentration: float) -> list[float]:
    draws = [rng.gammavariate(concentration, 1.0) for _ in range(k)]
    total = sum(draws)
    return [d / total for d in draws]


def make_people(n: int, rng: random.Random, pools: Pools, taken_emails: set[str]) -> list[Person]:
    people: list[Person] = []
    household = 0
    while len(people) < n:
        household += 1
        size = 1 if rng.random() < 0.72 else min(rng.choice([2, 2, 2, 3, 3, 4]), n - len(people))
        home = _address(rng, pools)
        landline = _phone(rng) if size > 1 and rng.random() < 0.6 else None
        family_surname = rng.choice(pools.surnames)
        family_email = _claim(rng, f"the{family_surname.lower().replace(' ', '')}s",
                              rng.choice(EMAIL_DOMAINS), taken_emails) \
            if size > 1 and rng.random() < 0.35 else None
        for member in range(size):
            gender = rng.choice("MF")
            formal_pool = pools.formal_male if gender == "M" else pools.formal_female
            name_pool = pools.male if gender == "M" else pools.female
            given = rng.choice(formal_pool if rng.random() < 0.4 else name_pool)
            surname = family_surname if member == 0 or rng.random() < 0.8 else rng.choice(pools.surnames)
            if member > 0 and given == people[-1].given:
                given = rng.choice(name_pool)
            age_years = rng.randint(18, 85) if member < 2 else rng.randint(16, 30)
            birthdate = END_DATE - dt.timedelta(days=age_years * 365 + rng.randint(0, 364))
            mover = rng.random() < 0.12
            first_seen = END_DATE - dt.timedelta(days=rng.randint(30, HISTORY_DAYS))
            activity = rng.random()
            people.append(Person(
                person_id=f"T{len(people) + 1:07d}",
                household_id=f"H{household:07d}",
                given=given, surname=surname, gender=gender, birthdate=birthdate,
                email=_email(rng, given, surname, taken_emails),
                work_email=_claim(rng, f"{given.lower()}.{surname.lower().replace(' ', '')}",
                                  f"{rng.choice(pools.streets).lower()}corp.com", taken_emails)
                if rng.random() < 0.1 else None,
                mobile=_phone(rng), landline=landline,
                address=home, old_address=_address(rng, pools, near=home) if mover else None,
                family_email=family_email,
                first_seen=first_seen,
                category_weights=_dirichlet(rng, len(CATEGORIES), 0.4),
                orders_per_year=0.0 if activity < 0.25 else (rng.uniform(0.5, 3) if activity < 0.75
                                                             else rng.uniform(4, 18)),
                churn_date=END_DATE if rng.random() < 0.6 else
                first_seen + dt.timedelta(days=rng.randint(60, 900)),
            ))
    return people


# ---- noise --------------------------------------------------------------------------------------

def typo(rng: random.Random, text: str) -> str:
    """One keyboard slip: swap, drop, double or replace a character (names of 4+ letters)."""
    if len(text) < 4:
        return text
    i = rng.randint(1, len(text) - 2)
    kind = rng.randint(0, 3)
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if kind == 1:
        return text[:i] + text[i + 1:]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    return text[:i] + rng.choice("aeioulnrst") + text[i + 1:]


def given_as_written(rng: random.Random, pools: Pools, p: Person, nickname_rate: float,
                     typo_rate: float) -> str:
    given = p.given
    if rng.random() < nickname_rate and given in pools.nicknames:
        given = rng.choice(pools.nicknames[given])
    if rng.random() < typo_rate:
        given = typo(rng, given)
    return given


def street_line(a: Address, style: str) -> str:
    full, abbr = a.suffix
    if style == "pos":
        line = f"{a.number} {a.street} {abbr}."
    elif style == "loyalty":
        line = f"{a.number} {a.street} {abbr}".upper()
    else:
        line = f"{a.number} {a.street} {full}"
    if a.unit:
        line += (", " if style == "ecommerce" else " ") + (a.unit.upper() if style == "loyalty" else a.unit)
    return line


def phone_as_written(digits: str, style: str) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return {"pos": f"({a}) {b}-{c}", "ecommerce": f"+1 {a}-{b}-{c}", "loyalty": digits}[style]


def _maybe(rng: random.Random, rate: float, value):
    return value if rng.random() >= rate else None


def _timestamp(rng: random.Random, start: dt.date, end: dt.date = END_DATE) -> dt.datetime:
    days = max((end - start).days, 0)
    day = start + dt.timedelta(days=rng.randint(0, days))
    return dt.datetime.combine(day, dt.time(rng.randint(7, 21), rng.randint(0, 59), rng.randint(0, 59)))


# ---- customer sources ---------------------------------------------------------------------------

class SourceWriter:
    """Collects rows and ground truth for one customer source."""

    def __init__(self, name: str):
        self.name = name
        self.rows: list[dict] = []
        self.truth: list[tuple[str, str, str, str]] = []

    def add(self, person: Person, pk: str, row: dict) -> None:
        self.rows.append(row)
        self.truth.append((self.name, pk, person.person_id, person.household_id))
        person.records.setdefault(self.name, []).append(pk)


def pos_record(rng, pools, p: Person, pk: str) -> dict:
    address = p.old_address if p.old_address and rng.random() < 0.5 else p.address
    email = _maybe(rng, 0.35, p.family_email if p.family_email and rng.random() < 0.3 else p.email)
    if rng.random() < 0.04:
        email = rng.choice(JUNK_EMAILS)
    elif email and rng.random() < 0.1:
        email = email.upper()
    phone_digits = p.landline if p.landline and rng.random() < 0.5 else p.mobile
    phone = _maybe(rng, 0.2, phone_as_written(phone_digits, "pos"))
    if rng.random() < 0.04:
        phone = rng.choice(JUNK_PHONES)
    given = given_as_written(rng, pools, p, 0.2, 0.04)
    surname = typo(rng, p.surname) if rng.random() < 0.03 else p.surname
    if rng.random() < 0.08:
        given, surname = given.upper(), surname.upper()
    zip_code = address.zip5.lstrip("0") if rng.random() < 0.3 else address.zip5
    updated = _timestamp(rng, p.first_seen)
    return {
        "CustomerID": pk, "FirstName": given, "LastName": surname, "Email": email or "",
        "Phone": phone or "", "Address1": _maybe(rng, 0.1, street_line(address, "pos")) or "",
        "City": address.city, "State": address.state, "Zip": zip_code,
        "BirthDate": p.birthdate.strftime("%m/%d/%Y") if rng.random() < 0.5 else "",
        "Gender": _maybe(rng, 0.3, p.gender) or "",
        "LoyaltyNumber": (p.loyalty_id if p.loyalty_id and rng.random() < 0.6 else ""),
        "LastUpdated": updated.strftime("%m/%d/%Y %H:%M"),
    }


def ecommerce_record(rng, pools, p: Person, pk: str, second_account: bool,
                     taken_emails: set[str]) -> dict:
    given = given_as_written(rng, pools, p, 0.08, 0.02)
    middle = f" {rng.choice('ABCDEFGHJKLMNPRSTW')}." if rng.random() < 0.1 else ""
    surname = typo(rng, p.surname) if rng.random() < 0.02 else p.surname
    if second_account:
        email = p.work_email or _email(rng, p.given, p.surname, taken_emails)
    elif p.family_email and rng.random() < 0.4:
        email = p.family_email
    else:
        email = p.email
    address = p.address if not p.old_address or rng.random() < 0.7 else p.old_address
    state = address.state
    if rng.random() < 0.2:
        state = STATE_NAME.get(state, state)
    postal = f"{address.zip5}-{rng.randint(0, 9999):04d}" if rng.random() < 0.25 else address.zip5
    return {
        "customer_id": pk, "full_name": f"{given}{middle} {surname}", "email_address": email,
        "phone_number": _maybe(rng, 0.4, phone_as_written(p.mobile, "ecommerce")) or "",
        "street": street_line(address, "ecommerce"), "city": address.city, "state_code": state,
        "postal_code": postal, "country": rng.choice(COUNTRY_SPELLINGS),
        "date_of_birth": p.birthdate.isoformat() if rng.random() < 0.4 else "",
        "updated_at": _timestamp(rng, p.first_seen).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def subscriber_record(rng, pools, p: Person, pk: str) -> dict:
    email = p.email if rng.random() < 0.9 or not p.work_email else p.work_email
    if rng.random() < 0.02:
        local, domain = email.split("@")
        email = f"{typo(rng, local)}@{domain}"
    if rng.random() < 0.05:
        email = f"  {email.title()} "
    opt_in = _timestamp(rng, p.first_seen)
    return {
        "subscriber_key": pk, "email": email,
        "first_name": _maybe(rng, 0.4, given_as_written(rng, pools, p, 0.25, 0.02)) or "",
        "last_name": _maybe(rng, 0.5, p.surname) or "",
        "zip": _maybe(rng, 0.5, p.address.zip5) or "",
        "opt_in_date": opt_in.date().isoformat(),
        "modified_date": _timestamp(rng, opt_in.date()).strftime("%Y-%m-%d %H:%M:%S"),
    }


def loyalty_record(rng, pools, p: Person, pk: str) -> dict:
    enrolled = _timestamp(rng, p.first_seen)
    return {
        "member_id": pk, "given": given_as_written(rng, pools, p, 0.05, 0.02), "family": p.surname,
        "email": _maybe(rng, 0.1, p.email), "mobile": _maybe(rng, 0.15, phone_as_written(p.mobile, "loyalty")),
        "addr_line": street_line(p.address, "loyalty"), "town": p.address.city.upper(),
        "region": p.address.state, "postcode": p.address.zip5,
        "birth_date": _maybe(rng, 0.15, p.birthdate),
        "gender": _maybe(rng, 0.1, {"M": "male", "F": "female"}[p.gender]),
        "loyalty_id": p.loyalty_id, "enrolled_at": enrolled,
        "updated_at": _timestamp(rng, enrolled.date()), "tier": loyalty_tier(p),
    }


def loyalty_tier(p: Person) -> str:
    """The programme's tier, earned by how often the member shops (no draw of the random
    generator: a seed's people and files stay as they were, with one column more)."""
    return "gold" if p.orders_per_year >= 8 else "silver" if p.orders_per_year >= 2 else "bronze"


def make_customer_sources(rng, pools, people: list[Person], taken_emails: set[str]) -> dict[str, SourceWriter]:
    pos, ecom, email, loyalty = (SourceWriter(n) for n in
                                 ("pos_customers", "ecommerce_customers", "email_subscribers",
                                  "loyalty_members"))
    used_keys: set[str] = set()
    for p in people:
        in_loyalty = rng.random() < 0.35
        if in_loyalty:
            p.loyalty_id = f"LOY{rng.randint(10_000_000, 99_999_999)}"
        membership = {"pos": rng.random() < 0.55, "ecom": rng.random() < 0.5,
                      "email": rng.random() < 0.45, "loyalty": in_loyalty}
        if not any(membership.values()):
            membership[rng.choice(["pos", "ecom", "email"])] = True
        if membership["loyalty"]:
            pk = f"M{len(loyalty.rows) + 100001:07d}"
            loyalty.add(p, pk, loyalty_record(rng, pools, p, pk))
        if membership["pos"]:
            for _ in range(2 if rng.random() < 0.07 else 1):  # a walk-in entered twice
                pk = f"P{len(pos.rows) + 1:07d}"
                pos.add(p, pk, pos_record(rng, pools, p, pk))
        if membership["ecom"]:
            for i in range(2 if rng.random() < 0.05 else 1):  # a second web account
                pk = str(100000 + len(ecom.rows) * 7 + rng.randint(0, 6))
                ecom.add(p, pk, ecommerce_record(rng, pools, p, pk, i > 0, taken_emails))
        if membership["email"]:
            pk = f"SK{rng.getrandbits(40):010x}"
            while pk in used_keys:
                pk = f"SK{rng.getrandbits(40):010x}"
            used_keys.add(pk)
            email.add(p, pk, subscriber_record(rng, pools, p, pk))
    for writer in (pos, ecom, email, loyalty):  # records arrive in no particular person order
        order = list(range(len(writer.rows)))
        rng.shuffle(order)
        writer.rows = [writer.rows[i] for i in order]
        writer.truth = [writer.truth[i] for i in order]
    return {"pos_customers": pos, "ecommerce_customers": ecom, "email_subscribers": email,
            "loyalty_members": loyalty}


def broken_pos_lines(rng, pos: SourceWriter, n_people: int) -> list[list[str]]:
    """Lines a real till export contains: no id, a re-used id, an impossible date, a stray comma."""
    k = max(1, n_people // 500)
    lines = []
    columns = list(pos.rows[0].keys())
    for _ in range(k):
        row = dict(rng.choice(pos.rows), CustomerID="")
        lines.append([row[c] for c in columns])
        dup = dict(rng.choice(pos.rows), FirstName="Duplicate")
        lines.append([dup[c] for c in columns])
        extra = dict(rng.choice(pos.rows))
        values = [extra[c] for c in columns]
        values.insert(columns.index("Address1") + 1, "Suite 5")
        lines.append(values)
    for row in rng.sample(pos.rows, k):
        row["BirthDate"] = "02/30/1985"  # kept, but the impossible date is nulled and counted
    return lines


# ---- products and orders ------------------------------------------------------------------------

def make_products(rng: random.Random) -> list[dict]:
    products = []
    for category, (nouns, (low, high)) in CATEGORIES.items():
        for noun in nouns:
            for brand in rng.sample(BRANDS, 3):
                products.append({"sku": f"SKU-{len(products) + 1:05d}",
                                 "product_name": f"{brand} {noun}", "category": category,
                                 "brand": brand, "list_price": f"{rng.uniform(low, high):.2f}"})
    return products


def _order_dates(rng: random.Random, p: Person) -> list[dt.datetime]:
    start, end = p.first_seen, min(p.churn_date, END_DATE)
    years = max((end - start).days, 1) / 365
    n = 0
    expected = p.orders_per_year * years
    while expected > 0:  # Poisson-ish count without numpy
        if rng.random() < min(expected, 1.0):
            n += 1
        expected -= 1.0
    dates = []
    while len(dates) < n:
        ts = _timestamp(rng, start, end)
        if rng.random() < MONTH_WEIGHT[ts.month] / 1.8:
            dates.append(ts)
    return sorted(dates)


def make_orders(rng, people: list[Person], products: list[dict]):
    """Every person's purchase history, drawn from the orders' own random generator: a personal
    purchase rate until they churn, a Nov/Dec peak, baskets from their favourite categories,
    a home store, and some returns and cancellations."""
    by_category: dict[str, list[dict]] = {}
    for prod in products:
        by_category.setdefault(prod["category"], []).append(prod)
    categories = list(CATEGORIES)
    pos_orders, web_orders, items = [], [], []
    for p in people:
        channels = [s for s in ("pos_customers", "ecommerce_customers") if s in p.records]
        if not channels or p.orders_per_year == 0:
            continue
        home_store = rng.choice(STORES)
        for ts in _order_dates(rng, p):
            source = rng.choice(channels)
            lines = []
            for line_no in range(1, rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 8]) + 1):
                category = rng.choices(categories, weights=p.category_weights)[0]
                prod = rng.choice(by_category[category])
                qty = rng.choice([1, 1, 1, 2, 2, 3])
                unit = round(float(prod["list_price"]) * rng.choice([1, 1, 1, 0.9, 0.8]), 2)
                lines.append((line_no, prod["sku"], qty, unit, round(qty * unit, 2)))
            subtotal = round(sum(line[4] for line in lines), 2)
            discount = round(subtotal * 0.1, 2) if rng.random() < 0.15 else 0.0
            total = round(subtotal - discount, 2)
            if source == "pos_customers":
                order_id = f"R{len(pos_orders) + 1:08d}"
                status = "void" if rng.random() < 0.02 else "completed"
                # a refund at the till gives back one line of the basket
                refund = lines[rng.randrange(len(lines))][4] if status == "completed" and \
                    len(lines) > 1 and rng.random() < 0.04 else None
                pos_orders.append({
                    "order_id": order_id, "customer_id": rng.choice(p.records[source]),
                    "store_id": home_store if rng.random() < 0.85 else rng.choice(STORES),
                    "order_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
                    "order_total": f"{total:.2f}", "discount": f"{discount:.2f}",
                    "status": status, "refund_amount": f"{min(refund, total):.2f}" if refund else ""})
            else:
                order_id = f"W{len(web_orders) + 1:08d}"
                status = rng.choices(["completed", "returned", "cancelled"], [0.92, 0.04, 0.04])[0]
                web_orders.append({
                    "order_id": order_id, "customer_id": rng.choice(p.records[source]),
                    "order_ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "channel": rng.choice(["web", "web", "app"]),
                    "order_total": f"{total:.2f}", "discount": f"{discount:.2f}",
                    "status": status})
            for line_no, sku, qty, unit, line_total in lines:
                items.append({"order_id": order_id, "line_number": line_no, "sku": sku,
                              "quantity": qty, "unit_price": f"{unit:.2f}",
                              "line_total": f"{line_total:.2f}"})
    pos_orders.sort(key=lambda o: o["order_ts"])
    web_orders.sort(key=lambda o: o["order_ts"])
    for row in rng.sample(pos_orders, min(len(pos_orders), max(1, len(pos_orders) // 400))):
        row["order_total"] = "N/A"  # till glitch: quarantined as an invalid order revenue
    return pos_orders, web_orders, items


# ---- writing ------------------------------------------------------------------------------------

def _write_csv(path: Path, rows: list[dict], extra_lines: list[list[str]] = ()) -> int:
    columns = list(rows[0].keys())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)
        writer.writerows(extra_lines)
    return len(rows) + len(extra_lines)


LOYALTY_SCHEMA = pa.schema([
    ("member_id", pa.string()), ("given", pa.string()), ("family", pa.string()),
    ("email", pa.string()), ("mobile", pa.string()), ("addr_line", pa.string()),
    ("town", pa.string()), ("region", pa.string()), ("postcode", pa.string()),
    ("birth_date", pa.date32()), ("gender", pa.string()), ("loyalty_id", pa.string()),
    ("enrolled_at", pa.timestamp("us")), ("updated_at", pa.timestamp("us")), ("tier", pa.string()),
])


def _write_parquet(path: Path, rows: list[dict]) -> int:
    table = pa.Table.from_pylist(rows, schema=LOYALTY_SCHEMA)
    pq.write_table(table, path)
    return len(rows)


def generate_demo_data(out_dir, people: int = 2000, seed: int = 42,
                       customers_only: bool = False) -> dict[str, int]:
    """Write the demo tenant's source files for `people` people; returns rows per file.
    customers_only skips orders, items and products (for identity benchmarks at scale)."""
    if people < 10:
        raise ValueError("people must be at least 10")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    pools = Pools(fake, rng, localities=max(50, min(2000, people // 20)))
    taken_emails: set[str] = set()
    persons = make_people(people, rng, pools, taken_emails)
    sources = make_customer_sources(rng, pools, persons, taken_emails)
    products = make_products(rng)
    # orders come from their own generator: the customer files of a seed are the same whether
    # orders are generated or not, and changing the order stream never moves a customer record
    pos_orders, web_orders, items = ([], [], []) if customers_only else \
        make_orders(random.Random(f"orders-{seed}"), persons, products)

    counts = {}
    pos = sources["pos_customers"]
    counts["pos_customers.csv"] = _write_csv(out / "pos_customers.csv", pos.rows,
                                             broken_pos_lines(rng, pos, people))
    counts["ecommerce_customers.csv"] = _write_csv(out / "ecommerce_customers.csv",
                                                   sources["ecommerce_customers"].rows)
    counts["email_subscribers.csv"] = _write_csv(out / "email_subscribers.csv",
                                                 sources["email_subscribers"].rows)
    counts["loyalty_members.parquet"] = _write_parquet(out / "loyalty_members.parquet",
                                                       sources["loyalty_members"].rows)
    if not customers_only:
        counts["pos_orders.csv"] = _write_csv(out / "pos_orders.csv", pos_orders)
        counts["ecommerce_orders.csv"] = _write_csv(out / "ecommerce_orders.csv", web_orders)
        counts["order_items.csv"] = _write_csv(out / "order_items.csv", items)
        counts["products.csv"] = _write_csv(out / "products.csv", products)
    truth = [t for s in sources.values() for t in s.truth]
    with open(out / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "pk", "person_id", "household_id"])
        writer.writerows(sorted(truth))
    counts["ground_truth.csv"] = len(truth)
    return counts


# ---- the next delivery: a small share of people touched ----------------------------------------

PK_COLUMN = {"pos_customers.csv": "CustomerID", "ecommerce_customers.csv": "customer_id",
             "email_subscribers.csv": "subscriber_key", "loyalty_members.parquet": "member_id"}
SOURCE_OF_FILE = {"pos_customers.csv": "pos_customers", "ecommerce_customers.csv": "ecommerce_customers",
                  "email_subscribers.csv": "email_subscribers", "loyalty_members.parquet": "loyalty_members"}
EDITABLE = {"pos_customers.csv": "Address1", "ecommerce_customers.csv": "street",
            "email_subscribers.csv": "zip", "loyalty_members.parquet": "addr_line"}


def perturb_demo_data(out_dir, share: float = 0.01, seed: int = 1) -> set[str]:
    """Simulate the next delivery of the customer sources: for `share` of the people, one of
    their records is edited (an address changes), a new record of theirs arrives, or one of
    their records is deleted. Files and ground truth are rewritten; returns the touched
    person ids (everyone else should keep their cdp_id)."""
    out = Path(out_dir)
    rng = random.Random(seed)
    truth_rows = list(csv.DictReader(open(out / "ground_truth.csv", newline="", encoding="utf-8")))
    people = sorted({t["person_id"] for t in truth_rows})
    touched = set(rng.sample(people, max(1, round(len(people) * share))))
    truth_of = {(t["source"], t["pk"]): t for t in truth_rows}
    records_of: dict[str, list[dict]] = {}
    for t in truth_rows:
        records_of.setdefault(t["person_id"], []).append(t)
    actions: dict[tuple[str, str], str] = {}
    for person in sorted(touched):
        record = rng.choice(records_of[person])
        actions[(record["source"], record["pk"])] = rng.choice(["edit", "add", "delete"])

    added_truth = []
    for file_name, pk_column in PK_COLUMN.items():
        source = SOURCE_OF_FILE[file_name]
        header, rows = _read_rows(out / file_name)
        pk_at, edit_at = header.index(pk_column), header.index(EDITABLE[file_name])
        kept = []
        for row in rows:
            action = actions.get((source, row[pk_at])) if len(row) == len(header) else None
            if action == "delete":
                continue
            if action == "edit":
                row = list(row)
                row[edit_at] = f"{rng.randint(1, 9899)} {rng.choice(TREES)} Street" \
                    if EDITABLE[file_name] != "zip" else f"{rng.randint(10000, 99999)}"
            kept.append(row)
            if action == "add":
                twin = list(row)
                twin[pk_at] = f"{row[pk_at]}N"
                kept.append(twin)
                added_truth.append({**truth_of[(source, row[pk_at])], "pk": twin[pk_at]})
        _write_rows(out / file_name, header, kept)
    deleted = {k for k, a in actions.items() if a == "delete"}
    truth_rows = [t for t in truth_rows if (t["source"], t["pk"]) not in deleted] + added_truth
    with open(out / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "pk", "person_id", "household_id"])
        writer.writeheader()
        writer.writerows(sorted(truth_rows, key=lambda t: (t["source"], t["pk"])))
    return touched


def _read_rows(path: Path) -> tuple[list[str], list[list]]:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.column_names, [list(r.values()) for r in table.to_pylist()]
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist([dict(zip(header, r)) for r in rows], schema=LOYALTY_SCHEMA), path)
        return
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
