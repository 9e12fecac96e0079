"""`cdp check-config`: everything that can be checked without running, reported all at once.

The YAML itself is validated by pydantic when it loads (config.py). Then, per problem a line
naming the file and the field:

* sources: the file or folder exists and can be read (a folder of deliveries: its latest data
  file, and the deleted flag column); its header decodes and has every tagged
  column and kept attribute (with the closest names it does have), and columns that are neither
  are listed (a warning: they are not loaded); a sample of its first rows goes through the
  source kind's real standardiser - a column whose sampled values are mostly invalid (dates that
  are not dates, amounts that are not numbers) or a sample mostly quarantined is a warning;
* saved queries: each parses as one read-only Presto query of warehouse tables;
* segments: each compiles against the warehouse's tables and columns, once a run has built them.

Errors would fail a run; warnings would not, but lose or null data.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cdp.engine import warehouse_for
from cdp.stages.sources import files as source_files
from cdp.config import SourceKind, TenantConfig

SAMPLE_BYTES = 1 << 20          # the first megabyte of a CSV file
SAMPLE_ROWS = 2_000
INVALID_SHARE = 0.2             # sampled values of a column that may be invalid before it is a warning


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    severity: str = "error"     # error | warning

    def line(self, config: Path) -> str:
        return f"{config}: {self.field}: {self.message}" + (" (warning)" if self.severity == "warning" else "")


def check_tenant(cfg: TenantConfig) -> list[Problem]:
    problems: list[Problem] = []
    for name, source in cfg.sources.items():
        problems += check_source(cfg, name, source)
    problems += check_queries(cfg)
    problems += check_segments(cfg)
    return problems


# ---- sources ------------------------------------------------------------------------------------

def check_source(cfg: TenantConfig, name: str, source) -> list[Problem]:
    where = f"sources.{name}"
    path = cfg.resolve(source.path)
    if not path.exists():
        near = difflib.get_close_matches(path.name, [p.name for p in path.parent.glob("*")], n=1) \
            if path.parent.exists() else []
        return [Problem(f"{where}.path", f"{path} does not exist" + (f" (did you mean {near[0]}?)" if near else ""))]
    if source.deliveries is not None:
        return _check_delivery_folder(where, name, source, path)
    return _check_file(where, name, source, path)


def _check_delivery_folder(where: str, name: str, source, folder: Path) -> list[Problem]:
    """A folder of deliveries: its latest data file is checked as a one-file source's file."""
    from cdp.stages.sources.delivery_files import delivery_files

    if not folder.is_dir():
        return [Problem(f"{where}.path", f"{folder} is not a folder: with deliveries:, path names the folder "
                                         "of delivery files")]
    data = [p for p in delivery_files(name, source, folder)
            if not source.deliveries.is_deletes_file(p.name)]
    if not data:
        glob = source.deliveries.data_glob(source.format or "csv")
        return [Problem(f"{where}.deliveries.files", f"{folder} holds no delivery file matching {glob!r} yet",
                        "warning")]
    return _check_file(where, name, source, data[-1])


def _check_file(where: str, name: str, source, path: Path) -> list[Problem]:
    if source.format in ("parquet", "delta"):
        return _check_lakehouse_source(where, source, path)
    if path.is_dir():
        return [Problem(f"{where}.path", f"{path} is a folder; a CSV source is one file (set format: parquet "
                                         "or delta for a folder)")]
    try:
        with open(path, "rb") as fh:
            head = fh.read(SAMPLE_BYTES)
    except OSError as exc:
        return [Problem(f"{where}.path", f"cannot read {path}: {exc.strerror}")]
    try:
        header = source_files.read_header(head, source.encoding, source.delimiter)
    except source_files.FileFormatError as exc:
        return [Problem(f"{where}.path", f"cannot read {path}: {exc}")]
    problems = _missing_columns(where, source, header, path)
    if not [p for p in problems if p.severity == "error"]:
        problems += _sample(where, name, source, head, path)
    return problems


def _missing_columns(where: str, source, header: list[str], path: Path) -> list[Problem]:
    """Tagged or kept columns the file lacks (errors, with the nearest name it has); columns it
    has that are neither, and are not such a nearest name (a warning: they are not loaded)."""
    from cdp.stages.sources.assets import ignored_columns

    out, suggested = [], set()
    for section, columns, verb in (("columns", source.columns, "tagged"), ("attributes", source.attributes, "kept")):
        for column in columns:
            if column not in header:
                near = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
                suggested.update(near)
                out.append(Problem(f"{where}.{section}.{column}", f"is {verb} but not in {path.name}"
                                   + (f" (did you mean {near[0]!r}?)" if near else f"; it has {header}")))
    flag = source.deliveries.deleted_flag if source.deliveries else None
    if flag is not None and flag not in header:
        out.append(Problem(f"{where}.deliveries.deleted_flag", f"{flag!r} is not a column of {path.name}; "
                                                               f"it has {header}"))
    ignored = [c for c in ignored_columns(source, header) if c not in suggested]
    if ignored:
        out.append(Problem(where, f"{path.name} has columns neither tagged nor kept as attributes, which "
                                  f"are not loaded: {', '.join(ignored)}", "warning"))
    return out


