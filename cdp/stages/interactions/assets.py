"""Stage 4 - interactions (dbt models in dbt_project/models/interactions), built from every
configured transactions, transaction_items and products source:

    unified_transactions, unified_product_catalog -> unified_itemized_transactions
        -> transaction_attributes -> transaction_attributes_extended

A tenant without transactions sources has no interactions stage; one without transaction_items
sources builds the order-based models only (cdp/config/scope.py).
"""

from __future__ import annotations

import dagster as dg

from cdp.config import TenantConfig
from cdp.dbt.project import build_dbt_assets, manifest_for

GROUP = "interactions"


def interaction_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The interactions dbt models the tenant's purchase sources let it build."""
    models = build_dbt_assets(cfg, manifest_for(cfg), folder="interactions", name="interaction_models")
    return dg.Definitions(assets=[models] if models is not None else [])
