"""Stage 2 - Stitch: identity resolution across every customer source with Splink.

  domain.<customer sources> -> stitch.blocklist + stitch.unified_preprocessed_raw
                            -> (Splink: train, predict, cluster)
                            -> stitch.unified_scores + stitch.unified_coalesced

Every source record gets a `cdp_id`; records of the same person share it. The id is derived
from the cluster's lowest record key, so unchanged input gives the same ids.
"""


import difflib
import json
import logging
import time
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from . import standardize as std
from .config import TenantConfig
from .warehouse import preview_md, replace_table

GROUP = "stitch"
CDP_ID_NAMESPACE = uuid.UUID("6f1c9a52-3b0e-4d8e-9c55-0c4d2b7f0a11")
MATCH_COLUMNS = ["given_name", "given_name_alias", "surname", "email", "email_user", "phone", "birthdate",
                 "address", "postal", "city", "state", "loyalty_id"]

# Common English nicknames -> formal given name; lets 'Bob Smith' match 'Robert Smith'.
NICKNAMES = {
    "bob": "robert", "rob": "robert", "bobby": "robert", "robbie": "robert", "bill": "william",
    "will": "william", "billy": "william", "liam": "william", "jim": "james", "jimmy": "james",
    "jamie": "james", "mike": "michael", "mick": "michael", "dave": "david", "joe": "joseph",
    "joey": "joseph", "tom": "thomas", "tommy": "thomas", "chris": "christopher",
    "dan": "daniel", "danny": "daniel", "matt": "matthew", "tony": "anthony", "steve": "steven",
    "andy": "andrew", "drew": "andrew", "rick": "richard", "rich": "richard", "dick": "richard",
    "ed": "edward", "eddie": "edward", "ted": "edward", "ben": "benjamin", "sam": "samuel",
    "nick": "nicholas", "alex": "alexander", "greg": "gregory", "jon": "jonathan",
    "josh": "joshua", "ken": "kenneth", "larry": "lawrence", "ron": "ronald", "don": "donald",
    "tim": "timothy", "pat": "patricia", "patty": "patricia", "liz": "elizabeth",
    "beth": "elizabeth", "betty": "elizabeth", "lizzie": "elizabeth", "eliza": "elizabeth",
    "kate": "katherine", "katie": "katherine", "kathy": "katherine", "cathy": "catherine",
    "jen": "jennifer", "jenny": "jennifer", "sue": "susan", "susie": "susan", "meg": "margaret",
    "maggie": "margaret", "peggy": "margaret", "becky": "rebecca", "becca": "rebecca",
    "debbie": "deborah", "deb": "deborah", "barb": "barbara", "cindy": "cynthia",
    "mandy": "amanda", "jess": "jessica", "jessie": "jessica", "vicky": "victoria",
    "tori": "victoria", "abby": "abigail", "chuck": "charles", "charlie": "charles",
    "hank": "henry", "harry": "henry", "jack": "john", "johnny": "john", "frank": "francis",
    "fred": "frederick", "al": "albert", "gene": "eugene", "jeff": "jeffrey", "jerry": "gerald",
    "manny": "manuel", "nate": "nathan", "pete": "peter", "ray": "raymond", "walt": "walter",
    "stan": "stanley", "terry": "terrence", "val": "valerie", "ginny": "virginia",
    "mary": "mary", "molly": "mary", "polly": "mary", "sandy": "sandra", "stephie": "stephanie",
    "steph": "stephanie", "tina": "christina", "chrissy": "christina", "kim": "kimberly",
    "angie": "angela", "nancy": "ann", "annie": "ann", "anne": "ann", "sally": "sarah",
    "sara": "sarah", "allie": "alison", "ally": "alison", "dot": "dorothy", "dottie": "dorothy",
    "lou": "louis", "louie": "louis", "wes": "wesley", "zach": "zachary", "zack": "zachary",
    "ali": "alison", "kris": "kristen", "mel": "melissa", "missy": "melissa", "nicky": "nicole",
    "nikki": "nicole", "pam": "pamela", "tammy": "tamara", "trish": "patricia", "vince": "vincent",
}


