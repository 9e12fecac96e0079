"""Stage 5 - predictive: models trained on the tenant's own purchase history.

    unified_transactions ──► predicted_clv_attributes      BG/NBD + Gamma-Gamma (pymc-marketing, MAP)
    unified_itemized_... ──► product_category_propensity   one scikit-learn classifier per category
                         └─► recommendations               top-N categories per person

Each model is evaluated on the most recent `predictive.holdout_days` before it is refitted on
all the history: its holdout metric and a naive baseline's are logged as metadata, and the
asset check `beats_naive_baseline` fails when the model does no better than the baseline.

A tenant without transactions sources has no predictive stage; one without transaction_items
sources has the CLV model only (cdp/config/scope.py).

The models are clv.py and propensity.py; this module makes them Dagster assets.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from cdp.engine import WarehouseResource
from cdp.config import TenantConfig
from cdp.engine.tables import preview_md, replace_table
from cdp.config.scope import tenant_scope
from cdp.stages.predictive.clv import clv_holdout, compiled_marker, model_compile_note, predict_clv, purchase_days
from cdp.stages.predictive.propensity import (PROPENSITY_COLUMNS, RECOMMENDATION_COLUMNS, NotEnoughHistory, empty_table,
                                              predict_propensity, recommend)


GROUP = "predictive"
SCHEMA = "predictive"

TRANSACTIONS = dg.AssetKey(["interactions", "unified_transactions"])
ITEMS = dg.AssetKey(["interactions", "unified_itemized_transactions"])


def as_of(cfg: TenantConfig) -> dt.date:
    return cfg.interactions.as_of_date or dt.date.today()


COLUMNS = {
    "predicted_clv_attributes": {
        "cdp_id": "The buyer.",
        "predicted_orders_12m": "Purchase days the BG/NBD model expects in the next 52 weeks.",
        "predicted_order_value": "Expected value per purchase (Gamma-Gamma; the population mean for one-time buyers).",
        "predicted_revenue_12m": "predicted_orders_12m x predicted_order_value.",
        "probability_alive": "Probability the person is still a customer (BG/NBD).",
        "clv_tier": "Equal-sized tiers by predicted_revenue_12m, best first (predictive.clv_tiers).",
        "as_of_date": "The day the model was fitted for.",
    },
    "product_category_propensity": {
        "cdp_id": "The buyer.",
        "product_category": "The category.",
        "propensity": "Probability (0-1) of buying the category in the next predictive.holdout_days.",
        "rank": "1 = the person's most likely category.",
        "as_of_date": "The day the scores are for.",
    },
    "recommendations": {
        "cdp_id": "The buyer.",
        "rank": "1 = best recommendation.",
        "product_category": "Recommended category.",
        "propensity": "The category's propensity for the person.",
        "recommended_product_id": "The category's best seller of the last 90 days.",
        "recommended_product": "Its name.",
        "as_of_date": "The day the recommendations are for.",
    },
}


def column_schema(table: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, description=text)
                                   for name, text in COLUMNS[table].items()])


def _check(asset: str, passed: bool, metrics: dict, key: str, baseline: str, better: str):
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey([SCHEMA, asset]), check_name="beats_naive_baseline", passed=passed,
        description=f"holdout {key} {metrics[key]:.4f} vs naive baseline {metrics[baseline]:.4f} ({better})",
        metadata={k: v for k, v in metrics.items()})


def _written_empty(table: pd.DataFrame, recs: pd.DataFrame, why: str):
    """The propensity model's results when the history is too short: empty tables, and a check
    that warns (not fails) with the reason."""
    for key, frame in (("product_category_propensity", table), ("recommendations", recs)):
        yield dg.MaterializeResult(asset_key=[SCHEMA, key], metadata={
            "dagster/row_count": 0, "not_trained": why, "dagster/column_schema": column_schema(key)})
    yield dg.AssetCheckResult(
        asset_key=dg.AssetKey([SCHEMA, "product_category_propensity"]), check_name="beats_naive_baseline",
        passed=False, severity=dg.AssetCheckSeverity.WARN, description=f"not evaluated: {why}")


def predictive_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The CLV model and the category propensity model (with recommendations), each only when
    the tenant's purchase data lets it build."""
    settings = cfg.predictive

    @dg.asset(
        key=[SCHEMA, "predicted_clv_attributes"], group_name=GROUP, deps=[TRANSACTIONS],
        kinds={"python", cfg.active_engine},
        check_specs=[dg.AssetCheckSpec("beats_naive_baseline",
                                       asset=dg.AssetKey([SCHEMA, "predicted_clv_attributes"]),
                                       description="holdout MAE of predicted orders below the naive baseline's")],
        description="One row per buyer: predicted orders and revenue in the next 12 months, probability "
                    "alive and a CLV tier, from a BG/NBD + Gamma-Gamma model (pymc-marketing, MAP fit) "
                    "trained on the tenant's purchases.")
    def predicted_clv_attributes(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        end = as_of(cfg)
        with warehouse.get_connection() as con:
            days = purchase_days(con)
        if note := model_compile_note():
            context.log.info(note)
        metrics = clv_holdout(days, end, settings.holdout_days)
        table = predict_clv(days, end, settings.clv_tiers)
        compiled_marker().touch()
        with warehouse.get_connection() as con:
            replace_table(con, SCHEMA, "predicted_clv_attributes", table)
        context.log.info(f"CLV holdout MAE {metrics['holdout_mae']:.3f} (baseline {metrics['baseline_mae']:.3f})")
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": len(table), **metrics,
            "dagster/column_schema": column_schema("predicted_clv_attributes"),
            "preview": dg.MetadataValue.md(preview_md(table, raw=cfg.dagster.raw_previews))})
        yield _check("predicted_clv_attributes", metrics["holdout_mae"] < metrics["baseline_mae"],
                     metrics, "holdout_mae", "baseline_mae", "lower is better")

    @dg.multi_asset(
        specs=[dg.AssetSpec([SCHEMA, "product_category_propensity"], group_name=GROUP, deps=[ITEMS],
                            kinds={"python", cfg.active_engine},
                            description="One row per buyer and category: probability (0-1) of buying the "
                                        f"category in the next {settings.holdout_days} days, from a "
                                        "scikit-learn logistic regression per category trained on the "
                                        "previous window."),
               dg.AssetSpec([SCHEMA, "recommendations"], group_name=GROUP,
                            deps=[dg.AssetKey([SCHEMA, "product_category_propensity"])],
                            kinds={"python", cfg.active_engine},
                            description=f"Top {settings.top_n} categories per buyer by propensity, each "
                                        "with the category's best seller of the last 90 days.")],
        check_specs=[dg.AssetCheckSpec("beats_naive_baseline",
                                       asset=dg.AssetKey([SCHEMA, "product_category_propensity"]),
                                       description="holdout AUC above the category-popularity baseline's")],
        name="category_propensity_model")
    def category_propensity_model(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        end = as_of(cfg)
        with warehouse.get_connection() as con:
            try:
                table, metrics = predict_propensity(con, end, settings.holdout_days)
                recs = recommend(con, table, settings.top_n, end)
            except NotEnoughHistory as exc:
                table, recs, metrics = empty_table(PROPENSITY_COLUMNS), empty_table(RECOMMENDATION_COLUMNS), None
                why = str(exc)
                context.log.info(f"cdp: predictive: no category propensities yet: {why}")
            replace_table(con, SCHEMA, "product_category_propensity", table)
            replace_table(con, SCHEMA, "recommendations", recs)
        if metrics is None:
            yield from _written_empty(table, recs, why)
            return
        context.log.info(f"propensity holdout AUC {metrics['holdout_auc']:.3f} "
                         f"(baseline {metrics['baseline_auc']:.3f})")
        yield dg.MaterializeResult(asset_key=[SCHEMA, "product_category_propensity"], metadata={
            "dagster/row_count": len(table), **metrics, "preview": dg.MetadataValue.md(preview_md(table, raw=cfg.dagster.raw_previews)),
            "dagster/column_schema": column_schema("product_category_propensity")})
        yield dg.MaterializeResult(asset_key=[SCHEMA, "recommendations"], metadata={
            "dagster/row_count": len(recs), "preview": dg.MetadataValue.md(preview_md(recs, raw=cfg.dagster.raw_previews)),
            "dagster/column_schema": column_schema("recommendations")})
        yield _check("product_category_propensity", metrics["holdout_auc"] > metrics["baseline_auc"],
                     metrics, "holdout_auc", "baseline_auc", "higher is better")

    scope = tenant_scope(cfg)
    return dg.Definitions(assets=[
        model for model, table in [(predicted_clv_attributes, "predicted_clv_attributes"),
                                   (category_propensity_model, "product_category_propensity")]
        if scope.builds(f"{SCHEMA}.{table}")])
