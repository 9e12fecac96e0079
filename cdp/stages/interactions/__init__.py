"""Stage 4 - interactions: the purchase models (dbt) built from the transactions sources."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.interactions.assets import interaction_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return interaction_definitions(cfg)
