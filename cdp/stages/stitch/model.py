"""Stitch, step 2: the Splink model - settings, training, versioned artefacts, scoring, charts.

The model is trained once (u by random sampling, corrected for the true duplicates a random
sample holds; m by EM) and saved as a versioned JSON file. Later runs reuse the current version
unless retraining is asked for or the model's settings changed.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cdp.config import TenantConfig
from cdp.engine import warehouse_of
from cdp.engine.duckdb import local_connection
from cdp.stages.stitch.design import Design
from cdp.stages.stitch.preprocess import match_columns

# No level is treated as impossible for a true match: EM on clean training blocks drives m to
# ~1e-25 for e.g. a surname disagreement, which would veto a married name forever.
M_FLOOR = 0.001
# u estimated from random pairs may fall at most this far below the sampled value.
U_CORRECTION_FLOOR = 0.05
# With household protections on (design.households), the model alone never links a pair whose
# given names conflict: a household's shared surname, address, phone and family email are not
# independent evidence, and at a million records their tiny u outweighs any learned m of a
# given-name conflict (and EM blocked on an address learns the household as the 'match' class:
# on pseudopeople's census it put m of a given-name conflict at 0.38). Not even a shared birth
# date lifts it: twins, and a relative's date given by mistake. A rule or a label still links.
HOUSEHOLD_VETO = "gamma_given_name = 0"
DESIGN_KEY = "cdp_design"      # the design a model was trained with, saved beside Splink's settings
# The prior when no near-deterministic rule finds a pair: Splink's own default
DEFAULT_PRIOR = 0.0001
LAMBDA_RECALL = 0.7


# ---- settings -----------------------------------------------------------------------------------

def _level(sql: str, label: str, **configure):
    import splink.comparison_level_library as cll

    return cll.CustomLevel(sql, label_for_charts=label).configure(**configure) if configure else \
        cll.CustomLevel(sql, label_for_charts=label)


SWAPPED = "given_name_l = surname_r and surname_l = given_name_r"


def _given_name_comparison(design: Design):
    """Given name: exact, nickname, one typo, similar, swapped with the surname; a conflict is
    evidence against, its weight learned like any other (households: see HOUSEHOLD_VETO)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    levels = [cll.NullLevel("given_name"),
              cll.ExactMatchLevel("given_name").configure(tf_adjustment_column="given_name"),
              cll.ExactMatchLevel("given_name_alias").configure(label_for_charts="Nickname match"),
              cll.DamerauLevenshteinLevel("given_name", 1).configure(label_for_charts="One typo"),
              cll.JaroWinklerLevel("given_name", 0.88).configure(label_for_charts="Similar given names")]
    if design.has("surname"):
        levels.append(_level(SWAPPED, "Given name and surname swapped"))
    levels.append(cll.ElseLevel().configure(label_for_charts="Conflicting given names"))
    return cl.CustomComparison(output_column_name="given_name", comparison_levels=levels,
                               comparison_description="Given name: exact, nickname, one typo, similar, "
                                                      "swapped with the surname")


def _surname_comparison(design: Design):
    """Surname: exact, similar. Names swapped with the given name are one piece of evidence,
    weighed in the given-name comparison: here such a pair counts as not comparable (a null
    level, weight 0), or the swap would be counted twice."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    levels = [cll.NullLevel("surname"),
              cll.ExactMatchLevel("surname").configure(tf_adjustment_column="surname")]
    if design.has("given_name"):
        levels.append(cll.CustomLevel(SWAPPED, label_for_charts="Swapped with the given name "
                                      "(weighed in given_name)").configure(is_null_level=True))
    levels += [cll.JaroWinklerLevel("surname", t) for t in (0.92, 0.88, 0.7)]
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name="surname", comparison_levels=levels,
                               comparison_description="Surname: exact, similar")


def _email_comparison():
    """Exact email; same mailbox name at another provider; a typo; different. A mailbox that only
    spells the person's name ('mary.poole' at gmail and at yahoo) is what every namesake writes:
    beyond an exact match it says nothing the name comparisons have not weighed (a null level,
    weight 0), or namesakes would be linked on their names counted twice."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    # Damerau-Levenshtein on whole emails is ~60x slower in DuckDB than Jaro-Winkler. The numbers
    # in a mailbox tell namesakes apart (john.smith12 / john.smith21): a typo keeps them.
    typo = ("jaro_winkler_similarity(email_l, email_r) >= 0.95 and "
            "regexp_replace(email_l, '[^0-9]', '', 'g') = regexp_replace(email_r, '[^0-9]', '', 'g')")
    return cl.CustomComparison(
        output_column_name="email",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email"),
            cll.CustomLevel(f"(email_user_l = email_user_r or ({typo})) and "
                            "(coalesce(mailbox_is_name_l, false) or coalesce(mailbox_is_name_r, false))",
                            label_for_charts="Same mailbox that only spells the name (weighed in the names)"
                            ).configure(is_null_level=True),
            cll.ExactMatchLevel("email_user").configure(label_for_charts="Same user name, other domain"),
            cll.CustomLevel(typo, label_for_charts="Near-identical (typo), same numbers"),
            cll.ElseLevel(),
        ],
        comparison_description="Email: exact, same user name, typo")


