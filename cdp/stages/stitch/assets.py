"""Stage 2 - Stitch as Dagster assets.

Everything runs as SQL: preprocessing inside the warehouse, matching in an in-memory DuckDB
workspace that Splink and our own steps share (records come in and tables go out through
Arrow), so no step round-trips a million records through pandas.

  domain.<customer sources> -> stitch/blocklist + stitch/unified_preprocessed_raw
                            -> stitch/match_model            (train once, reuse the saved version)
                            -> stitch/unified_scores, unified_coalesced, unified_changes_clusters,
                               unified_changes_pks, cdp_id_history, detailed_examples
"""

import time
from pathlib import Path

import dagster as dg
import pandas as pd

from cdp.engine import WarehouseResource
from cdp.config import TenantConfig
from cdp.engine.tables import preview_md, replace_table, transaction, uncompressed_writes
from cdp.stages.stitch import clusters as cl
from cdp.stages.stitch import ids as idm
from cdp.stages.stitch.design import choose_design
from cdp.stages.stitch.model import (ModelStore, household_veto, model_design, model_summary, save_model_charts, save_waterfall_chart,
                    score_pairs, settings_fingerprint, train_model)
from cdp.stages.stitch.preprocess import build_blocklist, customer_union_sql, prepare_for_matching, stage_customer_records

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


