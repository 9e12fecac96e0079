"""Stage 3 - merge: unified_coalesced -> merged_customers -> customer_360 (dbt models in
dbt_project/models/c360, merge rules as dbt macros in dbt_project/macros/merge_rules.sql)."""

from __future__ import annotations

from pathlib import Path

from .config import TenantConfig
from .dbt_models import build_dbt_assets

GROUP = "c360"


def build_merge_definitions(cfg: TenantConfig, manifest: Path) -> list:
    return [build_dbt_assets(cfg, manifest, folder="c360", name="c360_models")]
