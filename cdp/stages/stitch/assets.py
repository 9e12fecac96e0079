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

from cdp.engine import WarehouseResource, warehouse_of
from cdp.config import TenantConfig
from cdp.engine.tables import preview_md, replace_table, transaction, uncompressed_writes
from cdp.stages.stitch import clusters as cl
from cdp.stages.stitch import delta as dl
from cdp.stages.stitch import ids as idm
from cdp.stages.stitch import incremental as inc
from cdp.stages.stitch import state as stm
from cdp.stages.stitch.design import choose_design
from cdp.stages.stitch.model import (ModelStore, household_veto, model_design, model_summary, save_model_charts, save_waterfall_chart,
                    score_pairs, settings_fingerprint, train_model)
from cdp.stages.stitch.preprocess import build_blocklist, prepare_for_matching, stage_customer_records
from cdp.stages.stitch.publish import (CLUSTER_SIZES, borderline_pairs, check_specs, count_cluster_sizes,
                                      every_domain_record_once, no_implausible_clusters, write_coalesced,
                                      write_detailed_examples, write_scores)

GROUP = "stitch"
KEY = {name: dg.AssetKey(["stitch", name]) for name in (
    "blocklist", "unified_preprocessed_raw", "match_model", "unified_scores", "unified_coalesced",
    "unified_changes_clusters", "unified_changes_pks", "cdp_id_history", "detailed_examples",
    "reconciliation")}


