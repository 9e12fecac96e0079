"""Where the checkout's own files are: the dbt project, the demo tenant and workspace.yaml sit
beside the `cdp` package (an editable install, or the image's /opt/cdp)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DEMO_CONFIG = PROJECT_ROOT / "tenants" / "demo" / "tenant.yaml"
WORKSPACE_YAML = PROJECT_ROOT / "workspace.yaml"