def _location_comparison(design: Design):
    """Street address, postal code and city as one piece of evidence (they are not independent):
    the same street line with the same postal code; the same street line under another postal
    code (a postal typo); the same street, another number; a similar street line in the postal
    code; the postal code alone; the city alone."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    cols = [c for c in ("address", "postal", "city") if design.has(c)]
    if not cols:
        return None
    has_postal = design.has("postal")
    levels = [cll.CustomLevel(" and ".join(f"({c}_l is null or {c}_r is null)" for c in cols)
                              ).configure(is_null_level=True)]
    if design.has("address"):
        if has_postal:
            levels += [_level("address_l = address_r and postal_l = postal_r", "Same address"),
                       _level("address_l = address_r", "Same street line, other or no postal code"),
                       _level("street_name_l = street_name_r and postal_l = postal_r",
                              "Same street, other number, same postal"),
                       _level("jaro_winkler_similarity(address_l, address_r) >= 0.88 and postal_l = postal_r",
                              "Similar address, same postal")]
        else:
            levels += [_level("address_l = address_r", "Same address"),
                       _level("jaro_winkler_similarity(address_l, address_r) >= 0.88", "Similar address")]
    if has_postal:
        levels.append(_level("postal_l = postal_r", "Same postal code"))
    if design.has("city"):
        levels.append(_level("city_l = city_r", "Same city"))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name="location", comparison_levels=levels,
                               comparison_description="Street address + postal code + city")


def _text_comparison(column: str, description: str):
    """A free-text field such as the second address line: exact, similar, different."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(output_column_name=column, comparison_description=description, comparison_levels=[
        cll.NullLevel(column), cll.ExactMatchLevel(column).configure(tf_adjustment_column=column),
        cll.JaroWinklerLevel(column, 0.88), cll.ElseLevel()])


def _identifier_comparison(column: str):
    """An identifier (loyalty card, national id, other id): exact, one typo, different."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(output_column_name=column, comparison_description=f"{column}: exact, one typo",
                               comparison_levels=[
        cll.NullLevel(column), cll.ExactMatchLevel(column),
        cll.DamerauLevenshteinLevel(column, 1).configure(label_for_charts="One typo"), cll.ElseLevel()])


def _incomplete_name_side(a: str, b: str, key: str = "name_key_full") -> str:
    """SQL: record `a` has a mailbox but lacks a given name or surname; record `b` has `key`."""
    return (f"(email_letters_{a} is not null and (given_name_{a} is null or surname_{a} is null) "
            f"and {key}_{b} is not null)")


def _email_spells_name(a: str, b: str, keys: tuple[str, ...]) -> str:
    return (f"({_incomplete_name_side(a, b, keys[0])} and email_letters_{a} in "
            f"({', '.join(f'{k}_{b}' for k in keys)}))")


def _either_way(keys: tuple[str, ...]) -> str:
    return f"{_email_spells_name('l', 'r', keys)} or {_email_spells_name('r', 'l', keys)}"


def _name_in_email_comparison(design: Design):
    """An email-only record (a newsletter sign-up: a mailbox and perhaps a first name) against a
    record with a full name: does the mailbox spell that name, or that name with an initial
    ('mpoole', 'maryp') where only one person in the postal code fits it? Only records whose own
    name is incomplete are compared this way, so a full name is never counted twice. It is
    evidence within one postal code only: elsewhere a common name's mailbox fits every namesake
    in the country (the pair is then not comparable this way, weight 0)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    from cdp.stages.stitch.preprocess import INITIAL_KEYS, NAME_KEYS

    full, initials = tuple(NAME_KEYS), tuple(INITIAL_KEYS)
    spells_full = _either_way(full)
    spells_initial = " or ".join(_either_way((k,)) for k in initials)
    local = " and postal_l = postal_r" if design.has("postal") else ""
    levels = [cll.CustomLevel(f"not ({_incomplete_name_side('l', 'r')} or {_incomplete_name_side('r', 'l')})"
                              ).configure(is_null_level=True),
              cll.CustomLevel(f"({spells_full}){local}", label_for_charts="Mailbox spells the other's full name"),
              cll.CustomLevel(f"({spells_initial}){local}",
                              label_for_charts="Mailbox spells the other's name with an initial")]
    if local:
        levels.append(cll.CustomLevel(f"({spells_full}) or ({spells_initial})",
                                      label_for_charts="Mailbox spells the name, in another postal code"
                                      ).configure(is_null_level=True))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name="name_in_email", comparison_levels=levels,
                               comparison_description="Mailbox of a record without a full name vs the "
                                                      "other's full name, in one postal code")


