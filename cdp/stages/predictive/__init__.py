"""Stage 5 - predictive: CLV and category propensity models trained on the tenant's purchases."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.predictive.assets import predictive_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return predictive_definitions(cfg)
