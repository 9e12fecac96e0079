"""Stage 7 - custom tables: the engineer's dbt models under dbt_project/models/custom/."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.custom.assets import custom_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return custom_definitions(cfg)
