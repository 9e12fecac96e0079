"""How systems hold a person's values: typos, nicknames, street and phone styles, values left
out, timestamps."""

from __future__ import annotations

import datetime as dt
import random

from cdp.demo.people import Address, Person, Pools
from cdp.demo.world import END_DATE


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


def maybe(rng: random.Random, rate: float, value):
    return value if rng.random() >= rate else None


def random_timestamp(rng: random.Random, start: dt.date, end: dt.date = END_DATE) -> dt.datetime:
    days = max((end - start).days, 0)
    day = start + dt.timedelta(days=rng.randint(0, days))
    return dt.datetime.combine(day, dt.time(rng.randint(7, 21), rng.randint(0, 59), rng.randint(0, 59)))