def cdp_id_for(tenant: str, anchor_record: str) -> str:
    """A stable, opaque person id derived from the cluster's anchor record."""
    return str(uuid.uuid5(CDP_ID_NAMESPACE, f"{tenant}:{anchor_record}"))


# ---- preprocessing ------------------------------------------------------------------------------

def load_customer_records(con, cfg: TenantConfig) -> pd.DataFrame:
    union = " union all ".join(f'select * from domain."{s}"' for s in cfg.customer_sources)
    return con.execute(f"select * from ({union}) order by source, pk").df()


def _blocklist_value(field: str, values: list[str]) -> pd.Series:
    s = pd.Series(values, dtype=object)
    if field == "email":
        return std.email(s)
    if field == "phone":
        return std.phone(s)
    return std.name(s).str.lower()


def build_blocklist(records: pd.DataFrame, cfg: TenantConfig) -> pd.DataFrame:
    """Values never used as evidence: configured junk plus values shared by too many people.

    A value is detected automatically when it is carried by more than `max_people_per_value`
    different people, judged by given names with nicknames and typos folded together
    (households of 2-4 stay below the default of 5).
    """
    bl = cfg.stitch.blocklist
    rows = []
    given = records["given_name"].str.lower()
    for field, configured in (("email", bl.emails), ("phone", bl.phones), ("given_name", bl.names),
                              ("surname", bl.names)):
        column = records[field] if field in ("email", "phone") else records[field].str.lower()
        for value in _blocklist_value(field, configured).dropna().unique():
            rows.append({"field": field, "value": value, "reason": "configured",
                         "records_touched": int((column == value).sum())})
    aliases = given.map(lambda g: NICKNAMES.get(g, g) if isinstance(g, str) else None)
    for field in ("email", "phone", "address"):
        pairs = pd.DataFrame({"value": records[field], "given": aliases}).dropna()
        spread = pairs.groupby("value")["given"].nunique()
        for value in spread[spread > bl.max_people_per_value].index:
            people = count_distinct_people(pairs.loc[pairs["value"] == value, "given"])
            if people > bl.max_people_per_value:
                rows.append({"field": field, "value": value,
                             "reason": f"shared by {people} different people "
                                       f"(> max_people_per_value {bl.max_people_per_value})",
                             "records_touched": int((records[field] == value).sum())})
    out = pd.DataFrame(rows, columns=["field", "value", "reason", "records_touched"])
    return out.drop_duplicates(subset=["field", "value"], keep="first").reset_index(drop=True)


def count_distinct_people(given_names: pd.Series) -> int:
    """Distinct people behind a set of given names, counting spelling variants once
    ('Kathy', 'Kathhy' and 'Katherine' -> 1), so a household of four with typos stays four."""
    groups: list[str] = []
    for name in sorted(set(given_names), key=lambda n: (-len(n), n)):
        if not any(difflib.SequenceMatcher(None, name, g).ratio() >= 0.8 for g in groups):
            groups.append(name)
    return len(groups)


def preprocess_for_matching(records: pd.DataFrame, blocklist: pd.DataFrame) -> pd.DataFrame:
    """Exactly what the matcher sees per record: lowercased names, nickname aliases, and
    blocklisted values removed."""
    m = pd.DataFrame({
        "unique_id": records["source"] + "|" + records["pk"],
        "source": records["source"],
        "pk": records["pk"],
        "given_name": records["given_name"].str.lower(),
        "surname": records["surname"].str.lower(),
        "email": records["email"],
        "phone": records["phone"],
        "birthdate": pd.to_datetime(records["birthdate"]),
        "address": records["address"],
        "postal": records["postal"],
        "city": records["city"].str.lower(),
        "state": records["state"],
        "loyalty_id": records["loyalty_id"],
    })
    m["given_name_alias"] = m["given_name"].map(lambda g: NICKNAMES.get(g, g) if isinstance(g, str) else None)
    for field, values in blocklist.groupby("field")["value"]:
        m.loc[m[field].isin(set(values)), field] = None
        if field == "given_name":
            m.loc[m["given_name"].isna(), "given_name_alias"] = None
    m["email_user"] = m["email"].str.split("@").str[0]
    return m[["unique_id", "source", "pk", *MATCH_COLUMNS]]


