"""The four customer sources of the demo (till, web shop, email platform, loyalty programme):
each person's records as that system would hold them, with its duplicates and broken lines."""

from __future__ import annotations

import pyarrow as pa

from cdp.demo.keys import DemoKeys
from cdp.demo.noise import given_as_written, maybe, phone_as_written, random_timestamp, street_line, typo
from cdp.demo.people import Person, make_email
from cdp.demo.world import COUNTRY_SPELLINGS, JUNK_EMAILS, JUNK_PHONES, STATE_NAME


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
    email = maybe(rng, 0.35, p.family_email if p.family_email and rng.random() < 0.3 else p.email)
    if rng.random() < 0.04:
        email = rng.choice(JUNK_EMAILS)
    elif email and rng.random() < 0.1:
        email = email.upper()
    phone_digits = p.landline if p.landline and rng.random() < 0.5 else p.mobile
    phone = maybe(rng, 0.2, phone_as_written(phone_digits, "pos"))
    if rng.random() < 0.04:
        phone = rng.choice(JUNK_PHONES)
    given = given_as_written(rng, pools, p, 0.2, 0.04)
    surname = typo(rng, p.surname) if rng.random() < 0.03 else p.surname
    if rng.random() < 0.08:
        given, surname = given.upper(), surname.upper()
    zip_code = address.zip5.lstrip("0") if rng.random() < 0.3 else address.zip5
    updated = random_timestamp(rng, p.first_seen)
    return {
        "CustomerID": pk, "FirstName": given, "LastName": surname, "Email": email or "",
        "Phone": phone or "", "Address1": maybe(rng, 0.1, street_line(address, "pos")) or "",
        "City": address.city, "State": address.state, "Zip": zip_code,
        "BirthDate": p.birthdate.strftime("%m/%d/%Y") if rng.random() < 0.5 else "",
        "Gender": maybe(rng, 0.3, p.gender) or "",
        "LoyaltyNumber": (p.loyalty_id if p.loyalty_id and rng.random() < 0.6 else ""),
        "LastUpdated": updated.strftime("%m/%d/%Y %H:%M"),
    }


def ecommerce_record(rng, pools, p: Person, pk: str, second_account: bool,
                     taken_emails: set[str]) -> dict:
    given = given_as_written(rng, pools, p, 0.08, 0.02)
    middle = f" {rng.choice('ABCDEFGHJKLMNPRSTW')}." if rng.random() < 0.1 else ""
    surname = typo(rng, p.surname) if rng.random() < 0.02 else p.surname
    if second_account:
        email = p.work_email or make_email(rng, p.given, p.surname, taken_emails)
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
        "phone_number": maybe(rng, 0.4, phone_as_written(p.mobile, "ecommerce")) or "",
        "street": street_line(address, "ecommerce"), "city": address.city, "state_code": state,
        "postal_code": postal, "country": rng.choice(COUNTRY_SPELLINGS),
        "date_of_birth": p.birthdate.isoformat() if rng.random() < 0.4 else "",
        "updated_at": random_timestamp(rng, p.first_seen).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def subscriber_record(rng, pools, p: Person, pk: str) -> dict:
    email = p.email if rng.random() < 0.9 or not p.work_email else p.work_email
    if rng.random() < 0.02:
        local, domain = email.split("@")
        email = f"{typo(rng, local)}@{domain}"
    if rng.random() < 0.05:
        email = f"  {email.title()} "
    opt_in = random_timestamp(rng, p.first_seen)
    return {
        "subscriber_key": pk, "email": email,
        "first_name": maybe(rng, 0.4, given_as_written(rng, pools, p, 0.25, 0.02)) or "",
        "last_name": maybe(rng, 0.5, p.surname) or "",
        "zip": maybe(rng, 0.5, p.address.zip5) or "",
        "opt_in_date": opt_in.date().isoformat(),
        "modified_date": random_timestamp(rng, opt_in.date()).strftime("%Y-%m-%d %H:%M:%S"),
    }


