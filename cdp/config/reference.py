"""The tenant config reference (docs/config-reference.md), rendered from the pydantic models.

The models in `cdp.config` are the one source of truth for what a tenant YAML may say: their
field types, defaults and `Field(description=...)` texts. This module walks `TenantConfig`
and writes every section and field as Markdown, so the reference cannot drift from the code;
`tests/unit/test_config_reference.py` fails when the committed page is stale.

    python -m cdp.config.reference            # print the reference
    python -m cdp.config.reference --write    # regenerate docs/config-reference.md

Only `cdp.config` is imported (not its submodules), so the page follows the models wherever
they live inside the package. The output is deterministic: sections in the order fields first
lead to them, fields in their declaration order.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel, Discriminator, Tag
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cdp.config import REQUIRED_TAGS, TAGS_BY_KIND, TenantConfig
from cdp.config.common import StrictModel

REFERENCE_PATH = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
REGENERATE = "python -m cdp.config.reference --write"

# The placeholder a map's key takes in a section's path, by the field holding the map.
KEY_PLACEHOLDERS = {
    "sources": "<source>", "attributes": "<column>", "fields": "<field>", "databases": "<database>",
    "destinations": "<destination>", "segments": "<segment>", "orchestrations": "<orchestration>",
    "columns": "<column>", "where": "<column>", "conf": "<setting>",
}
CONSTRAINTS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
               (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="),
               (annotated_types.MinLen, "min_length", "at least {} items"),
               (annotated_types.MaxLen, "max_length", "at most {} items"))


@dataclass
class Section:
    """One model of the config and the YAML paths it is found at."""
    model: type[BaseModel]
    paths: list[str] = field(default_factory=list)
    tag: str | None = None          # the discriminator value of a destination kind

    @property
    def anchor(self) -> str:
        return self.model.__name__.lower()


# ---- types -----------------------------------------------------------------------------------

def _strip_annotated(tp: Any) -> tuple[Any, list]:
    """The type inside Annotated[...] and its metadata."""
    if typing.get_origin(tp) is Annotated:
        inner, *meta = typing.get_args(tp)
        inner, more = _strip_annotated(inner)
        return inner, meta + more
    return tp, []


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _union_tags(args: tuple) -> list[tuple[Any, str | None]]:
    """Union members with their discriminator Tag, if any."""
    out = []
    for arg in args:
        inner, meta = _strip_annotated(arg)
        out.append((inner, next((m.tag for m in meta if isinstance(m, Tag)), None)))
    return out


def type_text(tp: Any) -> str:
    """A short, readable name of a field's type; models link to their section."""
    tp, meta = _strip_annotated(tp)
    if tp is type(None):
        return "null"
    if _is_model(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(f"`{json.dumps(a)}`" for a in args)
    if _is_union(tp):
        members = _union_tags(args)
        if any(isinstance(m, Discriminator) for m in meta):
            return "one of " + ", ".join(f"{type_text(t)} (kind `{tag}`)" for t, tag in members)
        return " | ".join(type_text(t) for t, _ in members)
    if origin in (list, tuple, set):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {type_text(args[0])} to {type_text(args[1])}" if args else "map"
    if tp is Any:
        return "any"
    if tp is date:
        return "date (YYYY-MM-DD)"
    return getattr(tp, "__name__", str(tp))


def nested_models(tp: Any, path: str, name: str) -> list[tuple[type[BaseModel], str, str | None]]:
    """The models a field's type holds, each with the YAML path it is found at."""
    tp, _ = _strip_annotated(tp)
    if _is_model(tp):
        return [(tp, path, None)]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        found = []
        for member, tag in _union_tags(args):
            found += [(m, p, tag or t) for m, p, t in nested_models(member, path, name)]
        return found
    if origin in (list, tuple, set) and args:
        return nested_models(args[0], f"{path}[]", name)
    if origin is dict and args:
        return nested_models(args[1], f"{path}.{KEY_PLACEHOLDERS.get(name, '<name>')}", name)
    return []


# ---- fields ----------------------------------------------------------------------------------

def yaml_fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """The fields a tenant YAML may set on a model (by their YAML name), in declaration order."""
    return [(info.alias or name, info) for name, info in model.model_fields.items() if not info.exclude]


def _value_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "see its section"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value, default=str)}`"


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _value_text(info.default_factory())
    return "" if info.default is PydanticUndefined else _value_text(info.default)


def constraint_text(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for cls, attr, fmt in CONSTRAINTS:
            if isinstance(meta, cls):
                value = getattr(meta, attr)
                parts.append(fmt.format(value) if "{}" in fmt else f"{fmt} {value}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def field_row(name: str, info: FieldInfo) -> str:
    description = info.description or ""
    if limits := constraint_text(info):
        description = f"{description} ({limits})" if description else limits
    return (f"| `{name}` | {_cell(type_text(info.annotation))} | "
            f"{_cell(default_text(info))} | {_cell(description)} |")


def model_doc(model: type[BaseModel]) -> str:
    """The model's own docstring, or that of the cdp model it extends (never pydantic's)."""
    for cls in model.__mro__:
        if not cls.__module__.startswith("cdp.") or cls is StrictModel:
            break  # StrictModel's docstring is about every section, not this one
        if doc := cls.__dict__.get("__doc__"):
            return inspect.cleandoc(doc)
    return ""


# ---- sections --------------------------------------------------------------------------------

def collect_sections(root: type[BaseModel] = TenantConfig) -> list[Section]:
    """Every model reachable from the root, each right after the section that first leads to it,
    with every path it is found at (up to four)."""
    sections: dict[type[BaseModel], Section] = {root: Section(root, ["(top level)"])}
    order = [root]

    def visit(model: type[BaseModel], prefix: str) -> None:
        found = []
        for name, info in yaml_fields(model):
            for child, path, tag in nested_models(info.annotation, f"{prefix}{name}", name):
                if child not in sections:
                    sections[child] = Section(child, tag=tag)
                    found.append((child, path))
                if path not in sections[child].paths and len(sections[child].paths) < 4:
                    sections[child].paths.append(path)
        for child, path in found:
            order.append(child)
            visit(child, f"{path}.")

    visit(root, "")
    return [sections[model] for model in order]


def render_section(section: Section) -> list[str]:
    model = section.model
    title = "The tenant file" if model is TenantConfig else f"`{section.paths[0]}`"
    if section.tag:
        title += f" with `kind: {section.tag}`"
    lines = [f'<a id="{section.anchor}"></a>', "", f"## {title} ({model.__name__})", ""]
    if model is not TenantConfig:
        lines += ["Found at: " + ", ".join(f"`{p}`" for p in section.paths) + ".", ""]
    if doc := model_doc(model):
        lines += [doc, ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    lines += [field_row(name, info) for name, info in yaml_fields(model)]
    return lines + [""]


def render_tags() -> list[str]:
    lines = ["## Semantic tags", "",
             "What `sources.<source>.columns` may map a column to, by the source's `kind`, and the",
             "domain column each tag becomes. Required tags must be present. A customers source",
             "may also tag `other-id:<name>` (column `other_id_<name>`), any number of times.", "",
             "| kind | tag | domain column | required |", "|---|---|---|---|"]
    for kind, tags in TAGS_BY_KIND.items():
        required = REQUIRED_TAGS.get(kind, ())
        for tag, column in tags.items():
            lines.append(f"| `{kind.value}` | `{tag}` | `{column}` | {'yes' if tag in required else ''} |")
    return lines + [""]


def render_reference() -> str:
    """docs/config-reference.md: every section and field of the tenant config."""
    sections = collect_sections()
    lines = ["# Tenant config reference", "",
             f"<!-- Generated from the pydantic models in cdp/config by `{REGENERATE}`; do not edit. -->",
             "",
             "A tenant is one YAML file (e.g. `tenants/demo/tenant.yaml`); paths in it are relative to",
             "the file's folder. `cdp check-config PATH` validates it; an error names the file and the",
             "field. [Getting started](getting-started.md) walks through writing one; this page lists",
             "every setting. A field without a default is required where its section is used.", "",
             "Sections:", ""]
    lines += [f"- [`{s.paths[0]}`](#{s.anchor})" + (f" with `kind: {s.tag}`" if s.tag else "")
              + f" ({s.model.__name__})" for s in sections[1:]]
    lines += ["- [Semantic tags](#semantic-tags)", ""]
    for section in sections:
        lines += render_section(section)
    lines += render_tags()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {REFERENCE_PATH.name}")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.write:
        REFERENCE_PATH.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE_PATH.write_text(text)
        print(f"wrote {REFERENCE_PATH}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
