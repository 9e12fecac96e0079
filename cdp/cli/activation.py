"""`cdp query` and `cdp segment preview`: ad hoc Presto SQL and segment counts on a tenant's
warehouse, read-only."""

from __future__ import annotations

import sys
from pathlib import Path

from cdp.config import load_config
from cdp.engine import warehouse_for


def cmd_query(args) -> int:
    """Run one Presto query ad hoc on the tenant's warehouse (read-only)."""
    import duckdb

    from cdp.stages.activation.queries import QueryError, run_query

    if (args.sql is None) == (args.file is None):
        print("cdp query: give either the SQL text or --file F", file=sys.stderr)
        return 2
    sql = Path(args.file).read_text() if args.file else args.sql
    cfg = load_config(args.config)
    try:
        # the engine's reader: the DuckDB file or the lakehouse; no files, no network
        con = warehouse_for(cfg).open_reader({"enable_external_access": False})
    except duckdb.Error as exc:
        print(f"cdp query: cannot open the warehouse {cfg.warehouse_path}: {exc}", file=sys.stderr)
        return 1
    try:
        df = run_query(con, sql, source=args.file or "query", limit=None if args.csv else args.limit)
    except QueryError as exc:
        print(f"cdp query: {exc}", file=sys.stderr)
        return 2
    except duckdb.Error as exc:
        print(f"cdp query: the warehouse refused the query: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {len(df):,} rows to {args.csv}")
    else:
        import pandas as pd

        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(df.to_string(index=False) if len(df) else "(no rows)")
        print(f"({len(df):,} rows{'' if len(df) < args.limit else f', first {args.limit} shown'})")
    return 0


def cmd_segment_preview(args) -> int:
    """Count a segment's members and show a sample, without writing anything."""
    import pandas as pd

    from cdp.stages.activation.segments import SegmentError, preview_segment

    cfg = load_config(args.config)
    con = warehouse_for(cfg).open_reader()
    try:
        count, sample = preview_segment(cfg, args.name, con, args.sample)
    except SegmentError as exc:
        print(f"cdp segment: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    print(f"segment {args.name}: {count:,} members")
    with pd.option_context("display.max_columns", 8, "display.width", 200):
        print(sample.to_string(index=False) if len(sample) else "(no members)")
    return 0
