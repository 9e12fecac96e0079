"""load_config: a tenant's YAML file, validated, with the values the environment overrides -
the one door configuration comes in by. Every error names the file, the field and the problem.

This module is the only one of cdp that reads environment variables (tests/unit/test_config_door.py
checks it); each is read once, when the config is loaded, into the config's fields and
`TenantConfig.overrides` (which records where each value came from). The whole list:

  CDP_CONFIG         the tenant config file when none is given (the Dagster code location,
                     `cdp ... ` without --config); default tenants/demo/tenant.yaml
  CDP_WAREHOUSE      the DuckDB file instead of `warehouse` (`cdp run --warehouse` wins)
  CDP_ENGINE         duckdb or spark instead of `engine`
  DAGSTER_HOME       the Dagster instance instead of `dagster_home/` beside the warehouse
  CDP_PROFILE_STORE  profile_api.store      (a deployment keeps the serving copy on its data volume,
  CDP_KEYS_FILE      profile_api.keys_file   the users and keys files in a secret, the audit log
  CDP_USERS_FILE     workspace.users_file    and the sessions on volumes it may write, wherever the
  CDP_SESSIONS_FILE  workspace.sessions_file tenant config sits: deploy/, the `serve` service)
  CDP_AUDIT_LOG      audit.path
  secrets            the variables the config names - destinations.<name>.url_env (PostgreSQL
                     URLs), profile_api.api_key_env (the deprecated single key): read by
                     `TenantConfig.secret(name)` when used, never kept on the config

Set by cdp for the processes it starts, never read back by it: CDP_CONFIG and DAGSTER_HOME for
`cdp ui`'s `dagster dev` (child_process_env, below); CDP_WAREHOUSE, CDP_DBT_TARGET,
CDP_LAKEHOUSE, CDP_LAKEHOUSE_TABLES, CDP_SPARK_MASTER, CDP_SPARK_SHUFFLE_PARTITIONS, CDP_DUCKDB_MEMORY_LIMIT,
CDP_DUCKDB_TEMP_DIRECTORY and
DBT_INDIRECT_SELECTION for dbt, around each dbt invocation only (cdp/dbt/project.py);
PYSPARK_PYTHON for Spark's Python workers (cdp/engine/spark/session.py). dbt's profiles.yml also reads
CDP_SPARK_DRIVER_MEMORY (default 2g) from the environment itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from cdp.config.common import ConfigError
from cdp.config.tenant import Overrides, TenantConfig
from cdp.paths import DEMO_CONFIG

DEFAULT_CONFIG = DEMO_CONFIG
ENGINES = ("duckdb", "spark")
# environment variable -> (section, field) it sets
SECTION_OVERRIDES = {
    "CDP_PROFILE_STORE": ("profile_api", "store"),
    "CDP_KEYS_FILE": ("profile_api", "keys_file"),
    "CDP_USERS_FILE": ("workspace", "users_file"),
    "CDP_SESSIONS_FILE": ("workspace", "sessions_file"),
    "CDP_AUDIT_LOG": ("audit", "path"),
}


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        parts = list(e["loc"])
        if len(parts) > 2 and parts[0] == "destinations" and parts[2] in ("file", "postgres", "webhook"):
            del parts[2]  # the destination kind pydantic picked, not a field the user wrote
        loc = ".".join(str(p) for p in parts)
        msg = e["msg"].removeprefix("Value error, ")
        # model-level validators report their own dotted field inside the message
        if re.match(r"^[a-z_]+[\w.\[\]]*: ", msg) and loc:
            lines.append(f"{path}: {loc}.{msg}")
        elif re.match(r"^[a-z_]+[\w.\[\]]*: ", msg):
            lines.append(f"{path}: {msg}")
        else:
            lines.append(f"{path}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, *, warehouse: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None) -> TenantConfig:
    """Load and validate a tenant config; raise ConfigError naming file and field.

    `path`: the YAML (default $CDP_CONFIG, else the demo tenant); `warehouse`: a DuckDB file that
    wins over $CDP_WAREHOUSE and the config's own (`cdp run --warehouse`); `environ`: the
    environment to read (default os.environ), read once, here."""
    env = os.environ if environ is None else environ
    path = Path(path or env.get("CDP_CONFIG") or DEFAULT_CONFIG).resolve()
    cfg = _validated(path, _read_yaml(path))
    cfg.base_dir = path.parent
    cfg.config_path = path
    overrides = _overrides(env, warehouse)
    sections = _override_sections(cfg, env)
    cfg._overrides = overrides.model_copy(update={"origin": {**overrides.origin, **sections}})
    return cfg


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping with tenant and sources")
    return raw


def _validated(path: Path, raw: dict) -> TenantConfig:
    try:
        return TenantConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None


def _overrides(env: Mapping[str, str], warehouse: str | os.PathLike | None) -> Overrides:
    """The warehouse, engine and Dagster instance the environment (or --warehouse) sets."""
    origin: dict[str, str] = {}
    if warehouse:
        origin["warehouse"] = "--warehouse"
    elif env.get("CDP_WAREHOUSE"):
        warehouse = env["CDP_WAREHOUSE"]
        origin["warehouse"] = "CDP_WAREHOUSE"
    engine = env.get("CDP_ENGINE") or None
    if engine is not None:
        if engine not in ENGINES:
            raise ConfigError(f"CDP_ENGINE: {engine!r} is not an engine; expected duckdb or spark")
        origin["engine"] = "CDP_ENGINE"
    dagster_home = env.get("DAGSTER_HOME") or None
    if dagster_home is not None:
        origin["dagster_home"] = "DAGSTER_HOME"
    return Overrides(warehouse=Path(warehouse).resolve() if warehouse else None, engine=engine,
                     dagster_home=Path(dagster_home).resolve() if dagster_home else None, origin=origin)


def _override_sections(cfg: TenantConfig, env: Mapping[str, str]) -> dict[str, str]:
    """Set the section fields the environment overrides; section.field -> variable."""
    origin = {}
    for name, (section, field) in SECTION_OVERRIDES.items():
        if env.get(name):
            setattr(getattr(cfg, section), field, env[name])
            origin[f"{section}.{field}"] = name
    return origin


def child_process_env(cfg: TenantConfig, dagster_home: bool = False) -> dict[str, str]:
    """The environment of a process cdp starts that loads this tenant config again itself
    (`cdp ui` -> `dagster dev`'s code location): this process's environment plus CDP_CONFIG
    naming the file, the warehouse when it was given as an argument, and with `dagster_home`
    DAGSTER_HOME naming the tenant's instance. A new dict: os.environ is left as it is."""
    env = dict(os.environ)
    env["CDP_CONFIG"] = str(cfg.config_path)
    if cfg.overrides.origin.get("warehouse") == "--warehouse":
        env["CDP_WAREHOUSE"] = str(cfg.warehouse_path)
    if dagster_home:
        env["DAGSTER_HOME"] = str(cfg.dagster_home)
    return env
