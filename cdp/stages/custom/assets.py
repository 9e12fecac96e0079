"""Custom tables: every dbt model an engineer adds under dbt_project/models/custom/ (referencing
any customer 360 table with ref('<db>__<table>')) becomes an asset custom/<model> in the
`custom` group, with its lineage from dbt, materialized with the rest of the graph and
exportable by a destination (`table: custom.<model>`). A custom model that needs purchase data
says so with `meta: {cdp_needs: [orders]}` (or order_lines); a tenant without that data leaves
it out, as it leaves out any model that reads a table it does not build (cdp/scope.py)."""

from __future__ import annotations

from pathlib import Path

from cdp.config import TenantConfig
from cdp.dbt.project import DBT_PROJECT_DIR, build_dbt_assets

CUSTOM_DIR = DBT_PROJECT_DIR / "models" / "custom"
GROUP = "custom"


def build_custom_definitions(cfg: TenantConfig, manifest: Path) -> list:
    if not any(CUSTOM_DIR.rglob("*.sql")):
        return []
    models = build_dbt_assets(cfg, manifest, folder="custom", name="custom_models")
    return [models] if models is not None else []
