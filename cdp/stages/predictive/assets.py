"""Stage 5 - predictive: models trained on the tenant's own purchase history.

    unified_transactions ──► predicted_clv_attributes      BG/NBD + Gamma-Gamma (pymc-marketing, MAP)
    unified_itemized_... ──► product_category_propensity   one scikit-learn classifier per category
                         └─► recommendations               top-N categories per person

Each model is evaluated on the most recent `predictive.holdout_days` before it is refitted on
all the history: its holdout metric and a naive baseline's are logged as metadata, and the
asset check `beats_naive_baseline` fails when the model does no better than the baseline.

A tenant without transactions sources has no predictive stage; one without transaction_items
sources has the CLV model only (cdp/scope.py).
"""


import datetime as dt
import warnings
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from cdp.engine import WarehouseResource
from cdp.config import TenantConfig
from cdp.scope import tenant_scope
from cdp.engine.tables import preview_md, replace_table

GROUP = "predictive"
SCHEMA = "predictive"
WEEK = 7.0
TRANSACTIONS = dg.AssetKey(["interactions", "unified_transactions"])
ITEMS = dg.AssetKey(["interactions", "unified_itemized_transactions"])


def as_of(cfg: TenantConfig) -> dt.date:
    return cfg.interactions.as_of_date or dt.date.today()


# ---- customer lifetime value: BG/NBD + Gamma-Gamma ------------------------------------------------

def purchase_days(con) -> pd.DataFrame:
    """One row per person and day they bought (kept purchases only): the BG/NBD's events."""
    return con.execute("""
        select cdp_id, order_date, sum(net_revenue) as revenue
        from interactions.unified_transactions
        where cdp_id is not null and not is_cancelled and not is_fully_returned
        group by cdp_id, order_date""").df()


def rfm(days: pd.DataFrame, end: dt.date) -> pd.DataFrame:
    """frequency (repeat purchase days), recency and T in weeks, mean repeat-purchase value,
    for people whose first purchase is on or before `end` (only days up to `end` count)."""
    d = days[pd.to_datetime(days["order_date"]) <= pd.Timestamp(end)].copy()
    d["order_date"] = pd.to_datetime(d["order_date"])
    d = d.sort_values(["cdp_id", "order_date"])
    first = d.groupby("cdp_id")["order_date"].transform("min")
    repeat = d[d["order_date"] > first]
    g = d.groupby("cdp_id")
    out = pd.DataFrame({
        "frequency": g.size() - 1,
        "recency": (g["order_date"].max() - g["order_date"].min()).dt.days / WEEK,
        "T": (pd.Timestamp(end) - g["order_date"].min()).dt.days / WEEK,
        "monetary_value": repeat.groupby("cdp_id")["revenue"].mean(),
    })
    out["monetary_value"] = out["monetary_value"].fillna(0.0)
    return out.reset_index(names="customer_id")


def model_compile_note() -> str | None:
    """A first fit on this machine compiles PyTensor's C code for the CLV models (about a minute
    on two cores); later fits load it from PyTensor's cache. Said before it happens, so a minute
    without output is not mistaken for a hang. A marker in the cache folder, written after a
    fit, tells the first time from the others."""
    if compiled_marker().exists():
        return None
    return ("cdp: predictive: compiling the CLV models for this machine the first time "
            "(PyTensor, about a minute; cached for later runs)")


def compiled_marker() -> Path:
    import pytensor

    return Path(pytensor.config.compiledir) / "cdp_clv_models_compiled"


def fit_bgnbd(data: pd.DataFrame):
    from pymc_marketing.clv import BetaGeoModel

    model = BetaGeoModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=data[["customer_id", "frequency", "recency", "T"]], method="map",
                  progressbar=False)
    return model


def fit_gamma_gamma(data: pd.DataFrame):
    from pymc_marketing.clv import GammaGammaModel

    repeaters = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
    model = GammaGammaModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=repeaters[["customer_id", "frequency", "monetary_value"]], method="map",
                  progressbar=False)
    return model


def _point(x) -> np.ndarray:
    """MAP fits have one chain and one draw: the point estimate per customer."""
    return np.asarray(x.mean(dim=[d for d in ("chain", "draw") if d in x.dims]).values)


