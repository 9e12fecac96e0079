"""`segments:` - the segment grammar: conditions on tables with a cdp_id, references to other
segments, and all / any / not of rules; plus the check that segments do not refer in a cycle."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, model_validator

from cdp.config.common import StrictModel


SEGMENT_OPS = ("=", "!=", "<", "<=", ">", ">=", "between", "in", "is_null", "not_null", "contains")
Scalar = Union[bool, int, float, date, str]


class SegmentRule(StrictModel):
    """One node of a segment: a condition (column op value on a table with a cdp_id), a reference
    to another segment, or all / any / not of other rules."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table: str = Field(default="c360.customer_360", description="schema.table holding cdp_id and the column")
    column: Optional[str] = Field(
        default=None, description="a condition: the column of `table` tested with `op` and `value`. "
                                  "Save for is_null, a person whose value is null does not meet it; "
                                  "on a table with several rows per person, one row meeting it (and "
                                  "`where`) is enough")
    op: Optional[Literal[SEGMENT_OPS]] = Field(
        default=None, description="a condition's test: a comparison with `value`; between: inclusive; "
                                  "in: any of the listed values; is_null / not_null; contains: an "
                                  "element of a list column, else a case-insensitive substring of the "
                                  "column's value as text")
    value: Any = Field(default=None, description="what the column is compared with: one number, text, "
                                                 "date or boolean; [low, high] for between; a non-empty "
                                                 "list for in; omitted for is_null and not_null")
    where: dict[str, Scalar] = Field(default_factory=dict,
                                     description="column = value filters on the same row, e.g. "
                                                 "{product_category: Bakery} on the propensity table")
    segment: Optional[str] = Field(default=None, description="another segment's name")
    all: Optional[list["SegmentRule"]] = Field(default=None,
                                               description="rules that must all hold (and)")
    any: Optional[list["SegmentRule"]] = Field(default=None,
                                               description="rules of which at least one must hold (or)")
    not_: Optional["SegmentRule"] = Field(
        default=None, alias="not",
        description="a rule that must not hold; a person for whom it is unknown (a null value) is in")

    @model_validator(mode="after")
    def _one_form(self) -> "SegmentRule":
        forms = [f for f in ("column", "segment", "all", "any", "not_") if getattr(self, f) is not None]
        if len(forms) != 1:
            raise ValueError("a segment rule is exactly one of: a condition (column, op, value), "
                             "segment: NAME, all: [...], any: [...], not: {...}")
        if self.column is not None:
            if self.op is None:
                raise ValueError(f"condition on {self.column!r} needs an op: one of {', '.join(SEGMENT_OPS)}")
            v = self.value
            if self.op in ("is_null", "not_null"):
                if v is not None:
                    raise ValueError(f"op {self.op} takes no value")
            elif self.op == "between":
                if not (isinstance(v, list) and len(v) == 2 and all(_is_scalar(x) for x in v)):
                    raise ValueError("op between needs value: [low, high]")
            elif self.op == "in":
                if not (isinstance(v, list) and v and all(_is_scalar(x) for x in v)):
                    raise ValueError("op in needs value: a non-empty list")
            elif not _is_scalar(v):
                raise ValueError(f"op {self.op} needs one value (a number, text, date or boolean)")
        if self.all is not None and not self.all or self.any is not None and not self.any:
            raise ValueError("all / any need at least one rule")
        return self

    def referenced_segments(self) -> set[str]:
        refs = {self.segment} if self.segment else set()
        for child in (self.all or []) + (self.any or []) + ([self.not_] if self.not_ else []):
            refs |= child.referenced_segments()
        return refs


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float, str, date))


class Segment(SegmentRule):
    description: str = Field(default="", description="free text about the audience, shown and edited "
                                                     "in the workspace's segment form")


def _segment_cycle(segments: dict[str, Segment]) -> list[str] | None:
    """A cycle of segment references (as a path), if any."""
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]):
        if state.get(name) == 1:
            return path[path.index(name):] + [name]
        if state.get(name) == 2 or name not in segments:
            return None
        state[name] = 1
        for ref in sorted(segments[name].referenced_segments()):
            found = visit(ref, path + [name])
            if found:
                return found
        state[name] = 2
        return None

    for n in segments:
        found = visit(n, [])
        if found:
            return found
    return None