def stitch_definitions(cfg: TenantConfig) -> dg.Definitions:
    """Preprocess, the versioned Splink model and the match that writes stable cdp_ids."""
    customer_keys = [dg.AssetKey(["domain", s]) for s in cfg.customer_sources]
    artefacts = artefacts_dir(cfg)
    store = ModelStore(artefacts)
    engine = cfg.active_engine  # duckdb | spark: where the stitch tables are computed and kept

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(KEY["blocklist"], group_name=GROUP, kinds={engine}, deps=customer_keys,
                         description="Values never used as matching evidence: configured junk plus "
                                     "values carried by too many different people, with the reason "
                                     "and how many records they touched."),
            dg.AssetSpec(KEY["unified_preprocessed_raw"], group_name=GROUP, kinds={engine},
                         deps=customer_keys,
                         description="Exactly what the matcher sees per source record, after "
                                     "standardisation, nickname aliasing and blocklisting."),
        ],
    )
    def stitch_preprocess(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.get_connection() as con:
            stage_customer_records(con, cfg)
            blocklist = build_blocklist(con, cfg)
            replace_table(con, "stitch", "blocklist", blocklist)
            with transaction(con), uncompressed_writes(con):
                prepare_for_matching(con, blocklist, "stitch.unified_preprocessed_raw", cfg.identifier_columns)
            rows = con.execute("select count(*) from stitch.unified_preprocessed_raw").fetchall()[0][0]
            preview = con.execute("select * from stitch.unified_preprocessed_raw limit 5").df()
            con.execute("drop table if exists _stitch_records")
        yield _result("blocklist", blocklist, preview=dg.MetadataValue.md(preview_md(blocklist, 20, raw=cfg.dagster.raw_previews)),
                      configured=int((blocklist["reason"] == "configured").sum()),
                      detected=int((blocklist["reason"] != "configured").sum()))
        yield _result("unified_preprocessed_raw", rows=rows, preview=dg.MetadataValue.md(preview_md(preview, raw=cfg.dagster.raw_previews)))

    @dg.asset(key=KEY["match_model"], group_name=GROUP, kinds={"splink", "json"},
              deps=[KEY["unified_preprocessed_raw"]],
              description="The Splink model (Fellegi-Sunter: u by random sampling corrected for "
                          "true matches, m by EM), designed from the columns the tenant's records carry "
                          "(comparisons, blocking rules, training sessions, household protections) and "
                          "saved as a versioned JSON artefact. Reused by later runs unless its design "
                          "changes or retrain is set.")
    def match_model(context: dg.AssetExecutionContext, config: MatchModelConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            con.execute("create or replace temp table prepared as select * from stitch.unified_preprocessed_raw")
            design = choose_design(con, "prepared", cfg)
            fingerprint = settings_fingerprint(design)
            current = store.current()
            reuse = current is not None and current.settings_fingerprint == fingerprint and not config.retrain
            train_s, skipped = 0.0, []
            if reuse:
                model = current.load()
                version = current
                context.log.info(f"reusing Splink model v{current.version} ({current.path.name})")
            else:
                why = ("retrain requested" if config.retrain else
                       "no saved model" if current is None else "model design changed")
                model, train_s, skipped = train_model(con, "prepared", cfg, design)
                version = store.save(model, fingerprint, design.records)
                context.log.info(f"trained Splink model v{version.version} in {train_s:.1f}s ({why})")
                for step in skipped:  # the whole reason in the Dagster log, a line on the terminal
                    context.log.info(f"stitch: {step['step']} skipped: {step['reason']}")
                if skipped:
                    context.log.info("cdp: stitch: training steps this data cannot support, skipped: "
                                     + ", ".join(s["step"] for s in skipped)
                                     + " (why: match_model's metadata, training_steps_skipped)")
        design = model_design(model)
        fields = sorted(c for c in design.columns if c not in ("given_name_alias", "street_name"))
        context.log.info(f"cdp: stitch: evidence from {', '.join(fields)}; household protections "
                         f"{'on' if design.households['on'] else 'off'}: {design.households['why']}")
        charts = model_charts(model, version, artefacts / "charts")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(model["comparisons"]),
            "version": version.version, "reused": reuse,
            "model_file": dg.MetadataValue.path(str(version.path)),
            "settings_fingerprint": fingerprint, "trained_at": version.trained_at,
            "trained_on_records": version.trained_on_records, "train_seconds": round(train_s, 2),
            "training_steps_skipped": dg.MetadataValue.json(skipped),
            "design": dg.MetadataValue.json(design.summary()),
            "household_protections": design.households["on"],
            "parameters": dg.MetadataValue.json(model_summary(model)),
            **{f"chart_{name}": dg.MetadataValue.path(str(path)) for name, path in charts.items()},
            "preview": dg.MetadataValue.md(preview_md(pd.DataFrame(
                [{"comparison": c["output_column_name"], "levels": len(c["comparison_levels"]),
                  "description": c.get("comparison_description", "")} for c in model["comparisons"]]),
                10)),
        })

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(KEY["unified_scores"], group_name=GROUP, kinds={engine, "splink"},
                         deps=[KEY["match_model"], KEY["unified_preprocessed_raw"]],
                         description="Scored candidate pairs: both records, match weight, "
                                     "probability, per-comparison levels, the deterministic rule or "
                                     "analyst label that applies, and whether they were linked."),
            dg.AssetSpec(KEY["unified_coalesced"], group_name=GROUP, kinds={engine, "splink"},
                         deps=[KEY["match_model"], KEY["unified_preprocessed_raw"]],
                         description="One row per source customer record with its stable `cdp_id` "
                                     "and the standardised PII: the input of every customer 360."),
            dg.AssetSpec(KEY["unified_changes_clusters"], group_name=GROUP, kinds={engine},
                         deps=[KEY["match_model"]],
                         description="Per cluster: previous and new id and the change since the "
                                     "last run (new, unchanged, changed, merged, split, retired)."),
            dg.AssetSpec(KEY["unified_changes_pks"], group_name=GROUP, kinds={engine},
                         deps=[KEY["match_model"]],
                         description="Per source record whose cdp_id changed since the last run "
                                     "(or that arrived or left): old id, new id and why."),
            dg.AssetSpec(KEY["cdp_id_history"], group_name=GROUP, kinds={engine},
                         deps=[KEY["match_model"]],
                         description="Every record's cdp_id over time (valid_from / valid_to)."),
            dg.AssetSpec(KEY["detailed_examples"], group_name=GROUP, kinds={engine},
                         deps=[KEY["match_model"]],
                         description="A sample of clusters (largest, changed, random): every record "
                                     "with its PII and the pair scores inside the cluster."),
        ],
        check_specs=check_specs(cfg),
    )
    def stitch_match(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        current = store.current()
        if current is None:
            raise dg.Failure("no Splink model saved yet: materialize stitch/match_model first")
        model = current.load()
        with warehouse.get_connection() as con:
            yield from _match(context, cfg, con, model, current.version, artefacts)

    return dg.Definitions(assets=[stitch_preprocess, match_model, stitch_match])


# ---- matching -----------------------------------------------------------------------------------

def model_charts(model: dict, version, folder: Path) -> dict[str, Path]:
    """The model's charts, drawn once per model version."""
    stamp = folder / ".model_version"
    paths = {name: folder / f"{name}.html" for name in ("match_weights", "m_u_parameters")}
    if stamp.exists() and stamp.read_text() == str(version.path) and all(p.exists() for p in paths.values()):
        return paths
    paths = save_model_charts(model, folder)
    stamp.write_text(str(version.path))
    return paths


def _match(context, cfg: TenantConfig, con, model: dict, model_version: int, artefacts: Path):
    """Score, link, cluster and id the records; publish the stitch tables. Works in temp tables
    of the warehouse connection (Splink's in an attached in-memory catalog), so nothing is copied
    out of DuckDB and only the published tables touch the warehouse file."""
    st = cfg.stitch
    lap = Stopwatch()
    idm.ensure_history(con)
    con.execute("create or replace temp table prepared as select * from stitch.unified_preprocessed_raw")
    con.execute(f"create or replace temp table previous as {idm.PREVIOUS_SQL}")
    con.execute(f"create or replace temp table issued as {idm.ISSUED_SQL}")
    lap("load")
    score_pairs(con, "prepared", model, st.score_threshold, out="scores")
    lap("score")
    design = model_design(model)
    households = design.households["on"]
    cl.deterministic_links(con, "prepared", design.deterministic_rules, out="rule_links")
    lap("rules")
    labels = cl.read_labels(cfg.resolve(st.labels) if st.labels else None, lambda ids: _existing(con, ids))
    cl.combine_evidence(con, "scores", "rule_links", labels, st.match_threshold, out="evidence",
                        model_veto=household_veto(model) if households else None)
    lap("evidence")
    rebuilt = cl.cluster_records(con, "prepared", "evidence", out="clusters",
                                 birthdate_gap_days=st.birthdate_gap_days if households else None)
    lap("cluster")
    idm.assign_ids(con, "clusters", "previous", "issued", cfg.tenant)
    lap("ids")
    waterfall = save_waterfall_chart(con, "prepared", model, _borderline_pairs(con), artefacts / "charts")
    figures = dict(zip(("linked_pairs", "deterministic_pairs", "pairs"), con.execute(
        "select count(*) filter (where linked), count(deterministic_rule), count(*) "
        "from evidence").fetchall()[0]))
    changes = dict(con.execute("select change, count(*) from changes_clusters group by 1 order by 1").fetchall())
    ids_changed = con.execute("select count(*) from changes_pks where reason in (select unnest(?))",
                              [list(idm.ID_CHANGE_REASONS.values())]).fetchall()[0][0]
    lap("charts")
    with transaction(con):  # readers see the new stitch tables together or not at all
        with uncompressed_writes(con):  # QA tables, rewritten every run
            write_scores(con, "stitch.unified_scores")
            write_detailed_examples(con, "stitch.detailed_examples", st.detailed_examples, st.seed)
            for table, source in (("unified_changes_clusters", "changes_clusters"),
                                  ("unified_changes_pks", "changes_pks")):
                con.execute(f"create or replace table stitch.{table} as select * from {source}")
        write_coalesced(con, cfg, "ids")
    lap("publish")
    opened = idm.record_history(con, "ids", "changes_pks", context.run.run_id, pd.Timestamp.now())
    lap("history")
    # the published tables are not sorted (a million-row sort per table for nobody: readers
    # order what they read); previews show the strongest pairs and one whole person
    previews = {t: con.execute(f"select * from stitch.{t} limit 5").df() for t in (
        "unified_changes_clusters", "unified_changes_pks", "detailed_examples")}
    previews["unified_scores"] = con.execute(
        "select * from stitch.unified_scores order by match_probability desc nulls first limit 5").df()
    previews["unified_coalesced"] = con.execute(
        "select * from stitch.unified_coalesced where cdp_id = (select cdp_id from stitch.unified_coalesced "
        "limit 1) order by source, pk").df()
    history_rows = con.execute("select count(*) from stitch.cdp_id_history").fetchall()[0][0]
    history_preview = con.execute("select * from stitch.cdp_id_history "
                                  "order by valid_from desc, source, pk limit 5").df()
    records, people, largest = con.execute(
        "select coalesce(sum(n), 0), count(*), coalesce(max(n), 0) from (select cdp_id, "
        "count(*) n from ids group by cdp_id)").fetchall()[0]
    counts = {t: con.execute(f"select count(*) from stitch.{t}").fetchall()[0][0]
              for t in ("unified_changes_clusters", "unified_changes_pks", "detailed_examples")}
    example_clusters = con.execute("select count(distinct cdp_id) from stitch.detailed_examples").fetchall()[0][0]
    lap("metadata")
    context.log.info(f"cdp: stitch: {records:,} records -> {people:,} people; clusters {changes}")

    def md(table):
        return dg.MetadataValue.md(preview_md(previews[table], raw=cfg.dagster.raw_previews))

    yield _result("unified_scores", rows=figures["pairs"], preview=md("unified_scores"),
                  linked_pairs=figures["linked_pairs"], deterministic_pairs=figures["deterministic_pairs"],
                  labelled_pairs=labels.count, labels_on_unknown_records=labels.unknown_records,
                  components_rebuilt_for_labels=rebuilt["label"],
                  components_split_for_birthdates=rebuilt["birthdate"], match_threshold=st.match_threshold,
                  model_version=model_version, seconds=dg.MetadataValue.json(lap.seconds),
                  **{f"chart_{n}": dg.MetadataValue.path(str(p)) for n, p in waterfall.items()})
    yield _result("unified_coalesced", rows=records, people=people,
                  records_per_person=round(records / max(people, 1), 3), largest_cluster=int(largest),
                  preview=md("unified_coalesced"))
    yield _result("unified_changes_clusters", rows=counts["unified_changes_clusters"],
                  preview=md("unified_changes_clusters"),
                  **{f"clusters_{k}": int(v) for k, v in changes.items()})
    yield _result("unified_changes_pks", rows=counts["unified_changes_pks"], preview=md("unified_changes_pks"),
                  ids_changed=int(ids_changed))
    yield _result("cdp_id_history", rows=history_rows, rows_opened_this_run=opened,
                  preview=dg.MetadataValue.md(preview_md(history_preview, raw=cfg.dagster.raw_previews)))
    yield _result("detailed_examples", rows=counts["detailed_examples"], preview=md("detailed_examples"),
                  clusters=int(example_clusters))
    yield every_domain_record_once(con, cfg)
    yield no_implausible_clusters(con, cfg)


class Stopwatch:
    """Seconds per named phase, for the asset's metadata: where a run's time went."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 2)
        self._last = now


def _existing(con, ids: set[str]) -> set[str]:
    """Which of these record keys exist in this run's records."""
    return {r[0] for r in con.execute("select unique_id from prepared where unique_id in (select unnest(?))",
                                     [sorted(ids)]).fetchall()}


# ---- tables -------------------------------------------------------------------------------------

def write_scores(con, out: str) -> None:
    """unified_scores: every candidate pair - the two records' keys, match weight and
    probability, the level of each comparison, the rule or label that applies, whether they
    were linked and whether they ended with the same cdp_id. The values the matcher compared
    are one join away, in unified_preprocessed_raw."""
    columns = {r[0] for r in con.execute("describe evidence").fetchall()}
    levels = [f"e.{c} as {c.replace('gamma_', 'level_')}" for c in sorted(columns) if c.startswith("gamma_")]
    con.execute(f"""
        create or replace table {out} as
        select split_part(e.unique_id_l, '|', 1) as source_l,
               substr(e.unique_id_l, length(split_part(e.unique_id_l, '|', 1)) + 2) as pk_l,
               split_part(e.unique_id_r, '|', 1) as source_r,
               substr(e.unique_id_r, length(split_part(e.unique_id_r, '|', 1)) + 2) as pk_r,
               round(e.match_weight, 4) as match_weight, round(e.match_probability, 6) as match_probability,
               e.deterministic_rule, e.label, e.linked, il.cdp_id = ir.cdp_id as same_cdp_id,
               {"e.match_key" if "match_key" in columns else "null::varchar as match_key"}
               {"".join(", " + c for c in levels)}
        from evidence e
        join ids il on il.unique_id = e.unique_id_l join ids ir on ir.unique_id = e.unique_id_r""")


def write_coalesced(con, cfg: TenantConfig, ids: str) -> None:
    con.execute(f"""
        create or replace table stitch.unified_coalesced as
        select i.cdp_id, r.source, r.pk, r.given_name, r.surname, r.full_name, r.email,
               r.phone, r.address, r.address2, r.city, r.state, r.postal, r.country, r.birthdate,
               r.gender, r.loyalty_id{"".join(f", r.{c}" for c in cfg.identifier_columns)},
               r.created_at, r.updated_at{"".join(f", r.{c}" for c in cfg.attribute_columns)}
        from ({customer_union_sql(cfg)}) r join {ids} i on i.unique_id = r.source || '|' || r.pk""")


def write_detailed_examples(con, out: str, sample: int, seed: int) -> None:
    """Every record of a sample of clusters (the 10 largest, up to 10 that changed, the rest
    random multi-record clusters) with the pairs scored inside the cluster, as JSON."""
    con.execute(f"""
        create or replace temp table _example_ids as
        with sizes as (select cdp_id, count(*) as size from ids group by 1 having count(*) > 1),
        largest as (select cdp_id, 1 as pick, row_number() over (order by size desc, cdp_id) as n
                    from sizes qualify n <= least(10, {int(sample)})),
        changed as (select cdp_id, 2 as pick, row_number() over (order by change, cdp_id) as n
                    from changes_clusters where change in ('merged', 'split', 'changed')
                    and cdp_id is not null qualify n <= 10),
        random as (select cdp_id, 3 as pick, row_number() over (order by hash(cdp_id, {int(seed)})) as n
                   from sizes),
        picks as (select * from largest union all select * from changed union all select * from random)
        select cdp_id from (select cdp_id, min((pick, n)) as best from picks group by cdp_id)
        order by best limit {int(sample)}""")
    con.execute(f"""
        create or replace table {out} as
        with members as (select i.cdp_id, p.* from ids i join prepared p using (unique_id)
                         where i.cdp_id in (select cdp_id from _example_ids)),
        ends as (select unique_id_l as uid, unique_id_r as other, * from evidence
                 union all
                 select unique_id_r, unique_id_l, * from evidence),
        inside as (
            select e.* from ends e join members m on m.unique_id = e.uid
            join members o on o.unique_id = e.other and o.cdp_id = m.cdp_id),
        pairs as (
            select uid, to_json(list({{'with': other, 'match_probability': round(match_probability, 4),
                                      'match_weight': round(match_weight, 2), 'rule': deterministic_rule,
                                      'label': label, 'linked': linked}} order by other))::varchar as pairs
            from inside group by uid)
        select m.cdp_id, count(*) over (partition by m.cdp_id) as cluster_size, m.source, m.pk,
               m.given_name, m.surname, m.email, m.phone, m.birthdate, m.address, m.postal,
               m.loyalty_id, coalesce(p.pairs, '[]') as pairs
        from members m left join pairs p on p.uid = m.unique_id
        order by cluster_size desc, cdp_id, source, pk""")


def _borderline_pairs(con, n: int = 4) -> list[tuple[str, str]]:
    """Pairs just above and just below the threshold, for the waterfall chart."""
    return [tuple(r) for r in con.execute(f"""
        (select unique_id_l, unique_id_r from evidence where linked and match_probability is not null
         order by match_probability, unique_id_l, unique_id_r limit {n})
        union all
        (select unique_id_l, unique_id_r from evidence where not linked and match_probability is not null
         order by match_probability desc, unique_id_l, unique_id_r limit {n})""").fetchall()]


# ---- checks -------------------------------------------------------------------------------------
# Evaluated inside the stitch_match step, on the tables it has just published: no second step
# re-opens the warehouse to scan a million records again.

def check_specs(cfg: TenantConfig) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("every_domain_record_once", asset=KEY["unified_coalesced"],
                          description="Every customer domain row appears exactly once in unified_coalesced."),
        dg.AssetCheckSpec("no_implausible_clusters", asset=KEY["unified_coalesced"],
                          description=f"No cdp_id holds more than stitch.max_cluster_size "
                                      f"({cfg.stitch.max_cluster_size}) records (a sign of junk values "
                                      "or a chain of weak links)."),
    ]


