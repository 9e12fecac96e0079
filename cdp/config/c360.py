"""`merge:` and `databases:` - the customer 360 databases: how each profile field is chosen among
a person's records (merge rules) and which records count as one person (stitch mode)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cdp.config.common import StrictModel
from cdp.config.tags import ADDRESS_GROUP, ATTRIBUTE_FIELD, PROFILE_FIELDS


MergeRuleName = Literal["source_priority", "most_recent", "most_frequent", "longest", "first_seen",
                        "max", "min", "all_values"]
# Rules that choose one record by themselves (the fallback of source_priority and all_values).
FallbackRuleName = Literal["most_recent", "most_frequent", "longest", "first_seen", "max", "min"]
# Rules a field group (the address) can be merged with: they rank whole records.
GROUP_RULES = ("source_priority", "most_recent", "most_frequent", "longest", "first_seen")


class MergeRule(StrictModel):
    rule: MergeRuleName = Field(
        default="most_recent",
        description="the field takes the value of the person's first record, in this rule's order, "
                    "that has one. source_priority: records of `sources` first, in list order, then "
                    "`fallback`; most_recent: latest update time (then create time); first_seen: "
                    "earliest create time; most_frequent: the value most records carry; longest: the "
                    "longest value; max / min: largest / smallest (dates: latest / earliest); "
                    "all_values (fields only): every distinct value in <field>__all, the primary one "
                    "by `fallback`")
    sources: list[str] = Field(default_factory=list,
                               description="for source_priority: sources in order of trust")
    fallback: FallbackRuleName = Field(
        default="most_recent",
        description="source_priority: the rule among records of unlisted sources; all_values: the "
                    "rule that picks the field's primary value beside the full list")


class MergeSettings(StrictModel):
    default: MergeRule = Field(default_factory=MergeRule,
                               description="the rule of every profile field and attribute without one "
                                           "in `fields` (not all_values); the address group takes "
                                           "most_recent instead of max or min")
    fields: dict[str, MergeRule] = Field(
        default_factory=dict,
        description="a field's own rule: a profile field (given_name, surname, email, phone, "
                    "birthdate, gender, loyalty_id), address_group (street, city, state, postal and "
                    "country, taken together from one record) or attr_<attribute>. full_name is "
                    "built from the merged given_name and surname")

    @field_validator("default")
    @classmethod
    def _default_picks_one(cls, v: MergeRule) -> MergeRule:
        if v.rule == "all_values":
            raise ValueError("all_values is a rule for a field (fields.<field>), not the default")
        return v

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: dict[str, MergeRule]) -> dict[str, MergeRule]:
        for name, rule in v.items():
            if name not in PROFILE_FIELDS and name != "address_group" and not ATTRIBUTE_FIELD.match(name):
                raise ValueError(f"{name!r} is not a profile field; expected one of: "
                                 f"address_group, {', '.join(PROFILE_FIELDS)}, attr_<attribute>")
            if name in ADDRESS_GROUP[1:]:
                raise ValueError(f"{name!r} is merged with its address: set a rule on 'address_group'")
            if name in ("address_group", "address") and rule.rule not in GROUP_RULES:
                raise ValueError(f"{name}: the address group is taken from one record; its rule must "
                                 f"be one of {', '.join(GROUP_RULES)}, not {rule.rule!r}")
            if name == "full_name":
                raise ValueError("full_name is built from the merged given_name and surname; "
                                 "set rules on those")
        return v

    def rule_for(self, field: str) -> MergeRule:
        if field in ADDRESS_GROUP:
            rule = self.fields.get("address_group") or self.fields.get("address") or self.default
            return rule if rule.rule in GROUP_RULES else MergeRule()
        return self.fields.get(field, self.default)

    def dbt_rules(self, attributes: tuple[str, ...] | list[str] = ()) -> dict[str, dict]:
        """field -> {rule, sources, fallback} for every profile field and attribute column, as the
        dbt macros take it."""
        rules = {}
        for field in (*PROFILE_FIELDS, *attributes):
            rule = self.rule_for(field)
            rules[field] = {"rule": rule.rule, "sources": rule.sources, "fallback": rule.fallback}
        return rules


StitchMode = Literal["probabilistic", "deterministic"]
# Schemas cdp's own stages write to: a customer 360 database cannot take their names.
RESERVED_SCHEMAS = ("domain", "stitch", "interactions", "custom", "activation", "main", "sources")


class Database(StrictModel):
    """A customer 360 database: its own schema, merge rules and way of grouping records."""
    description: str = Field(default="", description="free text shown with the database in the "
                                                     "workspace's customer 360 page and in the dbt docs "
                                                     "of its models")
    stitch_mode: StitchMode | float = Field(
        default="probabilistic",
        description="probabilistic: the cdp_id of Stitch; deterministic: only records linked by a "
                    "deterministic rule or an analyst's match label are one person; a number: "
                    "links at or above that match probability (>= stitch.match_threshold) count")
    merge: MergeSettings = Field(default_factory=MergeSettings,
                                 description="how each profile field is chosen among a person's "
                                             "records in this database")

    @field_validator("stitch_mode")
    @classmethod
    def _threshold(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"a match-probability threshold must be between 0 and 1, not {v}")
        return v
