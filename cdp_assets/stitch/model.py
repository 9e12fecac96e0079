"""Stitch, step 2: the Splink model - settings, training, versioned artefacts, scoring, charts.

The model is trained once (u by random sampling, corrected for the true duplicates a random
sample holds; m by EM) and saved as a versioned JSON file. Later runs reuse the current version
unless retraining is asked for or the model's settings changed.
"""

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from ..config import TenantConfig
from ..scale_out import duckdb_dialect_model, is_spark, model_for_engine, splink_db_api
from .preprocess import MATCH_COLUMNS

# A given-name disagreement (not equal, not a nickname, not a likely typo) is near-proof of two
# different people: household members share address, phone, surname and sometimes email.
GIVEN_NAME_CONFLICT_M = 1e-9
# ... and a veto: the model alone never links such a pair. The fixed m above is not enough at
# scale: with a million records u of an exact email or address is so small that a household's
# shared family email + address + surname outweighs it (2,531 of 3,105 such links were wrong).
# A deterministic rule or an analyst label still links them.
MODEL_VETO = "gamma_given_name = 0"
# u estimated from random pairs may fall at most this far below the sampled value.
U_CORRECTION_FLOOR = 0.05
# No level is treated as impossible for a true match: EM on clean training blocks drives m to
# ~1e-25 for e.g. a surname disagreement, which would veto a married name forever.
M_FLOOR = 0.001


# ---- settings -----------------------------------------------------------------------------------

def _given_name_comparison():
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="given_name",
        comparison_levels=[
            cll.NullLevel("given_name"),
            cll.ExactMatchLevel("given_name").configure(tf_adjustment_column="given_name"),
            cll.ExactMatchLevel("given_name_alias").configure(label_for_charts="Nickname match"),
            cll.DamerauLevenshteinLevel("given_name", 1).configure(label_for_charts="One typo"),
            cll.JaroWinklerLevel("given_name", 0.88).configure(label_for_charts="Similar given names"),
            cll.ElseLevel().configure(m_probability=GIVEN_NAME_CONFLICT_M, fix_m_probability=True,
                                      label_for_charts="Conflicting given names"),
        ],
        comparison_description="Given name: exact, nickname, one typo, similar; a conflict is "
                               "strong evidence against",
    )


def _email_comparison():
    """Exact email; same mailbox name at another provider; a typo; different."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="email",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email"),
            cll.ExactMatchLevel("email_user").configure(label_for_charts="Same user name, other domain"),
            # Damerau-Levenshtein on whole emails is ~60x slower in DuckDB than Jaro-Winkler.
            # The numbers in a mailbox tell namesakes apart (john.smith12 / john.smith21): a
            # typo keeps them.
            cll.CustomLevel("jaro_winkler_similarity(email_l, email_r) >= 0.95 and "
                            "regexp_replace(email_l, '[^0-9]', '', 'g') = "
                            "regexp_replace(email_r, '[^0-9]', '', 'g')",
                            label_for_charts="Near-identical (typo), same numbers"),
            cll.ElseLevel(),
        ],
        comparison_description="Email: exact, same user name, typo")


def _location_comparison():
    """Street address and postal code as one piece of evidence (they are not independent)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    address_jw = "jaro_winkler_similarity(address_l, address_r)"
    return cl.CustomComparison(
        output_column_name="location",
        comparison_levels=[
            cll.CustomLevel("(address_l is null or address_r is null) and "
                            "(postal_l is null or postal_r is null)").configure(is_null_level=True),
            cll.CustomLevel("address_l = address_r and (postal_l = postal_r or postal_l is null "
                            "or postal_r is null)", label_for_charts="Same address"),
            cll.CustomLevel(f"{address_jw} >= 0.88 and postal_l = postal_r",
                            label_for_charts="Similar address, same postal"),
            cll.CustomLevel("postal_l = postal_r", label_for_charts="Same postal code only"),
            cll.ElseLevel(),
        ],
        comparison_description="Street address + postal code")


