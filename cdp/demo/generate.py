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

The parts: world.py (fixed lists and dates) -> people.py -> noise.py -> customers.py, orders.py;
keys.py numbers people and records; this module writes the files and the next delivery
(perturb_demo_data). Customers-only data sets of more than STREAM_ABOVE people (or any size
with `batch_size=`) are written in batches by stream.py, in memory bounded by one batch.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cdp.demo.customers import LOYALTY_SCHEMA, broken_pos_lines, make_customer_sources
from cdp.demo.keys import DemoKeys
from cdp.demo.orders import make_orders, make_products
from cdp.demo.people import make_people, seeded_world
from cdp.demo.stream import stream_customer_sources
from cdp.demo.world import TREES


CUSTOMER_FILES = ["pos_customers.csv", "ecommerce_customers.csv", "email_subscribers.csv",
                  "loyalty_members.parquet"]


def _write_csv(path: Path, rows: list[dict], extra_lines: list[list[str]] = ()) -> int:
    columns = list(rows[0].keys())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)
        writer.writerows(extra_lines)
    return len(rows) + len(extra_lines)


def _write_parquet(path: Path, rows: list[dict]) -> int:
    table = pa.Table.from_pylist(rows, schema=LOYALTY_SCHEMA)
    pq.write_table(table, path)
    return len(rows)


STREAM_ABOVE = 1_000_000  # people: bigger customers-only sets are written in batches
STREAM_BATCH = 200_000    # people a batch (peak RSS ~0.93 GB)


def generate_demo_data(out_dir, people: int = 2000, seed: int = 42, customers_only: bool = False,
                       batch_size: int | None = None) -> dict[str, int]:
    """Write the demo tenant's source files for `people` people; returns rows per file.
    customers_only skips orders, items and products (for identity benchmarks at scale).

    Every person and record is held in memory, then written (~4 KB a person), except when
    batch_size is given or customers_only has more than STREAM_ABOVE people (then batch_size
    is STREAM_BATCH): the customer files and truth are then written batch_size people at a time
    (stream.py: peak memory bounded by a batch; other files than in one go for the seed)."""
    if people < 10:
        raise ValueError("people must be at least 10")
    if batch_size is None and customers_only and people > STREAM_ABOVE:
        batch_size = STREAM_BATCH
    if batch_size is not None:
        if not customers_only:
            raise ValueError("generate_demo_data: batch_size writes the customer sources only "
                             "(no orders in batches); pass customers_only=True")
        return stream_customer_sources(out_dir, people, seed, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng, pools = seeded_world(people, seed)
    taken_emails: set[str] = set()
    keys = DemoKeys(people)
    persons = make_people(people, rng, pools, taken_emails, keys)
    sources = make_customer_sources(rng, pools, persons, taken_emails, keys)
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