class StitchRunConfig(dg.Config):
    full: bool = False
    """Re-stitch every record even where stitch.incremental would stitch only the delta."""


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
    def stitch_preprocess(context: dg.AssetExecutionContext, config: StitchRunConfig, warehouse: WarehouseResource):
        with warehouse.get_connection() as con:
            incremental, why = stm.preprocess_incrementally(con, cfg, config.full)
            context.log.info(f"cdp: stitch: preprocessing {'the delta' if incremental else 'every record'} ({why})")
            delta = {}
            if incremental:
                delta, blocklist = dl.find_delta(con, cfg)
                dl.apply_delta(con, blocklist, cfg.identifier_columns)
            else:
                stage_customer_records(con, cfg)
                blocklist = build_blocklist(con, cfg)
                replace_table(con, "stitch", "blocklist", blocklist)
                with transaction(con), uncompressed_writes(con):
                    prepare_for_matching(con, blocklist, "stitch.unified_preprocessed_raw", cfg.identifier_columns)
                if cfg.stitch.incremental:  # the state the next, incremental run starts from
                    dl.write_full_state(con, cfg)
                    stm.mark_full_pending(con, cfg)
                else:
                    stm.forget(con)
            rows = con.execute("select count(*) from stitch.unified_preprocessed_raw").fetchall()[0][0]
            preview = con.execute("select * from stitch.unified_preprocessed_raw limit 5").df()
            con.execute("drop table if exists _stitch_records")
        yield _result("blocklist", blocklist, preview=dg.MetadataValue.md(preview_md(blocklist, 20, raw=cfg.dagster.raw_previews)),
                      configured=int((blocklist["reason"] == "configured").sum()),
                      detected=int((blocklist["reason"] != "configured").sum()))
        yield _result("unified_preprocessed_raw", rows=rows, preview=dg.MetadataValue.md(preview_md(preview, raw=cfg.dagster.raw_previews)),
                      incremental=incremental, why=why, **{f"delta_{k.replace(' ', '_')}": int(v) for k, v in delta.items()})

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
            current = store.current()
            settled = not config.retrain and stm.model_design_settled(con, cfg, current and current.version)
            if settled:  # an incremental run: the design is derived again by the next full run
                fingerprint = current.settings_fingerprint
            else:
                con.execute("create or replace temp table prepared as select * from stitch.unified_preprocessed_raw")
                derived = choose_design(con, "prepared", cfg)
                fingerprint = settings_fingerprint(derived)
            reuse = current is not None and current.settings_fingerprint == fingerprint and not config.retrain
            train_s, skipped = 0.0, []
            if reuse:
                model = current.load()
                version = current
                context.log.info(f"reusing Splink model v{current.version} ({current.path.name})")
            else:
                why = ("retrain requested" if config.retrain else
                       "no saved model" if current is None else "model design changed")
                model, train_s, skipped = train_model(con, "prepared", cfg, derived)
                version = store.save(model, fingerprint, derived.records)
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
            "version": version.version, "reused": reuse, "design_rederived": not settled,
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
                         deps=[KEY["match_model"]], skippable=True,
                         description="A sample of clusters (largest, changed, random): every record "
                                     "with its PII and the pair scores inside the cluster (drawn "
                                     "by full runs)."),
            dg.AssetSpec(KEY["reconciliation"], group_name=GROUP, kinds={engine},
                         deps=[KEY["match_model"]], skippable=True,
                         description="Written by a full rebuild after incremental runs: every record "
                                     "whose cluster differs between the incremental state and the "
                                     "rebuild (unique_id, incremental_cdp_id, full_cdp_id)."),
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
    """Score, link, cluster and id the records - all of them, or (stitch.incremental) those the
    pending delta touches - and publish the stitch tables. Works in temp tables of the
    warehouse connection (Splink's in an attached in-memory catalog), so nothing is copied
    out of DuckDB and only the published tables touch the warehouse file."""
    st = cfg.stitch
    lap = Stopwatch()
    idm.ensure_history(con)
    incremental, why = stm.match_incrementally(con, cfg, model_version)
    before = stm.read_state(con)
    context.log.info(f"cdp: stitch: matching {'the delta' if incremental else 'every record'} ({why})")
    if incremental:  # every record is read in place; only the delta's are copied
        con.execute("create or replace temp view prepared as select * from "
                    f"{warehouse_of(con).scratch_visible(con, 'stitch.unified_preprocessed_raw')}")
    else:
        con.execute("create or replace temp table prepared as select * from stitch.unified_preprocessed_raw")
    design = model_design(model)
    households = design.households["on"]
    labels = cl.read_labels(cfg.resolve(st.labels) if st.labels else None, lambda ids: _existing(con, ids))
    veto = household_veto(model) if households else None
    lap("load")
    scope = {}
    if incremental:
        scope["delta_records"] = inc.load_delta(con)
        inc.score_delta(con, model, st.score_threshold)
        lap("score")
        scope["affected_records"] = inc.find_affected(con, design.deterministic_rules, labels, st.match_threshold)
        inc.affected_evidence(con, design.deterministic_rules, labels, st.match_threshold, veto)
        inc.load_previous(con)
        lap("evidence")
    else:
        con.execute(f"create or replace temp table previous as {idm.PREVIOUS_SQL}")
        con.execute(f"create or replace temp table issued as {idm.ISSUED_SQL}")
        score_pairs(con, "prepared", model, st.score_threshold, out="scores")
        lap("score")
        cl.deterministic_links(con, "prepared", design.deterministic_rules, out="rule_links")
        lap("rules")
        cl.combine_evidence(con, "scores", "rule_links", labels, st.match_threshold, out="evidence", model_veto=veto)
        lap("evidence")
    rebuilt = cl.cluster_records(con, "_incr_nodes" if incremental else "prepared", "evidence", out="clusters",
                                 birthdate_gap_days=st.birthdate_gap_days if households else None)
    lap("cluster")
    idm.assign_ids(con, "clusters", "previous", "issued", cfg.tenant, has_history=True if incremental else None)
    lap("ids")
    waterfall = {} if incremental else save_waterfall_chart(con, "prepared", model, borderline_pairs(con),
                                                            artefacts / "charts")
    changes = dict(con.execute("select change, count(*) from changes_clusters group by 1 order by 1").fetchall())
    ids_changed = con.execute("select count(*) from changes_pks where reason in (select unnest(?))",
                              [list(idm.ID_CHANGE_REASONS.values())]).fetchall()[0][0]
    lap("charts")
    reconciled = None
    with transaction(con):  # readers see the new stitch tables together or not at all
        with uncompressed_writes(con):  # QA tables
            if incremental:
                inc.publish_stitched(con)
                write_scores(con, "stitch.unified_scores", insert=True)
            else:
                write_scores(con, "stitch.unified_scores")
                write_detailed_examples(con, "stitch.detailed_examples", st.detailed_examples, st.seed)
                if st.incremental:
                    con.execute(f"create or replace table {stm.STITCHED} as select unique_id, "
                                "cluster_id as component from _components")
                if before is not None and before.incremental_runs > 0:
                    reconciled = stm.write_reconciliation(con, "previous", "ids")
            for table, source in (("unified_changes_clusters", "changes_clusters"),
                                  ("unified_changes_pks", "changes_pks")):
                con.execute(f"create or replace table stitch.{table} as select * from {source}")
        if incremental:
            con.execute("""delete from stitch.unified_coalesced where source || '|' || pk in
                           (select unique_id from _incr_scope)""")
        write_coalesced(con, cfg, "ids", insert=incremental)
        if st.incremental:
            stm.record_stitched(con, cfg, model_version, incremental)
    lap("publish")
    opened = idm.record_history(con, "ids", "changes_pks", context.run.run_id, pd.Timestamp.now(),
                                scope="_incr_scope" if incremental else None)
    lap("history")
    figures = dict(zip(("linked_pairs", "deterministic_pairs", "pairs"), con.execute(
        "select count(*) filter (where linked), count(deterministic_rule), count(*) "
        "from stitch.unified_scores").fetchall()[0]))
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
    records, people, largest = count_cluster_sizes(con)
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
                  incremental=incremental, why=why, **scope,
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
    if not incremental:  # the sample is drawn again by full runs
        yield _result("detailed_examples", rows=counts["detailed_examples"], preview=md("detailed_examples"),
                      clusters=int(example_clusters))
    if reconciled is not None:
        context.log.info(f"cdp: stitch: full rebuild after {before.incremental_runs} incremental runs: "
                         f"{reconciled:,} records in another cluster than the incremental state had them")
        yield _result("reconciliation", rows=reconciled, incremental_runs_reconciled=before.incremental_runs,
                      preview=dg.MetadataValue.md(preview_md(con.execute(
                          f"select * from {stm.RECONCILIATION} order by unique_id limit 5").df(),
                          raw=cfg.dagster.raw_previews)))
    yield every_domain_record_once(con, cfg)
    yield no_implausible_clusters(con, cfg, sizes_counted=True)
    con.execute(f"drop table if exists {CLUSTER_SIZES}")


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
