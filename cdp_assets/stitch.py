"""Stage 2 - Stitch: identity resolution across every customer source with Splink.

  domain.<customer sources> -> stitch.blocklist + stitch.unified_preprocessed_raw
                            -> (Splink: train, predict, cluster)
                            -> stitch.unified_scores + stitch.unified_coalesced

Every source record gets a `cdp_id`; records of the same person share it. The id is derived
from the cluster's lowest record key, so unchanged input gives the same ids.
"""


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
MATCH_COLUMNS = ["given_name", "given_name_alias", "surname", "email", "phone", "birthdate",
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

    A value is detected automatically when more records than `max_people_per_value` with
    different given names carry it (households of 2-4 stay below the default of 5).
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
    for field in ("email", "phone", "address"):
        shared = (pd.DataFrame({"value": records[field], "given": given}).dropna(subset=["value"])
                  .groupby("value").agg(people=("given", "nunique"), records=("given", "size")))
        auto = shared[shared["people"] > bl.max_people_per_value]
        for value, r in auto.iterrows():
            rows.append({"field": field, "value": value,
                         "reason": f"shared by {int(r['people'])} different names "
                                   f"(> max_people_per_value {bl.max_people_per_value})",
                         "records_touched": int(r["records"])})
    out = pd.DataFrame(rows, columns=["field", "value", "reason", "records_touched"])
    return out.drop_duplicates(subset=["field", "value"], keep="first").reset_index(drop=True)


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
    return m[["unique_id", "source", "pk", *MATCH_COLUMNS]]


# ---- Splink model -------------------------------------------------------------------------------

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
            cll.JaroWinklerLevel("given_name", 0.92),
            cll.JaroWinklerLevel("given_name", 0.8),
            cll.ElseLevel(),
        ],
        comparison_description="Given name: exact, nickname, fuzzy",
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
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.DateOfBirthComparison("birthdate", input_is_string=False),
            cl.CustomComparison(
                output_column_name="address",
                comparison_levels=[
                    cll.NullLevel("address"),
                    cll.ExactMatchLevel("address"),
                    cll.JaroWinklerLevel("address", 0.9),
                    cll.ElseLevel(),
                ],
                comparison_description="Street address"),
            cl.ExactMatch("postal"),
            cl.ExactMatch("loyalty_id"),
        ],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source", "pk"],
    )


def train_and_predict(prepared: pd.DataFrame, cfg: TenantConfig, model_path: Path | None = None):
    """Train the Splink model (u by random sampling, m by EM), score candidate pairs and
    cluster them. Returns (scores, clusters, model_json, timings)."""
    from splink import DuckDBAPI, Linker, block_on

    timings = {}
    t0 = time.perf_counter()
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register(prepared, table_name="unified_preprocessed")
    linker = Linker(sdf, splink_settings(cfg), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email", "surname"), block_on("phone", "given_name"), block_on("loyalty_id")],
        recall=0.7)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=cfg.stitch.u_sampling_max_pairs, seed=cfg.stitch.seed)
    for rule in (block_on("email"), block_on("surname", "birthdate"), block_on("phone")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    timings["train_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=cfg.stitch.score_threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=cfg.stitch.match_threshold)
    scores = predictions.as_pandas_dataframe()
    clusters_df = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    timings["predict_cluster_s"] = round(time.perf_counter() - t0, 2)
    model = linker.misc.save_model_to_json(str(model_path) if model_path else None, overwrite=True)
    con.close()
    return scores, clusters_df, model, timings


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
    out = pd.DataFrame({
        "source_l": scores["source_l"], "pk_l": scores["pk_l"],
        "source_r": scores["source_r"], "pk_r": scores["pk_r"],
        "match_weight": scores["match_weight"].round(4),
        "match_probability": scores["match_probability"].round(6),
        "linked": scores["match_probability"] >= threshold,
        "same_cdp_id": scores["unique_id_l"].map(id_of).values == scores["unique_id_r"].map(id_of).values,
        "match_key": scores.get("match_key"),
    })
    for c in gamma_cols:
        out[c.replace("gamma_", "level_")] = scores[c]
    for side in ("l", "r"):
        for col in ("given_name", "surname", "email", "phone", "birthdate", "postal"):
            if f"{col}_{side}" in scores.columns:
                out[f"{col}_{side}"] = scores[f"{col}_{side}"]
    return out.sort_values(["match_probability", "source_l", "pk_l", "source_r", "pk_r"],
                           ascending=[False, True, True, True, True]).reset_index(drop=True)


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
