"""Customer lifetime value: a BG/NBD model of how often each buyer orders and a Gamma-Gamma
model of how much (pymc-marketing, MAP fits) on the buyer's purchase days, evaluated on a
holdout against a naive baseline."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


WEEK = 7.0


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
