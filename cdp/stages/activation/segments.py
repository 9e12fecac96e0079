"""Activation - segments: audiences defined in the tenant YAML, compiled to SQL, built together by
the asset `activation/segments`.

    segments:
      bakery_fans:
        description: likely to buy bakery, somewhat likely to buy snacks, reachable by email
        all:
          - {table: predictive.product_category_propensity, where: {product_category: Bakery},
             column: propensity, op: ">=", value: 0.66}
          - {table: predictive.product_category_propensity, where: {product_category: Snacks},
             column: propensity, op: between, value: [0.33, 0.66]}
          - not: {column: email, op: is_null}
      bakery_fans_not_vip:
        all: [{segment: bakery_fans}, {not: {segment: vip}}]

A condition is `column op value` on any warehouse table that has a `cdp_id` column (default
`c360.customer_360`); ops: =, !=, <, <=, >, >=, between, in, is_null, not_null, contains.
Rules compose with all / any / not and by naming other segments (cycles are refused by the
config). Compiling is safe: every table and column is looked up in the warehouse catalog
(information_schema) and quoted from the catalog's own spelling, and every value is a bound
parameter, so nothing a config says becomes SQL text.

Segments are analysts' data, not code: they are edited in the analyst workspace while Dagster
runs. So they are not one asset each (which would exist only after "Reload definitions", and
one broken segment would stop everything downstream of it). The one asset
`activation/segments` reads the `segments:` of the tenant YAML *when it runs* - a segment saved
in the workspace a minute ago is built by the next run, whatever started it - and builds each
segment on its own: its members in `activation.segment_<name>` (cdp_id) and a row appended to
`activation.segment_counts` (member counts over time). A segment that cannot be built (a table
or column that is gone, a value of the wrong type, a definition that no longer validates) is
left out alone: the others are built, `activation.segments` (one row per segment: members, built,
error) says which and why, the asset check `every_segment_built` fails naming it, and the
profile store and orchestrations read that table (an orchestration of a left-out segment fails
instead of sending its previous members).
"""

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import yaml
from pydantic import ValidationError

from cdp.engine import WarehouseResource, warehouse_of
from cdp.config import IDENTIFIER, Segment, SegmentRule, TenantConfig, _segment_cycle
from cdp.errors import UserError
from cdp.engine.tables import preview_md, transaction
from cdp.config.scope import segment_problem

GROUP = "activation"
SCHEMA = "activation"
UNIVERSE = ("c360", "customer_360")
COMPARISONS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class SegmentError(UserError, ValueError):
    """A segment refers to a table or column the warehouse does not have."""


@dataclass
class CompiledSegment:
    sql: str                      # select cdp_id from c360.customer_360 where <predicate>
    params: list = field(default_factory=list)
    tables: set = field(default_factory=set)  # (schema, table) read


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _catalog_columns(con) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every warehouse table: on Spark, the lakehouse's."""
    return warehouse_of(con).catalog_columns(con)


class Catalog:
    """Tables and columns as the warehouse's information_schema lists them."""

    def __init__(self, con):
        self.columns: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table, column, dtype in _catalog_columns(con):
            self.columns.setdefault((schema, table), {})[column] = dtype

    def table(self, where: str, name: str) -> tuple[str, str]:
        parts = name.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts) or tuple(parts) not in self.columns:
            raise SegmentError(f"{where}: table {name!r} is not in the warehouse")
        if "cdp_id" not in self.columns[tuple(parts)]:
            raise SegmentError(f"{where}: table {name!r} has no cdp_id column to select people by")
        return parts[0], parts[1]

    def column(self, where: str, table: tuple[str, str], name: str) -> str:
        if name not in self.columns[table]:
            raise SegmentError(f"{where}: column {name!r} is not in {table[0]}.{table[1]}; it has: "
                               + ", ".join(sorted(self.columns[table])))
        return self.columns[table][name]


