"""The demo's people: households with a shared address and landline, people who move, their
category tastes and shopping rate (seeded Faker pools and one random.Random)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from faker import Faker

from cdp.demo.keys import DemoKeys
from cdp.demo.world import AREA_CODES, CATEGORIES, EMAIL_DOMAINS, END_DATE, HISTORY_DAYS, STREET_SUFFIXES, TREES
from cdp.stages.stitch.preprocess import NICKNAMES


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


def seeded_world(people: int, seed: int) -> tuple[random.Random, Pools]:
    """The seeded random stream and the pools (localities, names, streets) a generated set of
    `people` draws from: one recipe for the one-shot and the streamed generator, so a seed
    starts both the same way."""
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return rng, Pools(fake, rng, localities=max(50, min(2000, people // 20)))


def _address(rng: random.Random, pools: Pools, near: Address | None = None) -> Address:
    city, state, zip5 = (near.city, near.state, near.zip5) if near and rng.random() < 0.4 \
        else rng.choice(pools.localities)
    unit = f"{rng.choice(['Apt', 'Unit', 'Apt'])} {rng.randint(1, 40)}" if rng.random() < 0.18 else None
    return Address(rng.randint(1, 9899), rng.choice(pools.streets), rng.choice(STREET_SUFFIXES),
                   unit, city, state, zip5)


def _phone(rng: random.Random) -> str:
    return f"{rng.choice(AREA_CODES)}{rng.randint(201, 989)}{rng.randint(0, 9999):04d}"


def make_email(rng: random.Random, given: str, surname: str, taken: set[str]) -> str:
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


def make_people(n: int, rng: random.Random, pools: Pools, taken_emails: set[str],
                keys: DemoKeys | None = None) -> list[Person]:
    """n people in households; `keys` numbers them (one DemoKeys across the batches of a data
    set keeps person and household ids unique)."""
    keys = keys or DemoKeys(n)
    people: list[Person] = []
    while len(people) < n:
        household_id = keys.household_id()
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
                person_id=keys.person_id(),
                household_id=household_id,
                given=given, surname=surname, gender=gender, birthdate=birthdate,
                email=make_email(rng, given, surname, taken_emails),
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