# ---- Splink model -------------------------------------------------------------------------------

# A given-name disagreement (not equal, not a nickname, not a likely typo) is near-proof of two
# different people: household members share address, phone, surname and sometimes email.
GIVEN_NAME_CONFLICT_M = 1e-9


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
            # Damerau-Levenshtein on whole emails is ~60x slower in DuckDB than Jaro-Winkler
            cll.JaroWinklerLevel("email", 0.95).configure(label_for_charts="Near-identical (typo)"),
            cll.ElseLevel(),
        ],
        comparison_description="Email: exact, same user name, typo")


def splink_settings(cfg: TenantConfig):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    given_name = cl.CustomComparison(
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
        ],
        comparisons=[
            given_name,
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            _email_comparison(),
            cl.ExactMatch("phone"),
            cl.DateOfBirthComparison("birthdate", input_is_string=False),
            _location_comparison(),
            cl.ExactMatch("loyalty_id"),
        ],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source", "pk"],
    )


# ---- deterministic links ------------------------------------------------------------------------

def deterministic_links(prepared: pd.DataFrame, rules: list[list[str]]) -> pd.DataFrame:
    """Pairs linked outright by a rule: equal, non-null values on every field of the rule, and
    the value belongs to one person (the given names that carry it are one name, allowing
    nicknames and typos), so a family email or a shared loyalty card links nobody.

    Returns unique_id_l, unique_id_r, deterministic_rule (a star per group: n-1 edges)."""
    edges = []
    for rule in rules:
        keyed = prepared.dropna(subset=rule)
        if keyed.empty:
            continue
        key = keyed[rule].astype(str).agg("\x1f".join, axis=1)
        groups = pd.DataFrame({"key": key, "unique_id": keyed["unique_id"],
                               "given": keyed["given_name_alias"]})
        size = groups.groupby("key")["unique_id"].transform("size")
        groups = groups[size > 1]
        names = groups.dropna(subset=["given"]).groupby("key")["given"].unique()
        shared = {k for k, v in names.items() if len(v) > 1 and count_distinct_people(pd.Series(v)) > 1}
        groups = groups[~groups["key"].isin(shared)].sort_values(["key", "unique_id"])
        anchor = groups.groupby("key")["unique_id"].transform("first")
        pairs = groups[groups["unique_id"] != anchor]
        edges.append(pd.DataFrame({"unique_id_l": anchor[pairs.index], "unique_id_r": pairs["unique_id"],
                                   "deterministic_rule": "same " + " + ".join(rule)}))
    if not edges:
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r", "deterministic_rule"])
    out = pd.concat(edges, ignore_index=True)
    return out.drop_duplicates(subset=["unique_id_l", "unique_id_r"]).reset_index(drop=True)


