"""Stage 6 - BI: the star schema in schema `bi` (dbt models in dbt_project/models/bi).

    holiday_calendar (Python, `holidays`) -> dim_date, dim_customer, dim_product,
                                             fact_sales, fact_sales_items (dbt) -> postgres destination

A tenant without transactions sources has no BI stage; one without transaction_items sources no
dim_product or fact_sales_items (cdp/config/scope.py). BI Connect, which publishes the star schema with
the customer 360 to a PostgreSQL database, is a destination: cdp/stages/activation/bi_connect.py.
"""


from datetime import date

import dagster as dg
import pandas as pd

from cdp.config import TenantConfig
from cdp.engine import WarehouseResource
from cdp.dbt.project import build_dbt_assets, manifest_for
from cdp.config.scope import tenant_scope
from cdp.engine.tables import preview_md, replace_table

GROUP = "bi"


# ---- holidays ------------------------------------------------------------------------------------

def holiday_calendar(cfg: TenantConfig) -> pd.DataFrame:
    """Public holidays of the configured country over the calendar's years."""
    import holidays

    years = range(cfg.bi.calendar_start_year, cfg.bi.calendar_start_year + cfg.bi.calendar_years)
    try:
        calendar = holidays.country_holidays(cfg.bi.holiday_country, years=years)
    except NotImplementedError as exc:
        raise ValueError(f"bi.holiday_country: {cfg.bi.holiday_country!r} is not a country the "
                         f"`holidays` package knows (it defaults to the tenant's country: set "
                         f"bi.holiday_country to another)") from exc
    rows = sorted(calendar.items())
    return pd.DataFrame({"holiday_date": pd.to_datetime([d for d, _ in rows]).date,
                         "holiday_name": [n for _, n in rows]},
                        columns=["holiday_date", "holiday_name"])


def write_holiday_calendar(con, cfg: TenantConfig) -> int:
    df = holiday_calendar(cfg)
    replace_table(con, "bi", "holiday_calendar", df)
    return len(df)


def build_holiday_asset(cfg: TenantConfig) -> dg.AssetsDefinition:
    @dg.asset(key=["bi", "holiday_calendar"], group_name=GROUP, kinds={"duckdb", "python"},
              description=f"Public holidays of {cfg.bi.holiday_country} ({cfg.bi.calendar_years} years "
                          f"from {cfg.bi.calendar_start_year}), from the `holidays` package; "
                          "flags holidays in bi.dim_date.")
    def _holidays(warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            n = write_holiday_calendar(con, cfg)
            sample = con.execute("select * from bi.holiday_calendar where holiday_date >= ? "
                                 "order by 1 limit 5", [date.today()]).df()
        return dg.MaterializeResult(metadata={"dagster/row_count": n,
                                              "preview": dg.MetadataValue.md(preview_md(sample, raw=cfg.dagster.raw_previews))})

    return _holidays


def bi_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The holiday calendar and the bi dbt models. (Their publishers to Postgres are
    destinations: the activation stage's.)"""
    models = build_dbt_assets(cfg, manifest_for(cfg), folder="bi", name="bi_models")
    holidays = [build_holiday_asset(cfg)] if tenant_scope(cfg).builds("bi.holiday_calendar") else []
    return dg.Definitions(assets=[*holidays, *([models] if models is not None else [])])
