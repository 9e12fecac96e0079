"""Stage 2 - Stitch as Dagster assets.

  domain.<customer sources> -> stitch/blocklist + stitch/unified_preprocessed_raw
                            -> stitch/match_model            (train once, reuse the saved version)
                            -> stitch/unified_scores, unified_coalesced, unified_changes_clusters,
                               unified_changes_pks, cdp_id_history, detailed_examples
"""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from ..config import TenantConfig
from ..warehouse import preview_md, replace_table, transaction
from . import clusters as cl
from . import ids as idm
from .model import (ModelStore, model_summary, save_model_charts, save_waterfall_chart, score_pairs,
                    settings_fingerprint, train_model)
from .preprocess import build_blocklist, load_customer_records, preprocess_for_matching

GROUP = "stitch"
KEY = {name: dg.AssetKey(["stitch", name]) for name in (
    "blocklist", "unified_preprocessed_raw", "match_model", "unified_scores", "unified_coalesced",
    "unified_changes_clusters", "unified_changes_pks", "cdp_id_history", "detailed_examples")}


class MatchModelConfig(dg.Config):
    retrain: bool = False
    """Train a new model version even if the current one fits the settings."""


def artefacts_dir(cfg: TenantConfig) -> Path:
    return cfg.warehouse_path.parent / "stitch_artefacts"


def _result(key: str, df: pd.DataFrame | None = None, rows: int | None = None, **metadata):
    meta = {"dagster/row_count": rows if rows is not None else len(df), **metadata}
    if df is not None:
        meta.setdefault("preview", dg.MetadataValue.md(preview_md(df)))
    return dg.MaterializeResult(asset_key=KEY[key], metadata=meta)