def comparisons(design: Design) -> list:
    """One comparison per piece of evidence the tenant's data carries."""
    import splink.comparison_library as cl

    out = []
    if design.has("given_name"):
        out.append(_given_name_comparison(design))
    if design.has("surname"):
        out.append(_surname_comparison(design))
    if design.has("email"):
        out.append(_email_comparison())
    if design.has("phone"):
        out.append(cl.ExactMatch("phone").configure(term_frequency_adjustments=True))
    if design.has("birthdate"):
        out.append(cl.DateOfBirthComparison("birthdate", input_is_string=False))
    location = _location_comparison(design)
    if location is not None:
        out.append(location)
    if design.has("address2"):
        out.append(_text_comparison("address2", "Second address line: exact, similar"))
    if design.has("gender"):
        out.append(cl.ExactMatch("gender"))
    out += [_identifier_comparison(c) for c in design.identifiers]
    if design.has("email") and (design.has("given_name") or design.has("surname")):
        out.append(_name_in_email_comparison(design))
    return out


def splink_settings(design: Design):
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=DEFAULT_PRIOR,
        blocking_rules_to_generate_predictions=[r.sql for r in design.blocking_rules],
        comparisons=comparisons(design),
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source", "pk"],
    )


def settings_fingerprint(design: Design) -> str:
    """Hash of everything that defines the model except its trained parameters (and the pair
    counts the design was read off, which move with every delivery)."""
    settings = splink_settings(design).create_settings_dict(sql_dialect_str="duckdb")
    choices = {"settings": settings, "em": [r.sql for r in design.em_sessions],
               "prior": [r.sql for r in design.lambda_rules], "households": design.households["on"],
               "rules": design.deterministic_rules}
    return hashlib.sha256(json.dumps(choices, sort_keys=True, default=str).encode()).hexdigest()[:16]


def household_veto(model: dict) -> str | None:
    """SQL on the scored pairs: those the model alone may not link when the data holds households
    (None when the model compares no given name)."""
    return HOUSEHOLD_VETO if any(c["output_column_name"] == "given_name" for c in model["comparisons"]) else None


def model_design(model: dict) -> Design:
    return Design.from_dict(model[DESIGN_KEY])


# ---- training -----------------------------------------------------------------------------------

def splink_scratch(con):
    """Splink's own tables stay out of the warehouse while it works (DuckDB: an in-memory
    catalog attached to con; Spark: temp views of the session); our tables stay visible."""
    return warehouse_of(con).splink_scratch(con)


def _linker(con, table: str, settings):
    """A Splink linker over `table` of connection con (read in place, not copied)."""
    from splink import Linker

    engine = warehouse_of(con)
    db_api = engine.splink_db_api(con)
    if isinstance(settings, dict) and DESIGN_KEY in settings:
        settings = {k: v for k, v in settings.items() if k != DESIGN_KEY}
    settings = engine.splink_model(settings)
    sdf = db_api.register(table, table_name="unified_preprocessed")
    return Linker(sdf, settings, log_level=logging.ERROR), db_api