def clv_holdout(days: pd.DataFrame, end: dt.date, holdout_days: int) -> dict:
    """Fit on the history before the holdout, predict each person's purchase days in it.
    MAE against the naive baseline: everyone buys the calibration period's average."""
    cutoff = end - dt.timedelta(days=holdout_days)
    calibration = rfm(days, cutoff)
    model = fit_bgnbd(calibration)
    predicted = _point(model.expected_purchases(data=calibration, future_t=holdout_days / WEEK))
    d = days.assign(order_date=pd.to_datetime(days["order_date"]))
    in_holdout = d[(d["order_date"] > pd.Timestamp(cutoff)) & (d["order_date"] <= pd.Timestamp(end))]
    actual = calibration["customer_id"].map(in_holdout.groupby("cdp_id").size()).fillna(0).to_numpy()
    rate = calibration["frequency"] / calibration["T"].clip(lower=1)  # per week, from repeat purchases
    baseline = np.full_like(actual, float(np.mean(rate) * holdout_days / WEEK), dtype=float)
    return {"customers": len(calibration), "holdout_mae": float(np.mean(np.abs(predicted - actual))),
            "baseline_mae": float(np.mean(np.abs(baseline - actual))),
            # a stronger heuristic, for information: each person keeps their own past rate
            "own_rate_mae": float(np.mean(np.abs(rate.to_numpy() * holdout_days / WEEK - actual))),
            "holdout_actual_mean": float(actual.mean()), "holdout_predicted_mean": float(predicted.mean())}


