"""Custom tables: every dbt model an engineer adds under dbt_project/models/custom/ (referencing
any customer 360 table with ref('<db>__<table>')) becomes an asset custom/<model> in the
`custom` group, with its lineage from dbt, materialized with the rest of the graph and
exportable by a destination (`table: custom.<model>`). A custom model that needs purchase data
says so with `meta: {cdp_needs: [orders]}` (or order_lines); a tenant without that data leaves
it out, as it leaves out any model that reads a table it does not build (cdp/config/scope.py)."""

from __future__ import annotations

import dagster as dg

from cdp.config import TenantConfig
from cdp.dbt.project import DBT_PROJECT_DIR, build_dbt_assets, manifest_for

CUSTOM_DIR = DBT_PROJECT_DIR / "models" / "custom"
GROUP = "custom"


def custom_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The engineer's models under models/custom/ (none: an empty stage)."""
    if not any(CUSTOM_DIR.rglob("*.sql")):
        return dg.Definitions()
    models = build_dbt_assets(cfg, manifest_for(cfg), folder="custom", name="custom_models")
    return dg.Definitions(assets=[models] if models is not None else [])
