"""Configuration comes in by one door: cdp/config/loader.py reads the environment, once, when a
config is loaded; the CLI passes paths as arguments and leaves os.environ as it found it."""

import ast
import os
from pathlib import Path

import pytest

import cdp
from cdp.config import ConfigError, child_process_env, load_config

CDP = Path(cdp.__file__).parent
TINY = Path(__file__).parents[1] / "tiny"
THE_DOOR = "config/loader.py"
# modules that touch the environment for a library that reads nothing else, and why
ALLOWED = {
    "config/secrets.py": "a secret a setting names (url_env, api_key_env) is read when it is used, "
                         "never kept on the config (TenantConfig.secret)",
    "engine/spark/session.py": "PYSPARK_PYTHON (setdefault) tells Spark's Python workers to run this "
                       "interpreter; pyspark reads it from the environment only",
    "dbt/project.py": "dagster-dbt's DbtCliResource.cli hands dbt a copy of os.environ and takes no "
                      "env of its own: profiles.yml's CDP_WAREHOUSE/CDP_SPARK_* and "
                      "DBT_INDIRECT_SELECTION are set around one dbt invocation and restored",
}
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(path: Path) -> list[int]:
    """Lines of a module that read or write the process environment (os.environ, os.getenv...)."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ENV_NAMES for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_the_config_loader_reads_the_environment():
    found = {str(p.relative_to(CDP)): lines for p in sorted(CDP.rglob("*.py"))
             if (lines := environment_uses(p))}
    assert THE_DOOR in found
    outside = {m: lines for m, lines in found.items() if m != THE_DOOR and m not in ALLOWED}
    assert not outside, f"read the environment through cdp.config (load_config, cfg.secret): {outside}"
    assert set(ALLOWED) <= set(found), "an allowed module no longer touches the environment: drop it"


def test_the_scan_sees_each_way_of_reading_it(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom os import getenv\nos.environ['A'] = '1'\nos.getenv('B')\n"
                      "x = os.path.join('a', 'b')\n")
    assert environment_uses(module) == [2, 3, 4]


@pytest.fixture()
def tenant(tmp_path) -> Path:
    (tmp_path / "customers.csv").write_text((TINY / "customers.csv").read_text())
    (tmp_path / "tenant.yaml").write_text(
        "tenant: door\nsources:\n  shop_customers:\n    path: customers.csv\n    kind: customers\n"
        "    columns: {id: pk, email: email}\n")
    return tmp_path / "tenant.yaml"


def test_an_environment_override_is_read_once_when_the_config_is_loaded(tenant, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_ENGINE", "spark")
    monkeypatch.setenv("CDP_WAREHOUSE", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "instance"))
    monkeypatch.setenv("CDP_PROFILE_STORE", str(tmp_path / "store.sqlite"))
    cfg = load_config(tenant)
    monkeypatch.setenv("CDP_ENGINE", "duckdb")
    monkeypatch.setenv("CDP_WAREHOUSE", str(tmp_path / "changed.duckdb"))
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.delenv("CDP_PROFILE_STORE")
    assert cfg.active_engine == "spark" and cfg.engine == "duckdb"   # the YAML's own value is kept
    assert cfg.warehouse_path == tmp_path / "env.duckdb"
    assert cfg.dagster_home == tmp_path / "instance"
    assert cfg.resolve(cfg.profile_api.store) == tmp_path / "store.sqlite"
    assert cfg.overrides.origin == {"engine": "CDP_ENGINE", "warehouse": "CDP_WAREHOUSE",
                                    "dagster_home": "DAGSTER_HOME", "profile_api.store": "CDP_PROFILE_STORE"}
    again = load_config(tenant)   # a new load reads the environment as it is now
    assert (again.active_engine, again.warehouse_path) == ("duckdb", tmp_path / "changed.duckdb")
    assert again.dagster_home == (tmp_path / "changed.duckdb").parent / "dagster_home"


def test_the_loader_reads_the_environment_it_is_given(tenant, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_ENGINE", "spark")
    cfg = load_config(environ={"CDP_CONFIG": str(tenant), "CDP_WAREHOUSE": str(tmp_path / "w.duckdb")})
    assert cfg.config_path == tenant and cfg.active_engine == "duckdb"
    assert cfg.warehouse_path == tmp_path / "w.duckdb"
    argued = load_config(tenant, warehouse=tmp_path / "arg.duckdb", environ={"CDP_WAREHOUSE": "/elsewhere.duckdb"})
    assert argued.warehouse_path == tmp_path / "arg.duckdb"      # --warehouse wins over the environment
    assert argued.overrides.origin == {"warehouse": "--warehouse"}
    with pytest.raises(ConfigError, match="CDP_ENGINE: 'presto' is not an engine; expected duckdb or spark"):
        load_config(tenant, environ={"CDP_ENGINE": "presto"})


def test_a_secret_is_read_when_used_and_never_kept(tenant, monkeypatch):
    monkeypatch.delenv("CDP_DOOR_SECRET", raising=False)
    cfg = load_config(tenant)
    assert cfg.secret("CDP_DOOR_SECRET") is None
    monkeypatch.setenv("CDP_DOOR_SECRET", "postgresql://u:pw@db/x")   # set or rotated after the load
    assert cfg.secret("CDP_DOOR_SECRET") == "postgresql://u:pw@db/x"
    assert "pw@db" not in cfg.model_dump_json()


def test_a_child_process_loads_the_same_config_without_os_environ_changing(tenant, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CDP_CONFIG", raising=False)
    before = dict(os.environ)
    cfg = load_config(tenant, warehouse=tmp_path / "run" / "w.duckdb")
    env = child_process_env(cfg, dagster_home=True)
    assert dict(os.environ) == before
    child = load_config(environ=env)     # what `dagster dev`'s code location loads
    assert child.config_path == cfg.config_path and child.warehouse_path == cfg.warehouse_path
    assert child.dagster_home == cfg.dagster_home == tmp_path / "run" / "dagster_home"


def test_cdp_run_passes_its_paths_and_leaves_os_environ_alone(tenant, tmp_path, monkeypatch, capsys):
    """A real `cdp run` in this process: the warehouse goes where --warehouse says, and the
    environment after the run is the one before it (no CDP_CONFIG, CDP_WAREHOUSE, dbt variable)."""
    from cdp.cli import main

    for name in ("CDP_CONFIG", "CDP_WAREHOUSE", "CDP_ENGINE", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    warehouse = tmp_path / "elsewhere" / "w.duckdb"
    before = dict(os.environ)
    assert main(["run", "--config", str(tenant), "--warehouse", str(warehouse)]) == 0
    assert dict(os.environ) == before
    assert f"warehouse {warehouse}" in capsys.readouterr().out
    assert warehouse.exists() and not (tenant.parent / "warehouse.duckdb").exists()
    assert (warehouse.parent / "dagster_home").is_dir()   # the tenant's instance, beside its warehouse
