"""Category propensity: one scikit-learn logistic regression per product category, trained on
the previous window, scoring each buyer's chance of buying the category next; the top
categories per buyer, each with its best seller, are the recommendations."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


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