def _condition(rule: SegmentRule, where: str, catalog: Catalog, out: CompiledSegment) -> str:
    table = catalog.table(where, rule.table)
    dtype = catalog.column(where, table, rule.column)
    col = _quote(rule.column)
    if rule.op in COMPARISONS:
        test, params = f"{col} {COMPARISONS[rule.op]} ?", [rule.value]
    elif rule.op == "between":
        test, params = f"{col} between ? and ?", list(rule.value)
    elif rule.op == "in":
        test, params = f"{col} in ({', '.join('?' for _ in rule.value)})", list(rule.value)
    elif rule.op == "is_null":
        test, params = f"{col} is null", []
    elif rule.op == "not_null":
        test, params = f"{col} is not null", []
    else:  # contains: an element of a list column, or a substring (case-insensitive) of text
        test = (f"list_contains({col}, ?)" if dtype.endswith("[]")
                else f"contains(lower({col}::varchar), lower(?))")
        params = [str(rule.value)]
    filters = []
    for fcol, fval in rule.where.items():
        catalog.column(f"{where}.where", table, fcol)
        filters.append(f"{_quote(fcol)} = ?")
        params.append(fval)
    out.params.extend(params)
    out.tables.add(table)
    conditions = " and ".join(["cdp_id is not null", test, *filters])
    if table == UNIVERSE:
        return f"({test})" if not filters else f"(cdp_id in (select cdp_id from c360.customer_360 where {conditions}))"
    return f"(cdp_id in (select cdp_id from {_quote(table[0])}.{_quote(table[1])} where {conditions}))"


def _predicate(rule: SegmentRule, where: str, segments: dict[str, Segment], catalog: Catalog,
               out: CompiledSegment) -> str:
    if rule.column is not None:
        return _condition(rule, where, catalog, out)
    if rule.segment is not None:
        if rule.segment not in segments:
            raise SegmentError(f"{where}: segment {rule.segment!r} is not defined")
        return _predicate(segments[rule.segment], f"segments.{rule.segment}", segments, catalog, out)
    if rule.not_ is not None:
        # a null test (unknown) counts as "not in the segment", so NOT of it is "in"
        return f"(not coalesce({_predicate(rule.not_, where + '.not', segments, catalog, out)}, false))"
    parts, joiner = (rule.all, " and ") if rule.all is not None else (rule.any, " or ")
    label = "all" if rule.all is not None else "any"
    return "(" + joiner.join(_predicate(r, f"{where}.{label}[{i}]", segments, catalog, out)
                             for i, r in enumerate(parts)) + ")"


def compile_segment(cfg: TenantConfig, name: str, con) -> CompiledSegment:
    """SQL selecting the segment's members (cdp_id) with its bound parameters."""
    if name not in cfg.segments:
        raise SegmentError(f"segments: no segment named {name!r}; defined: {', '.join(sorted(cfg.segments))}")
    catalog = Catalog(con)
    out = CompiledSegment(sql="")
    catalog.table(f"segments.{name}", ".".join(UNIVERSE))
    predicate = _predicate(cfg.segments[name], f"segments.{name}", cfg.segments, catalog, out)
    out.tables.add(UNIVERSE)
    out.sql = f"select cdp_id from c360.customer_360 where coalesce({predicate}, false) order by cdp_id"
    return out


def segment_tables_read(cfg: TenantConfig, name: str) -> set[tuple[str, str]]:
    """The tables a segment reads, from the config alone (for asset deps)."""
    def walk(rule: SegmentRule) -> set:
        if rule.column is not None:
            return {tuple(rule.table.split("."))}
        if rule.segment is not None:
            return walk(cfg.segments[rule.segment])
        children = (rule.all or []) + (rule.any or []) + ([rule.not_] if rule.not_ else [])
        return set().union(*(walk(c) for c in children))
    return walk(cfg.segments[name]) | {UNIVERSE}


COUNTS_DDL = f"""create table if not exists {SCHEMA}.segment_counts (
    segment varchar, members bigint, computed_at timestamp, run_id varchar)"""


def materialize_segment(cfg: TenantConfig, name: str, con, run_id: str) -> int:
    compiled = compile_segment(cfg, name, con)
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(COUNTS_DDL)
    with transaction(con):
        con.execute(f"create or replace table {SCHEMA}.{_quote('segment_' + name)} as {compiled.sql}",
                    compiled.params)
        members = con.execute(f"select count(*) from {SCHEMA}.{_quote('segment_' + name)}").fetchone()[0]
        con.execute(f"insert into {SCHEMA}.segment_counts values (?, ?, ?, ?)",
                    [name, members, datetime.now(timezone.utc).replace(tzinfo=None), run_id])
    return members