def train_model(con, table: str, cfg: TenantConfig, design: Design) -> tuple[dict, float, list[dict]]:
    """Estimate lambda, u (random sampling) and m (EM) on the records of `table`; return the
    calibrated model (with its design), seconds, and the training steps this data could not
    support. A step that fails leaves the model exactly as it was before it."""
    t0 = time.perf_counter()
    skipped: list[dict] = []
    settings = splink_settings(design)
    with splink_scratch(con):
        linker, _ = _linker(con, table, settings)
        prior_known = _estimate_prior(linker, design, skipped)
        linker.training.estimate_u_using_random_sampling(
            max_pairs=cfg.stitch.u_sampling_max_pairs, seed=cfg.stitch.seed)
        for session in design.em_sessions:
            ok = _training_step(linker, f"EM session blocked on {session.name}", skipped, lambda: (
                linker.training.estimate_parameters_using_expectation_maximisation(
                    session.sql, populate_probability_two_random_records_match_from_trained_values=not prior_known)))
            prior_known |= ok
        if not prior_known:
            skipped.append({"step": "prior from EM", "reason": "no EM session ran on this data: Splink's "
                            f"default prior {DEFAULT_PRIOR} is used"})
        trained = linker.misc.save_model_to_json(None)
        # saved in DuckDB SQL, whichever engine trained it
        trained = warehouse_of(con).saved_model(trained, settings)
        model = calibrate(trained)
    untrained = untrained_levels(model)
    if untrained:
        skipped.append({"step": "m estimates", "reason": "no EM session estimated "
                        + "; ".join(untrained) + " - Splink's default m is used"})
    model[DESIGN_KEY] = design.as_dict()
    return model, time.perf_counter() - t0, skipped