def _incomplete_name_side(a: str, b: str, key: str = "name_key_full") -> str:
    """SQL: record `a` has a mailbox but lacks a given name or surname; record `b` has `key`."""
    return (f"(email_letters_{a} is not null and (given_name_{a} is null or surname_{a} is null) "
            f"and {key}_{b} is not null)")


def _email_spells_name(a: str, b: str, keys: tuple[str, ...]) -> str:
    return (f"({_incomplete_name_side(a, b, keys[0])} and email_letters_{a} in "
            f"({', '.join(f'{k}_{b}' for k in keys)}))")


def _either_way(keys: tuple[str, ...]) -> str:
    return f"{_email_spells_name('l', 'r', keys)} or {_email_spells_name('r', 'l', keys)}"


def _name_in_email_comparison():
    """An email-only record (a newsletter sign-up: a mailbox and perhaps a first name) against a
    record with a full name: does the mailbox spell that name, or that name with an initial
    ('mpoole', 'maryp') where only one person in the postal code fits it? Only records whose own
    name is incomplete are compared this way, so a full name is never counted twice."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    from .preprocess import INITIAL_KEYS, NAME_KEYS

    full, initials = tuple(NAME_KEYS), tuple(INITIAL_KEYS)
    return cl.CustomComparison(
        output_column_name="name_in_email",
        comparison_levels=[
            cll.CustomLevel(f"not ({_incomplete_name_side('l', 'r')} or {_incomplete_name_side('r', 'l')})"
                            ).configure(is_null_level=True),
            cll.CustomLevel(_either_way(full), label_for_charts="Mailbox spells the other's full name"),
            cll.CustomLevel(" or ".join(_either_way((k,)) for k in initials),
                            label_for_charts="Mailbox spells the other's name with an initial"),
            cll.ElseLevel(),
        ],
        comparison_description="Mailbox of a record without a full name vs the other's full name")


def _name_in_email_blocking_rules() -> list[str]:
    """Pairs in one postal code whose mailbox spells the other's name, for records without a
    full name: an equi-join on the spelled key and the postal code (both orientations: dedupe
    compares each pair once). Without the postal code a common name ('mary.poole') pairs every
    sign-up with every namesake in the country: at a million records that costs precision."""
    from .preprocess import INITIAL_KEYS, NAME_KEYS

    rules = []
    for key in (*NAME_KEYS, *INITIAL_KEYS):
        for a, b in (("l", "r"), ("r", "l")):
            rules.append(f"{a}.email_letters = {b}.{key} and {a}.postal = {b}.postal "
                         f"and ({a}.given_name is null or {a}.surname is null)")
    return rules


def splink_settings(cfg: TenantConfig):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=0.0001,
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("loyalty_id"),
            block_on("surname", "birthdate"),
            block_on("given_name_alias", "birthdate"),
            block_on("surname", "postal"),
            block_on("given_name_alias", "postal"),
            block_on("address", "postal"),
            *_name_in_email_blocking_rules(),
        ],
        comparisons=[
            _given_name_comparison(),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            _email_comparison(),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birthdate", input_is_string=False),
            _location_comparison(),
            cl.ExactMatch("loyalty_id"),
            _name_in_email_comparison(),
        ],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source", "pk"],
    )


def settings_fingerprint(cfg: TenantConfig) -> str:
    """Hash of everything that defines the model except its trained parameters."""
    settings = splink_settings(cfg).create_settings_dict(sql_dialect_str="duckdb")
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- training -----------------------------------------------------------------------------------

# Deterministic-looking rules for the prior (lambda), and the EM sessions: each comparison is
# estimated in at least one session that does not block on it.
LAMBDA_RULES = (("email", "surname"), ("phone", "given_name"), ("loyalty_id",))
EM_RULES = (("given_name_alias", "surname"), ("birthdate",), ("email", "surname"), ("email",))

SCRATCH = "stitch_scratch"


@contextlib.contextmanager
def splink_scratch(con):
    """Splink's own tables go to an in-memory catalog attached to con, never into the warehouse
    file; our tables (temp tables) and the warehouse stay visible while it works. (Spark: its
    temp views are already out of the lakehouse.)"""
    if is_spark(con):
        yield con
        return
    home = con.execute("select current_database()").fetchall()[0][0]
    con.execute(f"attach if not exists ':memory:' as {SCRATCH}")
    con.execute(f"use {SCRATCH}")
    try:
        yield con
    finally:
        con.execute(f'use "{home}"')


def _linker(con, table: str, settings):
    """A Splink linker over `table` of connection con (read in place, not copied)."""
    from splink import Linker

    db_api = splink_db_api(con)
    if is_spark(con):
        if not isinstance(settings, dict):
            settings = settings.create_settings_dict(sql_dialect_str="duckdb")
        settings = model_for_engine(settings, con)
    sdf = db_api.register(table, table_name="unified_preprocessed")
    return Linker(sdf, settings, log_level=logging.ERROR), db_api


def train_model(con, table: str, cfg: TenantConfig) -> tuple[dict, float, list[dict]]:
    """Estimate lambda, u (random sampling) and m (EM) on the records of `table`; return the
    calibrated model, seconds, and the EM sessions that could not run on this data."""
    from splink import block_on

    t0 = time.perf_counter()
    with splink_scratch(con):
        linker, _ = _linker(con, table, splink_settings(cfg))
        linker.training.estimate_probability_two_random_records_match(
            [block_on(*cols) for cols in LAMBDA_RULES], recall=0.7)
        linker.training.estimate_u_using_random_sampling(
            max_pairs=cfg.stitch.u_sampling_max_pairs, seed=cfg.stitch.seed)
        skipped = []
        for cols in EM_RULES:
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(block_on(*cols))
            except ValueError as exc:
                # On small data a session's pairs can all be near-certain non-matches (a family
                # email shared by people with conflicting given names), and EM then drives an m to
                # exactly 0, which Splink refuses. The other sessions still estimate every m.
                skipped.append({"blocked_on": list(cols), "reason": str(exc).split(". ")[0]})
        trained = linker.misc.save_model_to_json(None)
        if is_spark(con):  # saved in DuckDB SQL, whichever engine trained it
            trained = duckdb_dialect_model(trained, splink_settings(cfg).create_settings_dict(
                sql_dialect_str="duckdb"))
        model = calibrate(trained)
    return model, time.perf_counter() - t0, skipped


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

def score_pairs(con, table: str, model: dict, threshold: float, out: str = "scores") -> None:
    """Candidate pairs (blocking rules) of `table` scored by the trained model, as view `out`
    of con over Splink's predictions (which stay in the scratch catalog until it is detached)."""
    with splink_scratch(con):
        linker, _ = _linker(con, table, model)
        predictions = linker.inference.predict(threshold_match_probability=threshold)
    scratch = "" if is_spark(con) else f"{SCRATCH}."
    con.execute(f"create or replace temp view {out} as select * from {scratch}{predictions.physical_name}")