def preview_segment(cfg: TenantConfig, name: str, con, sample: int = 10):
    """(member count, sample of members' customer 360 rows) without writing anything."""
    compiled = compile_segment(cfg, name, con)
    count = con.execute(f"select count(*) from ({compiled.sql})", compiled.params).fetchone()[0]
    rows = con.execute(f"select c.* from c360.customer_360 c where c.cdp_id in ({compiled.sql}) "
                       f"order by c.cdp_id limit {int(sample)}", compiled.params).df()
    return count, rows


# ---- the segments the YAML defines now, each built on its own -------------------------------------

SEGMENTS_KEY = dg.AssetKey([SCHEMA, "segments"])
REGISTRY = f"{SCHEMA}.segments"
REGISTRY_DDL = f"""create or replace table {REGISTRY} (
    segment varchar, members bigint, built boolean, error varchar, computed_at timestamp, run_id varchar)"""


def _validation_problem(name: str, exc: ValidationError) -> str:
    lines = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"segments.{name}{'.' + loc if loc else ''}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def current_segments(cfg: TenantConfig) -> tuple[dict[str, Segment], dict[str, str], list[str]]:
    """(segments that can be compiled, name -> why for those that cannot, every name in the YAML's
    order) from the tenant YAML as
    it is now - not as it was when the code location loaded. Each segment is validated on its
    own (the config's rules: its fields, references, cycles, tables this tenant builds), so one
    that no longer validates leaves out itself and the segments that refer to it, nothing else.
    A config built in code (no file) gives its own segments."""
    path = cfg.config_path
    if path is None or not Path(path).exists():
        docs = {n: s for n, s in cfg.segments.items()}
    else:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise SegmentError(f"{path}: not valid YAML: {exc}") from exc
        docs = raw.get("segments") or {}
        if not isinstance(docs, dict):
            raise SegmentError(f"{path}: segments: expected a mapping of name -> definition")
    segments, problems = {}, {}
    for name, doc in docs.items():
        name = str(name)
        if not IDENTIFIER.match(name):
            problems[name] = f"segments.{name}: names must be lowercase identifiers"
            continue
        try:
            segments[name] = doc if isinstance(doc, Segment) else Segment.model_validate(doc)
        except ValidationError as exc:
            problems[name] = _validation_problem(name, exc)
    changed = True
    while changed:  # until no segment refers to one that is missing, left out or in a cycle
        changed = False
        for name, seg in list(segments.items()):
            for ref in sorted(seg.referenced_segments()):
                if ref not in segments:
                    problems[name] = (f"segments.{name}: refers to segment {ref!r}, which "
                                      + (f"is left out ({problems[ref]})" if ref in problems else "is not defined"))
                    del segments[name]
                    changed = True
                    break
        cycle = _segment_cycle(segments)
        if cycle:
            for name in set(cycle):
                problems[name] = f"segments.{name}: segments refer to each other in a cycle: {' -> '.join(cycle)}"
                segments.pop(name, None)
            changed = True
    for name, seg in list(segments.items()):
        problem = segment_problem(cfg, name, seg)
        if problem:
            problems[name] = problem
            del segments[name]
    return segments, problems, [str(n) for n in docs]


@dataclass
class SegmentBuild:
    members: int | None = None
    error: str | None = None

    @property
    def built(self) -> bool:
        return self.error is None