def build_stitch_definitions(cfg: TenantConfig) -> tuple[list, list]:
    customer_keys = [dg.AssetKey(["domain", s]) for s in cfg.customer_sources]
    artefacts = artefacts_dir(cfg)
    store = ModelStore(artefacts)

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(KEY["blocklist"], group_name=GROUP, kinds={"duckdb"}, deps=customer_keys,
                         description="Values never used as matching evidence: configured junk plus "
                                     "values carried by too many different people, with the reason "
                                     "and how many records they touched."),
            dg.AssetSpec(KEY["unified_preprocessed_raw"], group_name=GROUP, kinds={"duckdb"},
                         deps=customer_keys,
                         description="Exactly what the matcher sees per source record, after "
                                     "standardisation, nickname aliasing and blocklisting."),
        ],
    )
    def stitch_preprocess(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
        with warehouse.get_connection() as con:
            records = load_customer_records(con, cfg)
            blocklist = build_blocklist(records, cfg)
            prepared = preprocess_for_matching(records, blocklist)
            replace_table(con, "stitch", "blocklist", blocklist)
            replace_table(con, "stitch", "unified_preprocessed_raw", prepared)
        yield _result("blocklist", blocklist, preview=dg.MetadataValue.md(preview_md(blocklist, 20)),
                      configured=int((blocklist["reason"] == "configured").sum()),
                      detected=int((blocklist["reason"] != "configured").sum()))
        yield _result("unified_preprocessed_raw", prepared)

    @dg.asset(key=KEY["match_model"], group_name=GROUP, kinds={"splink", "json"},
              deps=[KEY["unified_preprocessed_raw"]],
              description="The Splink model (Fellegi-Sunter: u by random sampling corrected for "
                          "true matches, m by EM), saved as a versioned JSON artefact. Reused by "
                          "later runs unless its settings change or retrain is set.")
    def match_model(context: dg.AssetExecutionContext, config: MatchModelConfig,
                    warehouse: DuckDBResource) -> dg.MaterializeResult:
        fingerprint = settings_fingerprint(cfg)
        current = store.current()
        reuse = current is not None and current.settings_fingerprint == fingerprint and not config.retrain
        with warehouse.get_connection() as con:  # the records are only read to train
            prepared = con.execute("select * from stitch.unified_preprocessed_raw"
                                   + (" limit 0" if reuse else "")).df()
        train_s = 0.0
        if reuse:
            model = current.load()
            version = current
            context.log.info(f"reusing Splink model v{current.version} ({current.path.name})")
        else:
            why = ("retrain requested" if config.retrain else
                   "no saved model" if current is None else "model settings changed")
            model, train_s = train_model(prepared, cfg)
            version = store.save(model, fingerprint, len(prepared))
            context.log.info(f"trained Splink model v{version.version} in {train_s:.1f}s ({why})")
        charts = save_model_charts(prepared.head(0), model, artefacts / "charts")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(model["comparisons"]),
            "version": version.version, "reused": reuse,
            "model_file": dg.MetadataValue.path(str(version.path)),
            "settings_fingerprint": fingerprint, "trained_at": version.trained_at,
            "trained_on_records": version.trained_on_records, "train_seconds": round(train_s, 2),
            "parameters": dg.MetadataValue.json(model_summary(model)),
            **{f"chart_{name}": dg.MetadataValue.path(str(path)) for name, path in charts.items()},
            "preview": dg.MetadataValue.md(preview_md(pd.DataFrame(
                [{"comparison": c["output_column_name"], "levels": len(c["comparison_levels"]),
                  "description": c.get("comparison_description", "")} for c in model["comparisons"]]),
                10)),
        })

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(KEY["unified_scores"], group_name=GROUP, kinds={"duckdb", "splink"},
                         deps=[KEY["match_model"], KEY["unified_preprocessed_raw"]],
                         description="Scored candidate pairs: both records, match weight, "
                                     "probability, per-comparison levels, the deterministic rule or "
                                     "analyst label that applies, and whether they were linked."),
            dg.AssetSpec(KEY["unified_coalesced"], group_name=GROUP, kinds={"duckdb", "splink"},
                         deps=[KEY["match_model"], KEY["unified_preprocessed_raw"]],
                         description="One row per source customer record with its stable `cdp_id` "
                                     "and the standardised PII: the input of every customer 360."),
            dg.AssetSpec(KEY["unified_changes_clusters"], group_name=GROUP, kinds={"duckdb"},
                         deps=[KEY["match_model"]],
                         description="Per cluster: previous and new id and the change since the "
                                     "last run (new, unchanged, changed, merged, split, retired)."),
            dg.AssetSpec(KEY["unified_changes_pks"], group_name=GROUP, kinds={"duckdb"},
                         deps=[KEY["match_model"]],
                         description="Per source record whose cdp_id changed since the last run "
                                     "(or that arrived or left): old id, new id and why."),
            dg.AssetSpec(KEY["cdp_id_history"], group_name=GROUP, kinds={"duckdb"},
                         deps=[KEY["match_model"]],
                         description="Every record's cdp_id over time (valid_from / valid_to)."),
            dg.AssetSpec(KEY["detailed_examples"], group_name=GROUP, kinds={"duckdb"},
                         deps=[KEY["match_model"]],
                         description="A sample of clusters (largest, changed, random): every record "
                                     "with its PII and the pair scores inside the cluster."),
        ],
    )
    def stitch_match(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
        current = store.current()
        if current is None:
            raise dg.Failure("no Splink model saved yet: materialize stitch/match_model first")
        model = current.load()
        with warehouse.get_connection() as con:
            prepared = con.execute("select * from stitch.unified_preprocessed_raw").df()
            previous, issued = idm.previous_assignment(con)
        t0 = time.perf_counter()
        scored = score_pairs(prepared, model, cfg.stitch.score_threshold)
        rules = cl.deterministic_links(prepared, cfg.stitch.deterministic_rules)
        labels = cl.read_labels(cfg.resolve(cfg.stitch.labels) if cfg.stitch.labels else None,
                                set(prepared["unique_id"]))
        evidence = cl.combine_evidence(scored.scores, rules, labels, cfg.stitch.match_threshold)
        clusters, rebuilt = cl.cluster_records(prepared["unique_id"], evidence, labels)
        assignment = idm.assign_stable_ids(clusters, previous, issued, cfg.tenant)
        cluster_s = time.perf_counter() - t0

        scores = shape_scores(evidence, assignment.ids)
        examples = detailed_examples(prepared, evidence, assignment, cfg.stitch.detailed_examples,
                                     cfg.stitch.seed)
        waterfall = save_waterfall_chart(prepared, model, _borderline_pairs(scores), artefacts / "charts")
        at = pd.Timestamp.now()
        with warehouse.get_connection() as con:
            replace_table(con, "stitch", "unified_scores", scores)
            write_coalesced(con, cfg, assignment.ids)
            replace_table(con, "stitch", "unified_changes_clusters", assignment.clusters)
            replace_table(con, "stitch", "unified_changes_pks", assignment.records)
            opened = idm.record_history(con, assignment.ids, context.run.run_id, at, assignment.records)
            replace_table(con, "stitch", "detailed_examples", examples)
            history_rows = con.execute("select count(*) from stitch.cdp_id_history").fetchone()[0]
            history_preview = con.execute("select * from stitch.cdp_id_history "
                                          "order by valid_from desc, source, pk limit 5").df()
            stats = con.execute("""select count(*), count(distinct cdp_id) from stitch.unified_coalesced""").fetchone()
            sizes = con.execute("""select max(n) from (select count(*) n from stitch.unified_coalesced
                                   group by cdp_id)""").fetchone()
            coalesced_preview = con.execute("select * from stitch.unified_coalesced limit 5").df()
        changes = assignment.clusters["change"].value_counts().to_dict()
        context.log.info(f"stitch: {stats[0]} records -> {stats[1]} people; changes {changes}")
        yield _result("unified_scores", scores,
                      linked_pairs=int(scores["linked"].sum()),
                      deterministic_pairs=int(scores["deterministic_rule"].notna().sum()),
                      labelled_pairs=labels.count, labels_on_unknown_records=labels.unknown_records,
                      components_rebuilt_for_labels=rebuilt,
                      match_threshold=cfg.stitch.match_threshold, model_version=current.version,
                      score_seconds=round(scored.seconds, 2),
                      link_and_cluster_seconds=round(cluster_s - scored.seconds, 2),
                      **{f"chart_{n}": dg.MetadataValue.path(str(p)) for n, p in waterfall.items()})
        yield _result("unified_coalesced", rows=stats[0], people=stats[1],
                      records_per_person=round(stats[0] / max(stats[1], 1), 3),
                      largest_cluster=int(sizes[0] or 0),
                      preview=dg.MetadataValue.md(preview_md(coalesced_preview)))
        yield _result("unified_changes_clusters", assignment.clusters,
                      **{f"clusters_{k}": int(v) for k, v in changes.items()})
        yield _result("unified_changes_pks", assignment.records,
                      ids_changed=int(assignment.records["reason"].isin(
                          idm.ID_CHANGE_REASONS.values()).sum()))
        yield _result("cdp_id_history", rows=history_rows, rows_opened_this_run=opened,
                      preview=dg.MetadataValue.md(preview_md(history_preview)))
        yield _result("detailed_examples", examples, clusters=int(examples["cdp_id"].nunique()))

    checks = [_every_domain_record_once(cfg), _no_implausible_clusters(cfg)]
    return [stitch_preprocess, match_model, stitch_match], checks


# ---- tables -------------------------------------------------------------------------------------

def shape_scores(evidence: pd.DataFrame, ids: pd.DataFrame) -> pd.DataFrame:
    """stitch.unified_scores: readable pairs with levels, rule, label and linked."""
    id_of = ids.set_index("unique_id")["cdp_id"]
    left = evidence["unique_id_l"].str.split("|", n=1)
    right = evidence["unique_id_r"].str.split("|", n=1)
    out = pd.DataFrame({
        "source_l": left.str[0], "pk_l": left.str[1], "source_r": right.str[0], "pk_r": right.str[1],
        "match_weight": evidence["match_weight"].round(4),
        "match_probability": evidence["match_probability"].round(6),
        "deterministic_rule": evidence["deterministic_rule"],
        "label": evidence["label"],
        "linked": evidence["linked"].astype(bool),
        "same_cdp_id": evidence["unique_id_l"].map(id_of).values == evidence["unique_id_r"].map(id_of).values,
        "match_key": evidence.get("match_key"),
    })
    for c in [c for c in evidence.columns if c.startswith("gamma_")]:
        out[c.replace("gamma_", "level_")] = evidence[c]
    for side in ("l", "r"):
        for col in ("given_name", "surname", "email", "phone", "birthdate", "address", "postal"):
            if f"{col}_{side}" in evidence.columns:
                out[f"{col}_{side}"] = evidence[f"{col}_{side}"]
    return out.sort_values(["match_probability", "source_l", "pk_l", "source_r", "pk_r"],
                           ascending=[False, True, True, True, True],
                           na_position="first").reset_index(drop=True)


def write_coalesced(con, cfg: TenantConfig, ids: pd.DataFrame) -> None:
    union = " union all ".join(f'select * from domain."{s}"' for s in cfg.customer_sources)
    con.register("_ids", ids)
    try:
        with transaction(con):
            con.execute(f"""
            create or replace table stitch.unified_coalesced as
            select i.cdp_id, r.source, r.pk, r.given_name, r.surname, r.full_name, r.email,
                   r.phone, r.address, r.city, r.state, r.postal, r.country, r.birthdate,
                   r.gender, r.loyalty_id, r.created_at, r.updated_at
            from ({union}) r join _ids i on i.unique_id = r.source || '|' || r.pk
            order by i.cdp_id, r.source, r.pk""")
    finally:
        con.unregister("_ids")


def detailed_examples(prepared: pd.DataFrame, evidence: pd.DataFrame, assignment: idm.IdAssignment,
                      sample: int, seed: int) -> pd.DataFrame:
    """Every record of a sample of clusters (the 10 largest, up to 10 that changed, the rest
    random multi-record clusters) with the pairs scored inside the cluster, as JSON."""
    ids = assignment.ids
    sizes = ids.groupby("cdp_id").size()
    multi = sizes[sizes > 1]
    chosen = list(multi.sort_values(ascending=False).head(min(10, sample)).index)
    changed = assignment.clusters[assignment.clusters["change"].isin(["merged", "split", "changed"])]
    chosen += [c for c in changed["cdp_id"].dropna().head(10) if c not in chosen]
    rest = multi.index.difference(pd.Index(chosen))
    if sample > len(chosen) and len(rest):
        chosen += list(rest.to_series().sample(min(sample - len(chosen), len(rest)), random_state=seed))
    chosen = chosen[:max(sample, 0)] if sample else []
    records = prepared.merge(ids[ids["cdp_id"].isin(chosen)], on="unique_id")
    cluster_of = ids.set_index("unique_id")["cdp_id"]
    inside = evidence[evidence["unique_id_l"].map(cluster_of).isin(chosen) &
                      (evidence["unique_id_l"].map(cluster_of) == evidence["unique_id_r"].map(cluster_of))]
    pairs: dict[str, list] = {}
    for row in inside.itertuples(index=False):
        item = {"match_probability": None if pd.isna(row.match_probability) else round(float(row.match_probability), 4),
                "match_weight": None if pd.isna(row.match_weight) else round(float(row.match_weight), 2),
                "rule": row.deterministic_rule if isinstance(row.deterministic_rule, str) else None,
                "label": row.label if isinstance(row.label, str) else None, "linked": bool(row.linked)}
        pairs.setdefault(row.unique_id_l, []).append({"with": row.unique_id_r, **item})
        pairs.setdefault(row.unique_id_r, []).append({"with": row.unique_id_l, **item})
    out = records[["cdp_id", "source", "pk", "given_name", "surname", "email", "phone", "birthdate",
                   "address", "postal", "loyalty_id", "unique_id"]].copy()
    out.insert(1, "cluster_size", out["cdp_id"].map(sizes))
    out["pairs"] = out["unique_id"].map(lambda u: json.dumps(pairs.get(u, [])))
    return out.drop(columns=["unique_id"]).sort_values(["cluster_size", "cdp_id", "source", "pk"],
                                                       ascending=[False, True, True, True]).reset_index(drop=True)


def _borderline_pairs(scores: pd.DataFrame, n: int = 4) -> list[tuple[str, str]]:
    """Pairs just above and just below the threshold, for the waterfall chart."""
    scored = scores.dropna(subset=["match_probability"])
    above = scored[scored["linked"]].nsmallest(n, "match_probability")
    below = scored[~scored["linked"]].nlargest(n, "match_probability")
    picked = pd.concat([above, below])
    return [(f"{r.source_l}|{r.pk_l}", f"{r.source_r}|{r.pk_r}") for r in picked.itertuples()]


# ---- checks -------------------------------------------------------------------------------------

def _every_domain_record_once(cfg: TenantConfig):
    @dg.asset_check(asset=KEY["unified_coalesced"], name="every_domain_record_once",
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

    return every_domain_record_once


def _no_implausible_clusters(cfg: TenantConfig):
    limit = cfg.stitch.max_cluster_size

    @dg.asset_check(asset=KEY["unified_coalesced"], name="no_implausible_clusters",
                    description=f"No cdp_id holds more than stitch.max_cluster_size ({limit}) records "
                                "(a sign of junk values or a chain of weak links).")
    def no_implausible_clusters(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            big = con.execute("""select cdp_id, count(*) records, count(distinct source) sources
                                 from stitch.unified_coalesced group by cdp_id having count(*) > ?
                                 order by records desc""", [limit]).df()
        return dg.AssetCheckResult(
            passed=big.empty, severity=dg.AssetCheckSeverity.WARN,
            metadata={"clusters_over_limit": len(big), "max_cluster_size": limit,
                      "largest": dg.MetadataValue.md(preview_md(big, 10))})

    return no_implausible_clusters