def train_and_predict(prepared: pd.DataFrame, cfg: TenantConfig, model_path: Path | None = None):
    """Train the Splink model (u by random sampling, m by EM), score candidate pairs and
    cluster them. Returns (scores, clusters, model_json, timings)."""
    from splink import DuckDBAPI, Linker, block_on
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    timings = {}
    t0 = time.perf_counter()
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register(prepared, table_name="unified_preprocessed")
    linker = Linker(sdf, splink_settings(cfg), log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email", "surname"), block_on("phone", "given_name"), block_on("loyalty_id")],
        recall=0.7)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=cfg.stitch.u_sampling_max_pairs, seed=cfg.stitch.seed)
    for rule in (block_on("given_name_alias", "surname"), block_on("birthdate"),
                 block_on("email", "surname")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    model = correct_u_for_true_matches(linker.misc.save_model_to_json(None))
    linker = Linker(sdf, model, log_level=logging.ERROR)
    timings["train_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=cfg.stitch.score_threshold)
    scores = predictions.as_pandas_dataframe()
    rules = deterministic_links(prepared, cfg.stitch.deterministic_rules)
    scores = attach_deterministic(scores, rules)
    edges = scores[["unique_id_l", "unique_id_r", "match_probability", "deterministic_rule"]].copy()
    edges["linked"] = (edges["match_probability"] >= cfg.stitch.match_threshold) | \
        edges["deterministic_rule"].notna()
    clusters = cluster_pairwise_predictions_at_threshold(
        prepared[["unique_id"]], edges.loc[edges["linked"], ["unique_id_l", "unique_id_r"]],
        db_api, node_id_column_name="unique_id")
    clusters_df = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    timings["predict_cluster_s"] = round(time.perf_counter() - t0, 2)
    timings["deterministic_links"] = int(len(rules))
    if model_path:
        model_path.write_text(json.dumps(model, indent=2))
    con.close()
    return scores, clusters_df, model, timings


def attach_deterministic(scores: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Scored pairs with the deterministic rule that links them (if any); rule pairs Splink did
    not score are added with a null probability."""
    scores = scores.copy()
    if rules.empty:
        scores["deterministic_rule"] = None
        return scores
    flipped = rules.rename(columns={"unique_id_l": "unique_id_r", "unique_id_r": "unique_id_l"})
    both = pd.concat([rules, flipped], ignore_index=True).drop_duplicates(["unique_id_l", "unique_id_r"])
    scores = scores.merge(both, on=["unique_id_l", "unique_id_r"], how="left")
    seen = set(zip(scores["unique_id_l"], scores["unique_id_r"]))
    unscored = rules[[(l, r) not in seen and (r, l) not in seen
                      for l, r in zip(rules["unique_id_l"], rules["unique_id_r"])]]
    return pd.concat([scores, unscored], ignore_index=True)


# u estimated from random pairs may fall at most this far below the sampled value.
U_CORRECTION_FLOOR = 0.05
# No level is treated as impossible for a true match: EM on clean training blocks drives m to
# ~1e-25 for e.g. a surname disagreement, which would veto a married name forever.
M_FLOOR = 0.001


def correct_u_for_true_matches(model: dict) -> dict:
    """Remove the true matches hidden in Splink's random-sample u estimates.

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


def assign_cdp_ids(prepared: pd.DataFrame, clusters: pd.DataFrame, tenant: str) -> pd.DataFrame:
    """One cdp_id per cluster, derived from its lowest record key; singletons included."""
    df = prepared[["unique_id"]].merge(clusters, on="unique_id", how="left")
    df["cluster_id"] = df["cluster_id"].fillna(df["unique_id"])
    anchor = df.groupby("cluster_id")["unique_id"].transform("min")
    df["cdp_id"] = anchor.map(lambda a: cdp_id_for(tenant, a))
    return df[["unique_id", "cdp_id"]]


def shape_scores(scores: pd.DataFrame, ids: pd.DataFrame, threshold: float) -> pd.DataFrame:
    id_of = ids.set_index("unique_id")["cdp_id"]
    gamma_cols = [c for c in scores.columns if c.startswith("gamma_")]
    left = scores["unique_id_l"].str.split("|", n=1)
    right = scores["unique_id_r"].str.split("|", n=1)
    out = pd.DataFrame({
        "source_l": left.str[0], "pk_l": left.str[1],
        "source_r": right.str[0], "pk_r": right.str[1],
        "match_weight": scores["match_weight"].round(4),
        "match_probability": scores["match_probability"].round(6),
        "deterministic_rule": scores["deterministic_rule"],
        "linked": (scores["match_probability"] >= threshold) | scores["deterministic_rule"].notna(),
        "same_cdp_id": scores["unique_id_l"].map(id_of).values == scores["unique_id_r"].map(id_of).values,
        "match_key": scores.get("match_key"),
    })
    for c in gamma_cols:
        out[c.replace("gamma_", "level_")] = scores[c]
    for side in ("l", "r"):
        for col in ("given_name", "surname", "email", "phone", "birthdate", "address", "postal"):
            if f"{col}_{side}" in scores.columns:
                out[f"{col}_{side}"] = scores[f"{col}_{side}"]
    return out.sort_values(["match_probability", "source_l", "pk_l", "source_r", "pk_r"],
                           ascending=[False, True, True, True, True],
                           na_position="first").reset_index(drop=True)


# ---- Dagster assets -----------------------------------------------------------------------------

def build_stitch_definitions(cfg: TenantConfig) -> tuple[list, list]:
    customer_keys = [dg.AssetKey(["domain", s]) for s in cfg.customer_sources]
    artefacts = cfg.warehouse_path.parent / "stitch_artefacts"

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(["stitch", "blocklist"], group_name=GROUP, kinds={"duckdb"},
                         description="Values never used as matching evidence: configured junk plus "
                                     "values shared by too many different people, with the reason "
                                     "and how many records they touched.", deps=customer_keys),
            dg.AssetSpec(["stitch", "unified_preprocessed_raw"], group_name=GROUP, kinds={"duckdb"},
                         description="Exactly what the matcher sees per source record, after "
                                     "standardisation, nickname aliasing and blocklisting.",
                         deps=customer_keys),
        ],
    )
    def stitch_preprocess(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
        with warehouse.get_connection() as con:
            records = load_customer_records(con, cfg)
            blocklist = build_blocklist(records, cfg)
            prepared = preprocess_for_matching(records, blocklist)
            replace_table(con, "stitch", "blocklist", blocklist)
            replace_table(con, "stitch", "unified_preprocessed_raw", prepared)
        yield dg.MaterializeResult(asset_key=["stitch", "blocklist"], metadata={
            "dagster/row_count": len(blocklist), "preview": dg.MetadataValue.md(preview_md(blocklist, 10))})
        yield dg.MaterializeResult(asset_key=["stitch", "unified_preprocessed_raw"], metadata={
            "dagster/row_count": len(prepared), "preview": dg.MetadataValue.md(preview_md(prepared))})

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(["stitch", "unified_scores"], group_name=GROUP, kinds={"duckdb", "splink"},
                         deps=[["stitch", "unified_preprocessed_raw"]],
                         description="Scored candidate pairs: both records, match weight, match "
                                     "probability, per-comparison levels and whether they were linked."),
            dg.AssetSpec(["stitch", "unified_coalesced"], group_name=GROUP, kinds={"duckdb", "splink"},
                         deps=[["stitch", "unified_preprocessed_raw"]],
                         description="One row per source customer record with its `cdp_id` and the "
                                     "standardised PII: the input of merge rules and every customer 360."),
        ],
    )
    def stitch_match(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
        with warehouse.get_connection() as con:
            prepared = con.execute("select * from stitch.unified_preprocessed_raw").df()
        artefacts.mkdir(parents=True, exist_ok=True)
        scores, clusters, model, timings = train_and_predict(
            prepared, cfg, artefacts / "splink_model.json")
        ids = assign_cdp_ids(prepared, clusters, cfg.tenant)
        unified_scores = shape_scores(scores, ids, cfg.stitch.match_threshold)
        with warehouse.get_connection() as con:
            replace_table(con, "stitch", "unified_scores", unified_scores)
            con.register("_ids", ids)
            con.execute("begin transaction")
            con.execute("""
                create or replace table stitch.unified_coalesced as
                select i.cdp_id, r.source, r.pk, r.given_name, r.surname, r.full_name, r.email,
                       r.phone, r.address, r.city, r.state, r.postal, r.country, r.birthdate,
                       r.gender, r.loyalty_id, r.created_at, r.updated_at
                from (%s) r join _ids i on i.unique_id = r.source || '|' || r.pk
                order by i.cdp_id, r.source, r.pk""" % " union all ".join(
                f'select * from domain."{s}"' for s in cfg.customer_sources))
            con.execute("commit")
            con.unregister("_ids")
            records = con.execute("select count(*) from stitch.unified_coalesced").fetchone()[0]
            people = con.execute("select count(distinct cdp_id) from stitch.unified_coalesced").fetchone()[0]
            sizes = con.execute("""select max(n), avg(n) from (select count(*) n from
                                   stitch.unified_coalesced group by cdp_id)""").fetchone()
            coalesced_preview = preview_md(con.execute(
                "select * from stitch.unified_coalesced limit 5").df())
        context.log.info(f"stitch: {records} records -> {people} people; timings {timings}")
        yield dg.MaterializeResult(asset_key=["stitch", "unified_scores"], metadata={
            "dagster/row_count": len(unified_scores),
            "linked_pairs": int(unified_scores["linked"].sum()),
            "deterministic_pairs": int(unified_scores["deterministic_rule"].notna().sum()),
            "match_threshold": cfg.stitch.match_threshold,
            "splink_model": dg.MetadataValue.path(str(artefacts / "splink_model.json")),
            "m_u_parameters": dg.MetadataValue.json(_m_u_summary(model)),
            "preview": dg.MetadataValue.md(preview_md(unified_scores)),
            **{k: v for k, v in timings.items()}})
        yield dg.MaterializeResult(asset_key=["stitch", "unified_coalesced"], metadata={
            "dagster/row_count": records,
            "people": people,
            "records_per_person": round(records / max(people, 1), 3),
            "largest_cluster": int(sizes[0] or 0),
            "preview": dg.MetadataValue.md(coalesced_preview)})

    @dg.asset_check(asset=dg.AssetKey(["stitch", "unified_coalesced"]),
                    name="every_domain_record_once",
                    description="Every customer domain row appears exactly once in unified_coalesced.")
    def every_domain_record_once(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        union = " union all ".join(f"select source, pk from domain.\"{s}\"" for s in cfg.customer_sources)
        with warehouse.get_connection() as con:
            missing, duplicated, extra = con.execute(f"""
                with d as ({union}),
                     u as (select source, pk, count(*) n from stitch.unified_coalesced group by all)
                select (select count(*) from d anti join u using (source, pk)),
                       (select count(*) from u where n > 1),
                       (select count(*) from u anti join d using (source, pk))""").fetchone()
        return dg.AssetCheckResult(passed=missing == duplicated == extra == 0, metadata={
            "domain_records_missing": missing, "records_duplicated": duplicated,
            "records_not_in_domain": extra})

    return [stitch_preprocess, stitch_match], [every_domain_record_once]


def _m_u_summary(model: dict) -> dict:
    out = {}
    for comp in model.get("comparisons", []):
        levels = {}
        for lvl in comp.get("comparison_levels", []):
            if lvl.get("is_null_level"):
                continue
            levels[lvl.get("label_for_charts", lvl.get("sql_condition"))] = {
                "m": round(lvl["m_probability"], 4) if lvl.get("m_probability") is not None else None,
                "u": round(lvl["u_probability"], 6) if lvl.get("u_probability") is not None else None}
        out[comp.get("output_column_name")] = levels
    return out


# ---- quality against ground truth (benchmarks and tests) ------------------------------------

def pairwise_quality(assigned: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pairwise precision / recall / F1 of cdp_id assignments against true person ids.

    assigned: source, pk, cdp_id; truth: source, pk, person_id (records missing from either
    side are ignored, e.g. quarantined rows).
    """
    df = assigned.merge(truth, on=["source", "pk"], how="inner")

    def pairs(counts: pd.Series) -> int:
        return int((counts * (counts - 1) // 2).sum())

    predicted = pairs(df.groupby("cdp_id").size())
    actual = pairs(df.groupby("person_id").size())
    true_pos = pairs(df.groupby(["cdp_id", "person_id"]).size())
    precision = true_pos / predicted if predicted else 1.0
    recall = true_pos / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"records": len(df), "people_true": int(df["person_id"].nunique()),
            "people_found": int(df["cdp_id"].nunique()), "pairs_true": actual,
            "pairs_predicted": predicted, "pairs_correct": true_pos,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
