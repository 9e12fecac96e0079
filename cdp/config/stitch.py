"""`stitch:` - identity resolution (Splink): match thresholds, the junk-value blocklist,
household protections and the deterministic rules that link records outright."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from cdp.config.common import StrictModel


class Blocklist(StrictModel):
    emails: list[str] = Field(default_factory=list,
                              description="emails never used as evidence (placeholders such as "
                                          "none@none.com), compared as the sources standardise emails; "
                                          "also left out of the Profile API's lookups")
    phones: list[str] = Field(default_factory=list,
                              description="phone numbers never used as evidence (a store's phone), read "
                                          "as the sources standardise phones, in the tenant's country; "
                                          "also left out of the Profile API's lookups")
    addresses: list[str] = Field(default_factory=list, description="street lines, e.g. a store's address")
    names: list[str] = Field(default_factory=list,
                             description="names never used as evidence (test, unknown), removed as a "
                                         "given name or a surname alike, case-insensitively; a blocked "
                                         "given name takes its nickname alias with it")
    max_people_per_value: int = Field(
        default=5, ge=2,
        description="an email, phone or address carried by more different people than this is junk")


DETERMINISTIC_FIELDS = ("email", "phone", "loyalty_id", "given_name", "surname", "birthdate",
                        "address", "postal", "city")
IDENTIFIER_FIELD = re.compile(r"^(national_id|other_id|other_id_[a-z][a-z0-9_]{0,40})$")


class StitchSettings(StrictModel):
    match_threshold: float = Field(default=0.9, gt=0, lt=1,
                                   description="pairs at or above this match probability are linked")
    score_threshold: float = Field(default=0.01, ge=0, lt=1,
                                   description="pairs below this probability are not kept in unified_scores")
    u_sampling_max_pairs: int = Field(
        default=2_000_000, ge=10_000,
        description="random record pairs Splink samples to estimate the u probabilities when the "
                    "model is trained: more is steadier and slower. A saved model is reused, so a "
                    "change takes effect when it is next trained (no saved model, a changed design "
                    "or retrain)")
    seed: int = Field(default=42, description="random seed of Splink's u sampling when the model is "
                                              "trained and of the random clusters sampled into "
                                              "stitch.detailed_examples")
    blocklist: Blocklist = Field(default_factory=Blocklist,
                                 description="junk values never used as evidence: those listed, plus "
                                             "the emails, phones and addresses detected as shared by too "
                                             "many people (stitch.blocklist lists both)")
    labels: str | None = Field(
        default=None, description="CSV of analyst labels (source_l, pk_l, source_r, pk_r, label: "
                                  "match|no_match, note), relative to the config; overrides the model")
    households: Literal["auto"] | bool = Field(
        default="auto",
        description="household protections: the model alone never links two records whose given "
                    "names conflict, and birth dates further apart than birthdate_gap_days never "
                    "share a cdp_id. auto: on when the data shows households - records that share "
                    "an address, phone or email under different given names are mostly born years "
                    "apart (family members), not the same person with a changed name")
    birthdate_gap_days: int | None = Field(
        default=366, ge=0,
        description="with household protections on: records whose birth dates are further apart "
                    "than this never share a cdp_id (a typo stays within a year; two family "
                    "members do not); null to disable")
    max_pairs_per_record: float = Field(
        default=20, gt=0,
        description="a blocking rule is used for prediction only if it yields at most this many "
                    "candidate pairs per record, and with the rules kept before it (strict rules "
                    "first) too, whose pairs may always reach a million in all (a broad rule such "
                    "as 'same birth date' helps on small data and is skipped where it would "
                    "compare too many pairs)")
    max_cluster_size: int = Field(default=25, ge=2,
                                  description="clusters larger than this are flagged by an asset check")
    detailed_examples: int = Field(default=50, ge=0,
                                   description="clusters sampled into stitch.detailed_examples")
    incremental: bool = Field(
        default=False,
        description="stitch only what changed since the last run: the new, changed and deleted "
                    "records (and those whose blocklisted values or initial keys changed standing) "
                    "are preprocessed, scored against every record with the saved model and "
                    "re-clustered with the people they touch; everyone else keeps their rows and "
                    "cdp_ids untouched. The first run, a new model, changed Stitch settings or "
                    "labels, and every full_rebuild_every-th run are full")
    full_rebuild_every: int = Field(
        default=10, ge=1,
        description="with incremental: after this many incremental runs the next run re-stitches "
                    "every record (refreshing term frequencies, misspelt nicknames and scores of "
                    "untouched pairs) and lists in stitch.reconciliation the records whose cluster "
                    "the incremental runs had differently")
    deterministic_rules: list[list[str]] = Field(
        default_factory=lambda: [["loyalty_id"], ["email"]],
        description="records equal on every field of a rule are linked outright, when the value "
                    "belongs to one person (given names agree) - e.g. [[loyalty_id], [email, surname]], "
                    "[[national_id]]. A default rule on a field the tenant does not have is left out")

    @field_validator("households", mode="before")
    @classmethod
    def _households_setting(cls, v):
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"{v!r} is not one of: auto, true, false")

    @field_validator("deterministic_rules")
    @classmethod
    def _known_match_fields(cls, v: list[list[str]]) -> list[list[str]]:
        for i, rule in enumerate(v):
            if not rule:
                raise ValueError(f"rule {i} is empty: list one or more fields")
            for name in rule:
                if name not in DETERMINISTIC_FIELDS and not IDENTIFIER_FIELD.match(name):
                    raise ValueError(f"rule {i}: {name!r} cannot be matched on; expected one of: "
                                     f"{', '.join(DETERMINISTIC_FIELDS)}, national_id, other_id, "
                                     "other_id_<name>")
        return v