def predict_clv(days: pd.DataFrame, end: dt.date, tiers: list[str]) -> pd.DataFrame:
    data = rfm(days, end)
    bgnbd = fit_bgnbd(data)
    gg = fit_gamma_gamma(data)
    orders = _point(bgnbd.expected_purchases(data=data, future_t=52.0))
    alive = _point(bgnbd.expected_probability_alive(data=data))
    spend = _point(gg.expected_customer_spend(data=data[["customer_id", "frequency", "monetary_value"]]))
    # a one-time buyer has no repeat-purchase value: the model's population mean stands in
    spend = np.where(np.isfinite(spend), spend, np.nanmean(spend))
    out = pd.DataFrame({
        "cdp_id": data["customer_id"],
        "predicted_orders_12m": orders.round(3),
        "predicted_order_value": spend.round(2),
        "predicted_revenue_12m": (orders * spend).round(2),
        "probability_alive": alive.round(4),
    })
    rank = out["predicted_revenue_12m"].rank(method="first", ascending=False)
    out["clv_tier"] = [tiers[min(int((r - 1) * len(tiers) // len(out)), len(tiers) - 1)] for r in rank]
    out["as_of_date"] = end
    return out.sort_values("cdp_id").reset_index(drop=True)


# ---- category propensity ------------------------------------------------------------------------

FEATURES = ["category_orders", "category_share", "days_since_category", "orders", "orders_180d",
            "days_since_last_order", "tenure_days"]
NEVER = 3 * 365


def category_features(con, cutoff: dt.date, horizon_days: int) -> pd.DataFrame:
    """One row per (person with a purchase by `cutoff`, category): what they bought up to
    `cutoff`, and whether they bought the category in the `horizon_days` after it (label).
    Portable SQL (day counts by date_diff, not date subtraction): the Spark connection runs it as is."""
    return con.execute(f"""
        with lines as (
            select cdp_id, order_key, order_date, product_category, net_item_revenue
            from interactions.unified_itemized_transactions
            where cdp_id is not null and not is_cancelled and not is_return
        ),
        past as (select * from lines where order_date <= $cutoff),
        people as (
            select cdp_id, count(distinct order_key) as orders,
                   count(distinct order_key) filter (where order_date > $cutoff - interval 180 day) as orders_180d,
                   date_diff('day', max(order_date), $cutoff) as days_since_last_order,
                   date_diff('day', min(order_date), $cutoff) as tenure_days,
                   sum(net_item_revenue) as revenue
            from past group by cdp_id
        ),
        categories as (select distinct product_category from lines),
        per_category as (
            select cdp_id, product_category, count(distinct order_key) as category_orders,
                   sum(net_item_revenue) as category_revenue,
                   date_diff('day', max(order_date), $cutoff) as days_since_category
            from past group by all
        ),
        future as (
            select distinct cdp_id, product_category from lines
            where order_date > $cutoff and order_date <= $cutoff + interval {int(horizon_days)} day
        )
        select p.cdp_id, c.product_category,
               coalesce(pc.category_orders, 0) as category_orders,
               coalesce(pc.category_revenue / nullif(p.revenue, 0), 0) as category_share,
               coalesce(pc.days_since_category, {NEVER}) as days_since_category,
               p.orders, p.orders_180d, p.days_since_last_order, p.tenure_days,
               f.cdp_id is not null as bought
        from people p cross join categories c
        left join per_category pc on pc.cdp_id = p.cdp_id and pc.product_category = c.product_category
        left join future f on f.cdp_id = p.cdp_id and f.product_category = c.product_category
        order by p.cdp_id, c.product_category""", {"cutoff": cutoff}).df()


def fit_category_models(train: pd.DataFrame) -> dict:
    """One logistic regression per category (standardised features); a category whose training
    window has only buyers or only non-buyers gets its base rate instead."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {}
    for category, rows in train.groupby("product_category"):
        y = rows["bought"].astype(int).to_numpy()
        if y.min() == y.max():
            models[category] = float(y.mean())
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(rows[FEATURES].astype(float).to_numpy(), y)
        models[category] = model
    return models


def score(models: dict, rows: pd.DataFrame, fallback: float = 0.0) -> np.ndarray:
    scores = np.zeros(len(rows))
    for category, idx in rows.groupby("product_category").indices.items():
        model = models.get(category, fallback)
        if isinstance(model, float):
            scores[idx] = model
        else:
            scores[idx] = model.predict_proba(rows.iloc[idx][FEATURES].astype(float).to_numpy())[:, 1]
    return scores


class NotEnoughHistory(Exception):
    """Too little purchase history to train and check a model: the tables are written empty (a
    new brand has no predictions yet) and the check says why, rather than failing the run and
    everything downstream of it."""


PROPENSITY_COLUMNS = {"cdp_id": "string", "product_category": "string", "propensity": "float64",
                      "rank": "int64", "as_of_date": "datetime64[us]"}
RECOMMENDATION_COLUMNS = {"cdp_id": "string", "rank": "int64", "product_category": "string",
                          "propensity": "float64", "recommended_product_id": "string",
                          "recommended_product": "string", "as_of_date": "datetime64[us]"}


def empty_table(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def propensity_holdout(con, end: dt.date, holdout_days: int) -> tuple[dict, dict]:
    """Train on the window before the holdout, evaluate on the holdout: pooled ROC AUC of the
    model and of the naive baseline (each category's popularity in the training window)."""
    from sklearn.metrics import roc_auc_score

    cutoff = end - dt.timedelta(days=holdout_days)
    train = category_features(con, cutoff - dt.timedelta(days=holdout_days), holdout_days)
    test = category_features(con, cutoff, holdout_days)
    models = fit_category_models(train)
    popularity = train.groupby("product_category")["bought"].mean()
    y = test["bought"].astype(int).to_numpy()
    if len(train) == 0 or y.min() == y.max():
        raise NotEnoughHistory(f"the tenant's purchases do not cover two windows of "
                               f"predictive.holdout_days ({holdout_days} days) with purchases in each, "
                               "so a model could neither be trained nor checked")
    metrics = {
        "training_rows": len(train), "holdout_rows": len(test),
        "holdout_auc": float(roc_auc_score(y, score(models, test))),
        "baseline_auc": float(roc_auc_score(y, test["product_category"].map(popularity).fillna(0))),
        # a stronger heuristic, for information: how often the person bought the category before
        "past_orders_auc": float(roc_auc_score(y, test["category_orders"])),
    }
    return models, metrics


def predict_propensity(con, end: dt.date, holdout_days: int) -> tuple[pd.DataFrame, dict]:
    _, metrics = propensity_holdout(con, end, holdout_days)
    # refit on the latest full window, score everyone as of `end`
    models = fit_category_models(category_features(con, end - dt.timedelta(days=holdout_days), holdout_days))
    now = category_features(con, end, holdout_days)
    now["propensity"] = score(models, now).round(4)
    now["rank"] = now.groupby("cdp_id")["propensity"].rank(method="first", ascending=False).astype(int)
    out = now[["cdp_id", "product_category", "propensity", "rank"]].copy()
    out["as_of_date"] = end
    return out, metrics


def recommend(con, propensity: pd.DataFrame, top_n: int, end: dt.date) -> pd.DataFrame:
    """Top-N categories per person, each with the category's best seller of the last 90 days."""
    top = propensity[propensity["rank"] <= top_n]
    best = con.execute("""
        select product_category, product_id as recommended_product_id, product_name as recommended_product
        from (select product_category, product_id, product_name, sum(item_quantity) as units
              from interactions.unified_itemized_transactions
              where not is_cancelled and order_date > $end - interval 90 day and order_date <= $end
              group by all)
        qualify row_number() over (partition by product_category order by units desc, product_id) = 1
    """, {"end": end}).df()
    out = top.merge(best, on="product_category", how="left")
    return out.sort_values(["cdp_id", "rank"]).reset_index(drop=True)[
        ["cdp_id", "rank", "product_category", "propensity", "recommended_product_id",
         "recommended_product", "as_of_date"]]


# ---- Dagster assets -------------------------------------------------------------------------------

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


def build_predictive_definitions(cfg: TenantConfig) -> list:
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
    return [model for model, table in [(predicted_clv_attributes, "predicted_clv_attributes"),
                                       (category_propensity_model, "product_category_propensity")]
            if scope.builds(f"{SCHEMA}.{table}")]