def _check_lakehouse_source(where: str, source, path: Path) -> list[Problem]:
    from cdp.engine.lakehouse import read_lakehouse_table

    try:
        table = read_lakehouse_table(path, source.format)
    except Exception as exc:  # noqa: BLE001 - any arrow error: the source cannot be read
        return [Problem(f"{where}.path", f"cannot read {source.format} {path}: {str(exc).splitlines()[0]}")]
    return _missing_columns(where, source, table.column_names, path)


def _sample(where: str, name: str, source, head: bytes, path: Path) -> list[Problem]:
    """The first rows through the source kind's standardiser: what a run would null or set aside."""
    from cdp.stages.sources.assets import STANDARDISERS, csv_batch

    cut = max(head.rfind(b"\n"), 0) if len(head) == SAMPLE_BYTES else len(head)
    batch = csv_batch(name, source, head[:cut], where=path)
    batch.rows = batch.rows.head(SAMPLE_ROWS)
    batch.raw = batch.rows.copy()
    sampled = len(batch.rows) + len(batch.rejects)
    if not sampled:
        return [Problem(f"{where}.path", f"{path.name} has a header but no rows", "warning")]
    STANDARDISERS[source.kind](batch, source)
    problems = []
    tags = {source.domain_columns()[c]: (c, t) for c, t in source.columns.items()}
    tags.update({a.column: (c, a.type) for c, a in source.attributes.items()})
    for column, invalid in sorted(batch.invalid_values.items()):
        present = _present(batch, tags, column)
        if present and invalid / present > INVALID_SHARE and column in tags:
            col, tag = tags[column]
            section = "attributes" if col in source.attributes else "columns"
            problems.append(Problem(f"{where}.{section}.{col}", f"{invalid} of {present} sampled values are not "
                                    f"a valid {tag} and would be nulled", "warning"))
    rejected = len(batch.rejects)
    if rejected / sampled > INVALID_SHARE:
        reasons = sorted({r["reason"].split(" (")[0] for r in batch.rejects})[:3]
        problems.append(Problem(f"{where}", f"{rejected} of the first {sampled} rows would be quarantined "
                                f"({'; '.join(reasons)})", "warning"))
    return problems


def _present(batch, tags: dict, column: str) -> int:
    if column not in tags:
        return 0
    source_column = tags[column][0]
    values = batch.raw[source_column] if source_column in batch.raw else []
    return int(sum(1 for v in values if isinstance(v, str) and v.strip()))


# ---- queries and segments -----------------------------------------------------------------------

def check_queries(cfg: TenantConfig) -> list[Problem]:
    from cdp.stages.activation.queries import QueryError, parse_presto, saved_queries

    try:
        queries = saved_queries(cfg)
    except QueryError as exc:
        return [Problem("queries.folder", str(exc).removeprefix("queries.folder: "))]
    problems = []
    for name, path in queries.items():
        try:
            parse_presto(path.read_text(encoding="utf-8"), source=path.name)
        except QueryError as exc:
            problems.append(Problem(f"queries.{name}", str(exc).removeprefix(f"{path.name}: ")))
    return problems


def check_segments(cfg: TenantConfig) -> list[Problem]:
    """Each segment compiled against the warehouse's catalog (read-only), when a run has built
    one; before that, the config's own checks (referenced segments, left-out tables) are all."""
    if not cfg.segments or cfg.active_engine != "duckdb" or not warehouse_for(cfg).built():
        return []
    import duckdb

    from cdp.stages.activation.segments import SegmentError, compile_segment

    try:
        con = warehouse_for(cfg).open_reader()
    except duckdb.Error as exc:
        return [Problem("segments", f"cannot open the warehouse {cfg.warehouse_path} to check them: "
                                    f"{str(exc).splitlines()[0]}", "warning")]
    problems = []
    try:
        for name in cfg.segments:
            try:
                compile_segment(cfg, name, con)
            except SegmentError as exc:
                field, _, message = str(exc).partition(": ")
                problems.append(Problem(field, message))
    finally:
        con.close()
    return problems


def kinds_summary(cfg: TenantConfig) -> str:
    counts = {k.value: len(cfg.sources_of(k)) for k in SourceKind if cfg.sources_of(k)}
    return ", ".join(f"{n} {k}" for k, n in counts.items())