def build_segments(cfg: TenantConfig, con, run_id: str) -> dict[str, SegmentBuild]:
    """Build every segment of the YAML as it is now, each on its own; record in activation.segments
    which were built and why the others were not. Returns name -> outcome, in YAML order."""
    segments, problems, order = current_segments(cfg)
    current = cfg.model_copy(update={"segments": segments})
    outcomes: dict[str, SegmentBuild] = {n: SegmentBuild(error=why) for n, why in problems.items()}

    def build(name: str) -> None:
        if name in outcomes:
            return
        for ref in sorted(segments[name].referenced_segments()):  # those it refers to first
            build(ref)
            if not outcomes[ref].built:
                outcomes[name] = SegmentBuild(error=f"segments.{name}: refers to segment {ref!r}, which is "
                                                    f"left out ({outcomes[ref].error})")
                return
        try:
            outcomes[name] = SegmentBuild(members=materialize_segment(current, name, con, run_id))
        except Exception as exc:  # this segment only: a compile error, a value the column refuses, ...
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            outcomes[name] = SegmentBuild(error=message if isinstance(exc, SegmentError)
                                          else f"segments.{name}: {type(exc).__name__}: {message}")

    for name in segments:
        build(name)
    outcomes = {n: outcomes[n] for n in order}
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute(f"create schema if not exists {SCHEMA}")
    with transaction(con):
        con.execute(REGISTRY_DDL)
        if outcomes:
            con.executemany(f"insert into {REGISTRY} values (?, ?, ?, ?, ?, ?)",
                            [(n, o.members, o.built, o.error, now, run_id) for n, o in outcomes.items()])
    return outcomes


def _table_exists(con, schema: str, table: str) -> bool:
    return warehouse_of(con).table_exists(con, schema, table)


def segment_status(con) -> dict[str, SegmentBuild] | None:
    """What the last segments build recorded (name -> outcome); None before the first one."""
    if not _table_exists(con, SCHEMA, "segments"):
        return None
    return {name: SegmentBuild(members=members, error=None if built else (error or "not built"))
            for name, members, built, error in con.execute(
                f"select segment, members, built, error from {REGISTRY} order by segment").fetchall()}


def require_built(con, name: str, where: str) -> None:
    """Refuse to use a segment the last build left out (its table holds earlier members)."""
    status = segment_status(con)
    if status is None:
        return  # a warehouse from before activation.segments: the table is all there is
    if name not in status:
        raise SegmentError(f"{where}.segment: segment {name!r} was not in the last segments build "
                           "(materialize activation/segments)")
    if not status[name].built:
        raise SegmentError(f"{where}.segment: segment {name!r} was left out of the last segments build, "
                           f"so its members are not current: {status[name].error}")


def build_segments_asset(cfg: TenantConfig) -> dg.AssetsDefinition:
    # lineage from the segments known at load; a segment added since reads what it reads anyway
    tables = sorted(set().union(*(segment_tables_read(cfg, n) for n in cfg.segments)) | {UNIVERSE})

    @dg.asset(key=SEGMENTS_KEY, group_name=GROUP, kinds={cfg.active_engine, "sql"},
              deps=[dg.AssetKey(list(t)) for t in tables],
              check_specs=[dg.AssetCheckSpec("every_segment_built", asset=SEGMENTS_KEY,
                                             description="every segment of the tenant YAML was built")],
              description="Every segment the tenant YAML defines when the run starts (so one saved in the "
                          "analyst workspace is built without reloading definitions), each on its own: "
                          f"members in `{SCHEMA}.segment_<name>`, counts appended to `{SCHEMA}.segment_counts`, "
                          f"and `{REGISTRY}` says which segments were built and why any was left out.")
    def _segments(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            outcomes = build_segments(cfg, con, context.run.run_id)
        left_out = {n: o.error for n, o in outcomes.items() if not o.built}
        for name, why in left_out.items():
            context.log.warning(f"segment {name} left out: {why}")
        table = "| segment | members | built |\n|---|---:|---|\n" + "".join(
            f"| {n} | {'' if o.members is None else f'{o.members:,}'} | {'yes' if o.built else 'no: ' + o.error} |\n"
            for n, o in outcomes.items())
        check = dg.AssetCheckResult(check_name="every_segment_built", passed=not left_out,
                                    metadata={"left_out": dg.MetadataValue.json(left_out)})
        return dg.MaterializeResult(check_results=[check], metadata={
            "dagster/row_count": len(outcomes), "built": sum(o.built for o in outcomes.values()),
            "preview": dg.MetadataValue.md(table), "left_out": dg.MetadataValue.json(left_out),
            **{f"members/{n}": o.members for n, o in outcomes.items() if o.built}})

    return _segments


def segment_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The one asset that builds every configured segment."""
    return dg.Definitions(assets=[build_segments_asset(cfg)])
