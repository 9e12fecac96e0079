"""Stage 6 - BI: the calendar and BI models (dbt), published to the Postgres destinations."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.bi.assets import bi_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return bi_definitions(cfg)
