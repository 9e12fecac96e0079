"""The segment builder's form <-> the `segments:` definition the pipeline uses, and saving.

The form is flat: a name, a description, how rows combine (all = AND, any = OR) and rows, each a
condition (table, column, op, value) or another segment, each optionally negated (NOT). Nesting
comes from referring to other segments. Values are typed by the column's type in the warehouse
catalog (numbers, dates, booleans, text); `between` takes "low, high" and `in` a comma list.

Saving validates the new definition with the same pydantic models `cdp run` uses (inside the
whole tenant config, so references and cycles are checked too), compiles it against the warehouse,
and only then writes it into the tenant YAML's `segments:`, replacing only that segment's lines
(found with ruamel.yaml's round-trip parser), so the rest of the file and its comments stay as
they were. Saved queries are `.sql` files in the
tenant's queries folder, checked by the same Presto parser as `cdp query`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml
from pydantic import ValidationError

from cdp.config import IDENTIFIER, SEGMENT_OPS, ConfigError, Segment, TenantConfig, _segment_cycle, load_config
from cdp.stages.activation.queries import QUERY_NAME, QueryError, parse_presto
from cdp.stages.activation.segments import UNIVERSE, Catalog, CompiledSegment, SegmentError, compile_segment

MAX_ROWS = 20
NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|"
                     r"DOUBLE|REAL|DECIMAL.*)$")
NO_VALUE = ("is_null", "not_null")


class BuilderError(ValueError):
    """A form that does not make a valid segment; the message names the field."""


@dataclass
class Row:
    kind: str = "condition"          # condition | segment
    negate: bool = False
    table: str = ".".join(UNIVERSE)
    column: str = ""
    op: str = "="
    value: str = ""
    where_column: str = ""
    where_value: str = ""
    segment: str = ""


@dataclass
class BuilderForm:
    name: str = ""
    description: str = ""
    combine: str = "all"
    rows: list[Row] = field(default_factory=lambda: [Row()])
    editing: str = ""                # the saved segment this form was opened from, if any

    @classmethod
    def parse(cls, form) -> "BuilderForm":
        out = cls(name=(form.get("name") or "").strip(), description=(form.get("description") or "").strip(),
                  combine="any" if form.get("combine") == "any" else "all", rows=[],
                  editing=(form.get("editing") or "").strip())
        try:
            count = min(int(form.get("row_count") or 0), MAX_ROWS)
        except ValueError:
            count = 0
        for i in range(count):
            if form.get(f"row-{i}-removed"):
                continue
            g = lambda k, d="": (form.get(f"row-{i}-{k}") or d).strip()  # noqa: E731
            out.rows.append(Row(kind="segment" if g("kind") == "segment" else "condition",
                                negate=bool(form.get(f"row-{i}-negate")), table=g("table", ".".join(UNIVERSE)),
                                column=g("column"), op=g("op", "="), value=g("value"),
                                where_column=g("where_column"), where_value=g("where_value"),
                                segment=g("segment")))
        if form.get("action") == "add" and len(out.rows) < MAX_ROWS:
            out.rows.append(Row())
        if form.get("action") == "add_segment" and len(out.rows) < MAX_ROWS:
            out.rows.append(Row(kind="segment"))
        if not out.rows:
            out.rows.append(Row())
        return out

    @classmethod
    def from_segment(cls, name: str, seg: Segment) -> "BuilderForm | None":
        """The form for a saved segment, when it is of the flat shape the form can show."""
        combine, children = ("all", seg.all) if seg.all is not None else ("any", seg.any)
        if children is None:
            children, combine = [seg], "all"
        rows = []
        for rule in children:
            negate = rule.not_ is not None
            rule = rule.not_ if negate else rule
            if rule.segment is not None:
                rows.append(Row(kind="segment", negate=negate, segment=rule.segment))
            elif rule.column is not None and len(rule.where) <= 1:
                value = ", ".join(str(v) for v in rule.value) if isinstance(rule.value, list) else (
                    "" if rule.value is None else str(rule.value).lower() if isinstance(rule.value, bool)
                    else str(rule.value))
                wc, wv = next(iter(rule.where.items()), ("", ""))
                rows.append(Row(negate=negate, table=rule.table, column=rule.column, op=rule.op, value=value,
                                where_column=wc, where_value=str(wv)))
            else:
                return None
        return cls(name=name, description=seg.description, combine=combine, rows=rows, editing=name)


def _typed(text: str, dtype: str, where: str):
    text = text.strip()
    try:
        if NUMERIC.match(dtype):
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if dtype == "DATE":
            return date.fromisoformat(text)
        if dtype == "BOOLEAN":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
    except ValueError:
        raise BuilderError(f"{where}: {text!r} is not a {dtype.lower()} value") from None
    return text


def _condition(row: Row, where: str, catalog: Catalog) -> dict:
    if not row.column:
        raise BuilderError(f"{where}.column: choose a column")
    if row.op not in SEGMENT_OPS:
        raise BuilderError(f"{where}.op: {row.op!r} is not one of {', '.join(SEGMENT_OPS)}")
    try:
        table = catalog.table(where + ".table", row.table)
        dtype = catalog.column(where + ".column", table, row.column)
    except SegmentError as exc:
        raise BuilderError(str(exc)) from None
    rule: dict = {} if table == UNIVERSE else {"table": row.table}
    if row.where_column:
        try:
            wtype = catalog.column(where + ".where", table, row.where_column)
        except SegmentError as exc:
            raise BuilderError(str(exc)) from None
        rule["where"] = {row.where_column: _typed(row.where_value, wtype, where + ".where")}
    rule.update(column=row.column, op=row.op)
    if row.op in NO_VALUE:
        return rule
    if not row.value:
        raise BuilderError(f"{where}.value: op {row.op} needs a value")
    if row.op in ("between", "in"):
        parts = [p for p in (x.strip() for x in row.value.split(",")) if p]
        if row.op == "between" and len(parts) != 2:
            raise BuilderError(f"{where}.value: between needs two values: low, high")
        rule["value"] = [_typed(p, dtype, where + ".value") for p in parts]
    elif row.op == "contains":
        rule["value"] = row.value
    else:
        rule["value"] = _typed(row.value, dtype, where + ".value")
    return rule


def definition(form: BuilderForm, catalog: Catalog) -> dict:
    """The `segments.<name>` mapping for the form, as it will be written to the YAML."""
    where = f"segments.{form.name or '(unnamed)'}"
    rules = []
    for i, row in enumerate(form.rows):
        w = f"{where}.{form.combine}[{i}]"
        if row.kind == "segment":
            if not row.segment:
                raise BuilderError(f"{w}.segment: choose a segment")
            rule = {"segment": row.segment}
        else:
            rule = _condition(row, w, catalog)
        rules.append({"not": rule} if row.negate else rule)
    out: dict = {"description": form.description} if form.description else {}
    out[form.combine] = rules
    return out


def validated_segment(cfg: TenantConfig, form: BuilderForm, con) -> tuple[dict, CompiledSegment]:
    """(the definition, its compiled SQL) - checked as `cdp run` would check it, and compiled."""
    catalog = Catalog(con)
    defn = definition(form, catalog)
    name = form.name or "draft"
    if not IDENTIFIER.match(name):
        raise BuilderError(f"segments.{name}: names must be lowercase identifiers ([a-z][a-z0-9_]*)")
    try:
        seg = Segment.model_validate(defn)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            problems.append(f"segments.{name}{'.' + loc if loc else ''}: {e['msg'].removeprefix('Value error, ')}")
        raise BuilderError("\n".join(problems)) from None
    segments = {**cfg.segments, name: seg}
    for ref in sorted(seg.referenced_segments()):
        if ref not in segments:
            raise BuilderError(f"segments.{name}: refers to segment {ref!r}, which is not defined")
    cycle = _segment_cycle(segments)
    if cycle:
        raise BuilderError(f"segments.{name}: segments refer to each other in a cycle: " + " -> ".join(cycle))
    draft = cfg.model_copy(update={"segments": segments})
    try:
        return defn, compile_segment(draft, name, con)
    except SegmentError as exc:
        raise BuilderError(str(exc)) from None


def check_not_overwriting(cfg: TenantConfig, form: BuilderForm) -> None:
    """Saving under the name of another saved segment would silently replace it."""
    if form.name in cfg.segments and form.name != form.editing:
        raise BuilderError(f"segments.{form.name}: a segment of this name already exists; open it from "
                           "the list to change it, or choose another name")


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _entry_text(name: str, defn: dict, indent: int) -> list[str]:
    """segments.<name> as YAML lines at the given indent: block keys, each rule one flow mapping
    (the demo config's own style)."""
    pad = " " * indent
    out = [f"{pad}{name}:\n"]
    for key, value in defn.items():
        if isinstance(value, list) and key in ("all", "any"):
            out.append(f"{pad}  {key}:\n")
            out.extend(f"{pad}    - {_flow(rule)}\n" for rule in value)
        else:
            out.append(f"{pad}  {key}: {_flow(value)}\n")
    return out


def splice_segment(text: str, name: str, defn: dict) -> str:
    """The tenant YAML text with segments.<name> replaced (or added); every other line of the file
    is kept byte for byte, comments included. ruamel.yaml's round-trip parser says where each key
    starts; re-dumping the whole file with it would re-wrap the flow mappings of other segments."""
    from ruamel.yaml import YAML

    doc = YAML().load(text) or {}
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    top = list(doc)
    if "segments" not in doc:
        return "".join(lines) + "\nsegments:\n" + "".join(_entry_text(name, defn, 2))
    after = top.index("segments") + 1
    block_end = doc.lc.key(top[after])[0] if after < len(top) else len(lines)
    segments = doc["segments"]

    def trim(end: int, floor: int) -> int:
        # blank lines and column-0 comments before the next top-level key belong to it
        while end > floor and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
        return end

    if not segments:  # `segments:` with nothing under it
        at = doc.lc.key("segments")[0]
        lines[at] = re.sub(r"^segments:[ \t]*(\{[ \t]*\}|null|~)?", "segments:", lines[at])
        return "".join(lines[:at + 1] + _entry_text(name, defn, 2) + lines[at + 1:])
    names = list(segments)
    indent = segments.lc.key(names[0])[1]
    if name in segments:
        i = names.index(name)
        start = segments.lc.key(name)[0]
        end = trim(segments.lc.key(names[i + 1])[0] if i + 1 < len(names) else block_end, start + 1)
        entry = _entry_text(name, defn, indent)
        comment = re.search(r"\s+#.*$", lines[start].rstrip("\n"))
        if comment:
            entry[0] = entry[0].rstrip("\n") + comment.group(0) + "\n"  # the key line's comment
        return "".join(lines[:start] + entry + lines[end:])
    at = trim(block_end, doc.lc.key("segments")[0] + 1)
    return "".join(lines[:at] + _entry_text(name, defn, indent) + lines[at:])


def save_segment(cfg: TenantConfig, name: str, defn: dict) -> TenantConfig:
    """Write segments.<name> into the tenant YAML (other lines untouched); returns the reloaded
    config. The whole file is validated by the pipeline's own loader before it replaces the old one."""
    path = cfg.config_path
    if path is None:
        raise BuilderError("segments: this config was not loaded from a file; nowhere to save")
    text = splice_segment(path.read_text(), name, defn)
    tmp = path.with_name(f".{path.name}.incoming")
    tmp.write_text(text)
    try:
        load_config(tmp)  # the pipeline's own validation, on exactly the text to be written
    except ConfigError as exc:
        tmp.unlink(missing_ok=True)
        raise BuilderError(str(exc).replace(str(tmp.resolve()), str(path))) from None
    os.replace(tmp, path)
    return load_config(path)


def save_query(cfg: TenantConfig, name: str, sql: str, description: str = "", overwrite: bool = False) -> Path:
    """Write a saved query (queries.folder/<name>.sql) after checking it as `cdp run` will."""
    if cfg.queries is None:
        raise BuilderError("queries: the tenant config has no queries folder (add `queries: {folder: queries}`)")
    if not QUERY_NAME.match(name or ""):
        raise BuilderError(f"queries.{name or '(unnamed)'}: query names must be lowercase identifiers "
                           "([a-z][a-z0-9_]*); they become table names")
    text = sql.strip() + "\n"
    if description and not re.match(r"\s*--", text):
        text = f"-- {description.strip().splitlines()[0]}\n" + text
    try:
        parse_presto(text, source=f"queries.{name}")
    except QueryError as exc:
        raise BuilderError(str(exc)) from None
    folder = cfg.resolve(cfg.queries.folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.sql"
    if path.exists() and not overwrite:
        raise BuilderError(f"queries.{name}: {path.name} already exists in {folder}; tick 'replace' to overwrite")
    tmp = folder / f".{name}.sql.incoming"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def yaml_text(name: str, defn: dict) -> str:
    return yaml.safe_dump({"segments": {name or "draft": defn}}, sort_keys=False, default_flow_style=None)
