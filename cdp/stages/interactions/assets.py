"""Stage 4 - interactions (dbt models in dbt_project/models/interactions), built from every
configured transactions, transaction_items and products source:

    unified_transactions, unified_product_catalog -> unified_itemized_transactions
        -> transaction_attributes -> transaction_attributes_extended

A tenant without transactions sources has no interactions stage; one without transaction_items
sources builds the order-based models only (cdp/scope.py).
"""

from __future__ import annotations

from pathlib import Path

from cdp.config import TenantConfig
from cdp.dbt.project import build_dbt_assets

GROUP = "interactions"


def build_interaction_definitions(cfg: TenantConfig, manifest: Path) -> list:
    models = build_dbt_assets(cfg, manifest, folder="interactions", name="interaction_models")
    return [models] if models is not None else []
