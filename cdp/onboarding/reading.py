"""Reading a data file for `cdp init`: CSV as `cdp run` reads it (source_files: a BOM, else UTF-8,
else the legacy code page detected; the header's delimiter), or Parquet; the first SAMPLE_ROWS
rows, as text."""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cdp.stages.sources import files as source_files
from cdp.stages.sources.standardize import EMAIL_RE


SAMPLE_ROWS = 20_000      # rows read per file ...
HEAD_BYTES = 16 << 20     # ... from at most its first 16 MiB


class InitError(ValueError):
    """A data file cannot be read; the message is one line naming the file."""


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