def _training_step(linker, step: str, skipped: list[dict], train) -> bool:
    """Run one training step; if Splink raises, put the model back as it was and say why.

    Splink's EM session changes the linker's live settings as it starts (drops the comparisons
    its blocking rule uses, replaces the prior), and a failure after that would leave them so; a
    copy of the settings taken before the step (with every earlier step's trained values, which
    later sessions are averaged with) is put back instead."""
    before = linker._settings_obj.core_model_settings.copy()
    try:
        train()
        return True
    except Exception as exc:  # noqa: BLE001 - any Splink training error: skip the step, say why
        # e.g. no pair of the block left after the blocklist, or EM drives an m to exactly 0
        # on a block of near-certain non-matches (Splink refuses m = 0)
        linker._settings_obj.core_model_settings = before
        skipped.append({"step": step, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        return False


def _estimate_prior(linker, design: Design, skipped: list[dict]) -> bool:
    """The prior from the near-deterministic rules; False when there are none or they find no
    pair (the linker keeps the default, and the first EM session estimates the prior)."""
    step = "prior from near-deterministic rules"
    if not design.lambda_rules:
        skipped.append({"step": step, "reason": "the tenant's columns allow none: the prior is estimated by EM"})
        return False
    ok = _training_step(linker, step, skipped, lambda: linker.training.estimate_probability_two_random_records_match(
        [r.sql for r in design.lambda_rules], recall=LAMBDA_RECALL))
    if ok and not 0 < linker._settings_obj._probability_two_random_records_match < 1:
        linker._settings_obj._probability_two_random_records_match = DEFAULT_PRIOR
        skipped.append({"step": step, "reason": f"no pair matches {' or '.join(r.name for r in design.lambda_rules)}: "
                                                "the prior is estimated by EM"})
        return False
    return ok


def untrained_levels(model: dict) -> list[str]:
    """'comparison: level' of every level whose m no EM session estimated (never seen in any
    session's pairs, or its comparison blocked on in every session)."""
    return [f"{c['output_column_name']}: {lvl.get('label_for_charts') or lvl['sql_condition']}"
            for c in model["comparisons"] for lvl in c["comparison_levels"]
            if not lvl.get("is_null_level") and lvl.get("m_probability") is None]


def calibrate(model: dict) -> dict:
    """Remove the true matches hidden in Splink's random-sample u estimates; floor m.

    Random pairs are assumed to be non-matches, but customer sources duplicate heavily (each
    person appears ~2 times), so among random pairs that agree on an email a large share are
    the same person, and an exact email looks ~20x weaker than it is. The sampled value is
    u_obs = lambda*m + (1 - lambda)*u, so u = (u_obs - lambda*m) / (1 - lambda), kept above
    U_CORRECTION_FLOOR * u_obs and renormalised per comparison. m is kept above M_FLOOR.
    """
    lam = model["probability_two_random_records_match"]
    for comparison in model["comparisons"]:
        for lvl in comparison["comparison_levels"]:
            if lvl.get("m_probability") is not None and not lvl.get("fix_m_probability"):
                lvl["m_probability"] = max(lvl["m_probability"], M_FLOOR)
        levels = [lvl for lvl in comparison["comparison_levels"]
                  if not lvl.get("is_null_level") and lvl.get("u_probability") is not None
                  and not lvl.get("fix_u_probability")]
        for lvl in levels:
            u_obs, m = lvl["u_probability"], lvl.get("m_probability") or 0.0
            lvl["u_probability"] = max((u_obs - lam * m) / (1 - lam), U_CORRECTION_FLOOR * u_obs)
        total = sum(lvl["u_probability"] for lvl in levels)
        for lvl in levels:
            lvl["u_probability"] /= total
    return model


# ---- versioned artefacts ------------------------------------------------------------------------

@dataclass
class ModelVersion:
    version: int
    path: Path
    settings_fingerprint: str
    trained_at: str
    trained_on_records: int

    def load(self) -> dict:
        return json.loads(self.path.read_text())


class ModelStore:
    """`<warehouse dir>/stitch_artefacts/models/model_vNNNN.json` + `current.json` pointing at
    the version in use. Old versions are kept, so a run can be traced to its model."""

    def __init__(self, artefacts: Path):
        self.folder = artefacts / "models"

    def current(self) -> ModelVersion | None:
        pointer = self.folder / "current.json"
        if not pointer.exists():
            return None
        meta = json.loads(pointer.read_text())
        path = self.folder / meta["file"]
        if not path.exists():
            return None
        return ModelVersion(meta["version"], path, meta["settings_fingerprint"], meta["trained_at"],
                            meta["trained_on_records"])

    def versions(self) -> list[Path]:
        return sorted(self.folder.glob("model_v*.json"))

    def save(self, model: dict, fingerprint: str, records: int) -> ModelVersion:
        self.folder.mkdir(parents=True, exist_ok=True)
        latest = self.versions()
        version = int(latest[-1].stem.split("_v")[1]) + 1 if latest else 1
        path = self.folder / f"model_v{version:04d}.json"
        trained_at = pd.Timestamp.now(tz="UTC").isoformat()
        path.write_text(json.dumps(model, indent=2))
        meta = {"version": version, "file": path.name, "settings_fingerprint": fingerprint,
                "trained_at": trained_at, "trained_on_records": records}
        tmp = self.folder / ".current.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(self.folder / "current.json")
        return ModelVersion(version, path, fingerprint, trained_at, records)


def model_summary(model: dict) -> dict:
    """m, u and match weight per comparison level, for the asset's metadata."""
    import math

    out = {"probability_two_random_records_match": model["probability_two_random_records_match"]}
    for comp in model.get("comparisons", []):
        levels = {}
        for lvl in comp.get("comparison_levels", []):
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            levels[lvl.get("label_for_charts", lvl.get("sql_condition"))] = {
                "m": round(m, 5) if m is not None else None,
                "u": round(u, 7) if u is not None else None,
                "weight": round(math.log2(m / u), 2) if m and u else None}
        out[comp.get("output_column_name")] = levels
    return out


# ---- scoring ------------------------------------------------------------------------------------

# records on the left side of one prediction chunk, once there are more than CHUNK_ABOVE records
# (each chunk blocks again: at 1,000,739 records two chunks cost 6 s more than one pass, whose
# wide rows fit in memory there; at 10M one pass spilled ~40 GB)
PREDICT_CHUNK_RECORDS = 1_000_000
CHUNK_ABOVE = 2_000_000


def score_pairs(con, table: str, model: dict, threshold: float, out: str = "scores") -> int:
    """Temp table `out`: the candidate pairs (blocking rules) of `table` scored by the trained
    model - the two ids, match weight and probability, match key and the level of each
    comparison. Splink's own prediction rows also carry both records' compared values (~30
    columns, which its comparison levels need); nothing here reads them, so each chunk's pairs
    are kept thin and its Splink table dropped before the next. Over CHUNK_ABOVE records the
    pairs are scored in chunks of PREDICT_CHUNK_RECORDS left records (Splink's predict_chunk):
    at 10M records the wide predictions of one pass spilled tens of GB. Returns the pairs."""
    engine = warehouse_of(con)
    records = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    chunks = max(1, -(-records // PREDICT_CHUNK_RECORDS)) if records > CHUNK_ABOVE else 1
    with splink_scratch(con):
        linker, _ = _linker(con, table, model)
        for chunk in range(1, chunks + 1):
            predictions = linker.inference.predict_chunk(
                left_chunk=(chunk, chunks), right_chunk=(1, 1),
                threshold_match_probability=threshold, warning_mode="never")
            scored = engine.splink_table(predictions.physical_name)
            gammas = [r[0] for r in con.execute(f"describe {scored}").fetchall() if r[0].startswith("gamma_")]
            con.execute(f"""
                {"create or replace temp table " + out + " as" if chunk == 1 else "insert into " + out}
                select unique_id_l, unique_id_r, match_weight, match_probability,
                       match_key::varchar as match_key{"".join(", " + g for g in gammas)}
                from {scored}""")
            predictions.drop_table_from_database_and_remove_from_cache()
    return con.execute(f"select count(*) from {out}").fetchall()[0][0]


def save_model_charts(model: dict, folder: Path) -> dict[str, Path]:
    """The model's match-weight and m/u charts as standalone HTML (libraries inlined: they open
    offline). They depend on the model alone."""
    con = local_connection()
    try:
        columns = [f"{c} {'date' if c == 'birthdate' else 'boolean' if c == 'mailbox_is_name' else 'varchar'}"
                   for c in ("unique_id", "source", "pk", *match_columns(model_design(model).tenant_identifiers))]
        con.execute(f"create table _schema ({', '.join(columns)})")
        linker, _ = _linker(con, "_schema", model)
        return _write_charts({"match_weights": linker.visualisations.match_weights_chart(),
                              "m_u_parameters": linker.visualisations.m_u_parameters_chart()}, folder)
    finally:
        con.close()


def save_waterfall_chart(con, table: str, model: dict, sample_pairs: list[tuple[str, str]],
                         folder: Path) -> dict[str, Path]:
    """How the match weight of a few sample pairs adds up, as standalone HTML."""
    if not sample_pairs:
        return {}
    # the waterfall needs Splink's per-comparison Bayes factors of the scored pairs
    with splink_scratch(con):
        linker, db_api = _linker(con, table, {**model, "retain_intermediate_calculation_columns": True})
        register_term_frequencies(con, linker, db_api, model, table,
                                  f"select * from {table} where unique_id in (select unnest(?))",
                                  [sorted({u for p in sample_pairs for u in p})], prefix="_waterfall_tf")
        # one Splink call scores every left sample record against every right one; keep the pairs asked for
        sides = []
        for side, uids in (("l", [p[0] for p in sample_pairs]), ("r", [p[1] for p in sample_pairs])):
            con.execute(f"create or replace table _waterfall_{side} as "
                        f"select * from {table} where unique_id in (select unnest(?))", [sorted(set(uids))])
            sides.append(db_api.register(f"_waterfall_{side}", table_name=f"_waterfall_{side}_in"))
        scored = {(str(r["unique_id_l"]), str(r["unique_id_r"])): r
                  for r in linker.inference.score_pairs(*sides).as_record_list()}
        records = [scored[p] for p in map(tuple, sample_pairs) if p in scored]
    if not records:
        return {}
    return _write_charts({"waterfall": linker.visualisations.waterfall_chart(
        records, filter_nulls=False)}, folder)


def register_term_frequencies(con, linker, db_api, model: dict, table: str, needed: str,
                              params: list | tuple = (), prefix: str = "_tf") -> None:
    """Register term-frequency lookups computed over every record of `table` (as Splink does:
    share of non-null values) for only the values that the rows of query `needed` hold,
    instead of tabulating whole columns or the inputs Splink was handed."""
    columns = sorted({lvl["tf_adjustment_column"] for comp in model["comparisons"]
                      for lvl in comp["comparison_levels"] if lvl.get("tf_adjustment_column")})
    if not columns:
        return
    # every column's non-null count in one pass over the records, not one pass per column
    present = dict(zip(columns, con.execute(
        f"select {', '.join(f'count({c})' for c in columns)} from {table}").fetchone()))
    for column in columns:
        name = f"{prefix}_{column}"
        con.execute(f"""
            create or replace table {name} as
            select {column}, cast(count(*) as float8) / {max(int(present[column]), 1)} as tf_{column}
            from {table}
            where {column} in (select {column} from ({needed}))
            group by {column}""", list(params))
        linker.table_management.register_term_frequency_lookup(
            db_api.register(name, table_name=f"{name}_in"), column)


def _write_charts(charts: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, chart in charts.items():
        path = folder / f"{name}.html"
        path.write_text(chart.to_html(inline=True), encoding="utf-8")
        paths[name] = path
    return paths
