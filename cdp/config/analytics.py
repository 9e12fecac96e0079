"""`interactions:`, `predictive:` and `bi:` - the settings of the stages built on the customer
360: purchase attributes, the predictive models and the BI star schema's calendar."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from cdp.config.common import StrictModel


class InteractionSettings(StrictModel):
    as_of_date: date | None = Field(
        default=None, description="the day attributes are computed for (12-month windows, days since "
                                  "last order); today when omitted")
    early_repeat_days: int = Field(default=90, ge=1,
                                   description="a second order within this many days of the first "
                                               "makes an early repeat purchaser")


class PredictiveSettings(StrictModel):
    holdout_days: int = Field(default=180, ge=30,
                              description="the most recent days held out to evaluate each model")
    top_n: int = Field(default=3, ge=1, description="categories recommended per person")
    clv_tiers: list[str] = Field(default_factory=lambda: ["platinum", "gold", "silver", "bronze"],
                                 min_length=2, description="CLV tiers, best first, of equal size")


class BiSettings(StrictModel):
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12,
                                         description="month the fiscal year starts (2 = February)")
    holiday_country: str = Field(default="US", description="country code for dim_date.is_holiday")
    calendar_start_year: int = Field(default=1970, ge=1900, le=2100,
                                     description="dim_date and the holiday calendar start on January "
                                                 "1st of this year (with calendar_years: 1970-2054 by "
                                                 "default)")
    calendar_years: int = Field(default=85, ge=1, le=200, description="years in dim_date")