def save_model_charts(model: dict, folder: Path) -> dict[str, Path]:
    """The model's match-weight and m/u charts as standalone HTML (libraries inlined: they open
    offline). They depend on the model alone."""
    con = duckdb.connect()
    try:
        columns = [f"{c} {'date' if c == 'birthdate' else 'varchar'}"
                   for c in ("unique_id", "source", "pk", *MATCH_COLUMNS)]
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
        _sample_term_frequencies(con, linker, db_api, table, model, sorted({u for p in sample_pairs for u in p}))
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


def _sample_term_frequencies(con, linker, db_api, table: str, model: dict, unique_ids: list[str]) -> None:
    """Register term-frequency lookups holding only the values of the sample records (computed
    as Splink does: share of non-null values), instead of tabulating whole columns."""
    columns = sorted({lvl["tf_adjustment_column"] for comp in model["comparisons"]
                      for lvl in comp["comparison_levels"] if lvl.get("tf_adjustment_column")})
    for column in columns:
        name = f"_waterfall_tf_{column}"
        con.execute(f"""
            create or replace table {name} as
            select {column}, cast(count(*) as float8) / (select count({column}) from {table}) as tf_{column}
            from {table}
            where {column} in (select {column} from {table} where unique_id in (select unnest(?)))
            group by {column}""", [unique_ids])
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