def every_domain_record_once(con, cfg: TenantConfig) -> dg.AssetCheckResult:
    union = " union all ".join(f"select source, pk from domain.\"{s}\"" for s in cfg.customer_sources)
    missing, duplicated, extra = con.execute(f"""
        with d as ({union}),
             u as (select source, pk, count(*) n from stitch.unified_coalesced group by all)
        select (select count(*) from d anti join u using (source, pk)),
               (select count(*) from u where n > 1),
               (select count(*) from u anti join d using (source, pk))""").fetchone()
    return dg.AssetCheckResult(
        asset_key=KEY["unified_coalesced"], check_name="every_domain_record_once",
        passed=missing == duplicated == extra == 0,
        metadata={"domain_records_missing": missing, "records_duplicated": duplicated,
                  "records_not_in_domain": extra})


def no_implausible_clusters(con, cfg: TenantConfig) -> dg.AssetCheckResult:
    limit = cfg.stitch.max_cluster_size
    big = con.execute("""select cdp_id, count(*) records, count(distinct source) sources
                         from stitch.unified_coalesced group by cdp_id having count(*) > ?
                         order by records desc""", [limit]).df()
    return dg.AssetCheckResult(
        asset_key=KEY["unified_coalesced"], check_name="no_implausible_clusters",
        passed=big.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"clusters_over_limit": len(big), "max_cluster_size": limit,
                  "largest": dg.MetadataValue.md(preview_md(big, 10, raw=cfg.dagster.raw_previews))})
