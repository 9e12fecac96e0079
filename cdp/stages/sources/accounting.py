"""Row accounting: what a source file holds, counted without the loader's parser (physical
lines of a CSV file, rows of Parquet or Delta), and the check that the loaded and quarantined
rows tile those units exactly - for a one-file source (its domain table and quarantine rows) and
for each delivery of a source of deliveries (the rows of that delivery)."""

from pathlib import Path

from cdp.config import Source
from cdp.engine.lakehouse import count_lakehouse_rows
from cdp.stages.sources import files as source_files


def file_units(source: Source, path: Path) -> int:
    """What the accounting check counts in the file without the loader's parser: physical data
    lines of a CSV file (line breaks in the decoded text, less the header), rows of Parquet or
    Delta (from the files' metadata)."""
    if source.format in ("parquet", "delta"):
        return count_lakehouse_rows(path, source.format)
    decoded = source_files.decode(path.read_bytes(), source.encoding)
    return max(source_files.physical_lines(decoded.text) - 1, 0)


def account_for(con, name: str, units: int, first: int) -> dict:
    """Check the rows of domain.<name> and its quarantine against the file's `units` (physical data
    lines from `first`, or Parquet rows), counted without the loader: the rows tile them exactly -
    each starts where the one before it ends (its source_row + source_lines; a quarantined row is
    one line: a malformed line costs that line, never the lines after it), the first at the first
    unit, the last ending at the file's end - and no row spans more than MAX_RECORD_LINES."""
    return tile(con, f"""select source_row, source_lines, false as quarantined from domain."{name}"
                   union all select source_row, 1, true from domain.quarantine where source = ?""",
                [name], units, first)


def tile(con, rows_sql: str, params: list, units: int, first: int) -> dict:
    """account_for over the rows of a query (source_row, source_lines, quarantined)."""
    end = first + units
    rows, lowest, breaks, multi, longest, loaded, quarantined = con.execute(f"""
        with r as ({rows_sql}),
        s as (select *, coalesce(lead(source_row) over (order by source_row, quarantined), {end}) as next_start
              from r)
        select count(*), min(source_row), count(*) filter (where source_row + source_lines <> next_start),
               count(*) filter (where source_lines > 1), coalesce(max(source_lines), 0),
               count(*) filter (where not quarantined), count(*) filter (where quarantined)
        from s""", params).fetchall()[0]
    problems = []
    if units and not rows:
        problems.append(f"the file has {units} but no row was loaded or quarantined")
    if rows and lowest != first:
        problems.append(f"the first row starts at {lowest}, not {first}")
    if breaks:
        problems.append(f"{breaks} rows do not end where the next begins (lines lost, or counted twice)")
    if longest > source_files.MAX_RECORD_LINES:
        problems.append(f"a row covers {longest} lines (over {source_files.MAX_RECORD_LINES})")
    return {"rows_loaded": loaded, "rows_quarantined": quarantined, "records_over_several_lines": multi,
            "longest_record_lines": int(longest), "problems": problems}
