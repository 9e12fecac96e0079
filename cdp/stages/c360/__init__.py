"""Stage 3 - customer 360 databases: one dbt-built database (and asset group) per `databases:`
entry, merged from Stitch's people by each database's rules (see assets.py)."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.c360.assets import merge_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return merge_definitions(cfg)
