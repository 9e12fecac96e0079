"""The demo's customer sources written in batches, for data sets too big to hold in memory.

`stream_customer_sources(out, people, seed, batch_size)` invents `batch_size` people at a time,
makes their records in the four customer sources and appends them (and their ground truth) to
the files, so memory is bounded by one batch whatever the size (10M records: 5M people), plus
8 bytes for each email handed out (~50 MB at 5M people). What must hold across the whole set
does:

* keys: one `StreamedKeys` numbers persons, households and every source's primary key across
  batches (widths fixed for the set, subscriber keys through a permutation: no clash);
* emails: one `TakenEmails` (digests of earlier batches' addresses) keeps every mailbox unique;
* pools: localities, names and streets are drawn once for the whole set, as in one go;
* broken POS lines: one per 500 people of the whole set, each batch writing its share.

Differences from the one-shot generator (generate.py): records are shuffled within their batch
(the files are in batch order), the ground truth is sorted within each batch, a household never
spans two batches, and the same seed gives other files than in one go. No orders: the
streamed path writes customer sources only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cdp.demo.customers import LOYALTY_SCHEMA, SourceWriter, broken_pos_lines, make_customer_sources
from cdp.demo.keys import StreamedKeys, TakenEmails
from cdp.demo.people import make_people, seeded_world


FILE_OF_SOURCE = {"pos_customers": "pos_customers.csv", "ecommerce_customers": "ecommerce_customers.csv",
                  "email_subscribers": "email_subscribers.csv", "loyalty_members": "loyalty_members.parquet"}
PEOPLE_PER_BROKEN_LINE = 500


class CustomerFiles:
    """The four customer files and ground_truth.csv, open for appending batch after batch."""

    def __init__(self, out: Path):
        self.out = out
        self.counts = {name: 0 for name in [*FILE_OF_SOURCE.values(), "ground_truth.csv"]}
        self._handles, self._writers, self._columns = {}, {}, {}
        self._loyalty = pq.ParquetWriter(out / "loyalty_members.parquet", LOYALTY_SCHEMA)
        self._truth_fh = open(out / "ground_truth.csv", "w", newline="", encoding="utf-8")
        self._truth = csv.writer(self._truth_fh)
        self._truth.writerow(["source", "pk", "person_id", "household_id"])

    def write_batch(self, sources: dict[str, SourceWriter], pos_extra: list[list[str]]) -> None:
        for name, source in sources.items():
            file_name = FILE_OF_SOURCE[name]
            extra = pos_extra if name == "pos_customers" else []
            if file_name.endswith(".parquet"):
                if source.rows:  # one row group a batch
                    self._loyalty.write_table(pa.Table.from_pylist(source.rows, schema=LOYALTY_SCHEMA))
            else:
                self._append_csv(file_name, source.rows, extra)
            self.counts[file_name] += len(source.rows) + len(extra)
        truth = sorted(t for s in sources.values() for t in s.truth)
        self._truth.writerows(truth)
        self.counts["ground_truth.csv"] += len(truth)

    def _append_csv(self, file_name: str, rows: list[dict], extra: list[list[str]]) -> None:
        if not rows:
            return
        if file_name not in self._writers:
            fh = open(self.out / file_name, "w", newline="", encoding="utf-8")
            self._handles[file_name], self._writers[file_name] = fh, csv.writer(fh)
            self._columns[file_name] = list(rows[0].keys())
            self._writers[file_name].writerow(self._columns[file_name])
        columns = self._columns[file_name]
        self._writers[file_name].writerows([row[c] for c in columns] for row in rows)
        self._writers[file_name].writerows(extra)

    def close(self) -> None:
        self._loyalty.close()
        self._truth_fh.close()
        for fh in self._handles.values():
            fh.close()


def broken_lines_due(done: int, batch: int, people: int) -> int:
    """The broken POS lines of each kind a batch writes: its share of the whole set's
    max(1, people // 500), so the batches' shares add up to exactly that."""
    total = max(1, people // PEOPLE_PER_BROKEN_LINE)
    return total * (done + batch) // people - total * done // people


def stream_customer_sources(out_dir, people: int, seed: int, batch_size: int) -> dict[str, int]:
    """Write the four customer sources and ground_truth.csv for `people` people, `batch_size`
    people at a time; returns rows per file (as generate_demo_data does)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng, pools = seeded_world(people, seed)
    keys = StreamedKeys(people, secret=rng.getrandbits(64))
    taken_emails = TakenEmails()
    files = CustomerFiles(out)
    done, owed = 0, 0
    try:
        while done < people:
            batch = min(batch_size, people - done)
            persons = make_people(batch, rng, pools, taken_emails, keys)
            sources = make_customer_sources(rng, pools, persons, taken_emails, keys)
            pos = sources["pos_customers"]
            owed += broken_lines_due(done, batch, people)
            k = min(owed, len(pos.rows))  # a batch with too few till records passes the rest on
            extra = broken_pos_lines(rng, pos, batch, k=k) if k else []
            owed -= k
            files.write_batch(sources, extra)
            taken_emails.seal()
            done += batch
            del persons, sources, pos, extra  # before the next batch is built, not after
    finally:
        files.close()
    return files.counts
