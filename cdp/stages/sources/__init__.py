"""Stage 1 - sources: every configured source file read, standardised into domain.<source>
(rejected rows to domain.quarantine), each with a check that every row is accounted for."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.sources.assets import source_definitions


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return source_definitions(cfg)