LOYALTY_SCHEMA = pa.schema([
    ("member_id", pa.string()), ("given", pa.string()), ("family", pa.string()),
    ("email", pa.string()), ("mobile", pa.string()), ("addr_line", pa.string()),
    ("town", pa.string()), ("region", pa.string()), ("postcode", pa.string()),
    ("birth_date", pa.date32()), ("gender", pa.string()), ("loyalty_id", pa.string()),
    ("enrolled_at", pa.timestamp("us")), ("updated_at", pa.timestamp("us")), ("tier", pa.string()),
])


def loyalty_record(rng, pools, p: Person, pk: str) -> dict:
    enrolled = random_timestamp(rng, p.first_seen)
    return {
        "member_id": pk, "given": given_as_written(rng, pools, p, 0.05, 0.02), "family": p.surname,
        "email": maybe(rng, 0.1, p.email), "mobile": maybe(rng, 0.15, phone_as_written(p.mobile, "loyalty")),
        "addr_line": street_line(p.address, "loyalty"), "town": p.address.city.upper(),
        "region": p.address.state, "postcode": p.address.zip5,
        "birth_date": maybe(rng, 0.15, p.birthdate),
        "gender": maybe(rng, 0.1, {"M": "male", "F": "female"}[p.gender]),
        "loyalty_id": p.loyalty_id, "enrolled_at": enrolled,
        "updated_at": random_timestamp(rng, enrolled.date()), "tier": loyalty_tier(p),
    }


def loyalty_tier(p: Person) -> str:
    """The programme's tier, earned by how often the member shops (no draw of the random
    generator: a seed's people and files stay as they were, with one column more)."""
    return "gold" if p.orders_per_year >= 8 else "silver" if p.orders_per_year >= 2 else "bronze"


def make_customer_sources(rng, pools, people: list[Person], taken_emails: set[str],
                          keys: DemoKeys | None = None) -> dict[str, SourceWriter]:
    """The people's records in the four sources, shuffled within each source; `keys` hands out
    the primary keys (one DemoKeys across the batches of a data set keeps them unique)."""
    keys = keys or DemoKeys(len(people))
    pos, ecom, email, loyalty = (SourceWriter(n) for n in
                                 ("pos_customers", "ecommerce_customers", "email_subscribers",
                                  "loyalty_members"))
    for p in people:
        in_loyalty = rng.random() < 0.35
        if in_loyalty:
            p.loyalty_id = f"LOY{rng.randint(10_000_000, 99_999_999)}"
        membership = {"pos": rng.random() < 0.55, "ecom": rng.random() < 0.5,
                      "email": rng.random() < 0.45, "loyalty": in_loyalty}
        if not any(membership.values()):
            membership[rng.choice(["pos", "ecom", "email"])] = True
        if membership["loyalty"]:
            pk = keys.loyalty_key()
            loyalty.add(p, pk, loyalty_record(rng, pools, p, pk))
        if membership["pos"]:
            for _ in range(2 if rng.random() < 0.07 else 1):  # a walk-in entered twice
                pk = keys.pos_key()
                pos.add(p, pk, pos_record(rng, pools, p, pk))
        if membership["ecom"]:
            for i in range(2 if rng.random() < 0.05 else 1):  # a second web account
                pk = keys.ecommerce_key(rng)
                ecom.add(p, pk, ecommerce_record(rng, pools, p, pk, i > 0, taken_emails))
        if membership["email"]:
            pk = keys.subscriber_key(rng)
            email.add(p, pk, subscriber_record(rng, pools, p, pk))
    for writer in (pos, ecom, email, loyalty):  # records arrive in no particular person order
        order = list(range(len(writer.rows)))
        rng.shuffle(order)
        writer.rows = [writer.rows[i] for i in order]
        writer.truth = [writer.truth[i] for i in order]
    return {"pos_customers": pos, "ecommerce_customers": ecom, "email_subscribers": email,
            "loyalty_members": loyalty}


def broken_pos_lines(rng, pos: SourceWriter, n_people: int, k: int | None = None) -> list[list[str]]:
    """Lines a real till export contains: no id, a re-used id, an impossible date, a stray comma;
    k of each (one per 500 people unless given: a batch of a streamed set takes its share)."""
    k = max(1, n_people // 500) if k is None else k
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
