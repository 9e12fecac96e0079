"""The production instance (deploy/dagster.yaml) against a real PostgreSQL: the demo tenant is
materialized with run/event storage in Postgres, then a real `dagster-daemon run` picks up the
customer_360 materialization, the export sensor requests a run, the queued run coordinator
launches it and the export file lands on disk."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from cdp_assets.config import DEFAULT_CONFIG

PG_URL = os.environ.get("CDP_TEST_POSTGRES_URL")
DEPLOY = Path(__file__).parent.parent / "deploy"
SENSOR = "export_on_c360_customer_360_refresh"
PEOPLE = 200
DAEMON_TIMEOUT_S = 240  # generous: only a failing run waits this long

needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="CDP_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL "
                       "(locally: bash -c 'source .ci/postgres.sh; .venv/bin/python -m pytest')")


def test_deploy_yaml_files_parse():
    """No Docker or Kubernetes here: at least every YAML we ship parses and names our code location."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"postgres", "user_code", "webserver", "daemon"} <= set(compose["services"])
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == "cdp"
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["codeServerArgs"] == ["-m", "cdp_assets.definitions"]
    assert "cdp_assets.definitions" in (DEPLOY / "Dockerfile").read_text()


def _render_chart(chart: Path, release: str = "cdp") -> list[dict]:
    """The chart's templates with `{{ .Values.a.b }}` / `{{ .Release.Name }}` filled in from its
    values.yaml (all these templates use; no helm binary here), each parsed as YAML."""
    import re

    values = yaml.safe_load((chart / "values.yaml").read_text())

    def value(match):
        path = match.group(1)
        if path == ".Release.Name":
            return release
        assert path.startswith(".Values."), path
        node = values
        for part in path.removeprefix(".Values.").split("."):
            assert isinstance(node, dict) and part in node, f"{chart.name}: no value {path}"
            node = node[part]
        return str(node)
    return [yaml.safe_load(re.sub(r"\{\{\s*(\S+)\s*\}\}", value, t.read_text()))
            for t in sorted((chart / "templates").glob("*.yaml"))]


def test_serve_service_in_compose_and_helm_takes_the_same_settings():
    """`cdp serve` (Profile API + workspace) is deployed by compose and by the chart with the same
    environment: the API key and session secret the tenant config names, read from the
    environment / a Secret; the warehouse volume and the users file mounted read-only."""
    from cdp_assets.config import load_config

    cfg = load_config(DEFAULT_CONFIG)
    secrets = {cfg.profile_api.api_key_env, cfg.workspace.session_secret_env}
    paths = {"CDP_CONFIG", "CDP_WAREHOUSE", "CDP_PROFILE_STORE", "CDP_USERS_FILE"}

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    serve = compose["services"]["serve"]
    assert serve["command"][:2] == ["cdp", "serve"]
    env = serve["environment"]
    assert secrets | paths <= set(env)
    for name in secrets:   # from deploy/.env, compose refuses to start without them
        assert env[name].startswith(f"${{{name}:?"), env[name]
    assert "cdp_data:/data:ro" in serve["volumes"]
    users = [v for v in serve["volumes"] if v.endswith(":" + env["CDP_USERS_FILE"] + ":ro")]
    assert len(users) == 1, serve["volumes"]
    # the runs write the profile store where serve reads it
    user_code = compose["services"]["user_code"]["environment"]
    for name in ("CDP_WAREHOUSE", "CDP_PROFILE_STORE", "CDP_CONFIG"):
        assert user_code[name] == env[name], name
    assert env["CDP_PROFILE_STORE"].startswith("/data/")

    deployment, service = _render_chart(DEPLOY / "helm" / "cdp-serve")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["cdp", "serve"]
    helm_env = {e["name"]: e for e in container["env"]}
    assert secrets | paths <= set(helm_env)
    for name in secrets:
        assert helm_env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert all(m.get("readOnly") for m in mounts.values())
    assert volumes["cdp-data"]["persistentVolumeClaim"]["readOnly"]
    assert helm_env["CDP_WAREHOUSE"]["value"].startswith(mounts["cdp-data"]["mountPath"] + "/")
    assert helm_env["CDP_PROFILE_STORE"]["value"].startswith(mounts["cdp-data"]["mountPath"] + "/")
    assert helm_env["CDP_USERS_FILE"]["value"].startswith(mounts["cdp-users"]["mountPath"] + "/")
    assert "secret" in volumes["cdp-users"]
    assert service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]
    # the Dagster deployment's runs write the same PVC the chart reads
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    runs = values["dagster-user-deployments"]["deployments"][0]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in runs["volumes"] if "persistentVolumeClaim" in v}
    assert volumes["cdp-data"]["persistentVolumeClaim"]["claimName"] in claims
    run_env = {e["name"]: e["value"] for e in runs["env"]}
    assert run_env["CDP_PROFILE_STORE"] == helm_env["CDP_PROFILE_STORE"]["value"]


def test_profile_store_and_users_file_follow_the_environment(monkeypatch):
    from cdp_assets.config import load_config

    monkeypatch.setenv("CDP_PROFILE_STORE", "/data/profile_store.sqlite")
    monkeypatch.setenv("CDP_USERS_FILE", "/run/cdp/users.yaml")
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.resolve(cfg.profile_api.store) == Path("/data/profile_store.sqlite")
    assert cfg.resolve(cfg.workspace.users_file) == Path("/run/cdp/users.yaml")
    monkeypatch.delenv("CDP_PROFILE_STORE")
    plain = load_config(DEFAULT_CONFIG)
    assert plain.resolve(plain.profile_api.store) == DEFAULT_CONFIG.parent / "profile_store.sqlite"


@pytest.fixture()
def fresh_database():
    """A database of its own on the test server, dropped afterwards."""
    import psycopg

    name = f"cdp_deploy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as pg:
        pg.execute(f'create database "{name}"')
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as pg:
        pg.execute(f'drop database "{name}" with (force)')


def _deployment_env(database: str, dagster_home: Path, tenant: Path) -> dict[str, str]:
    url = urlparse(PG_URL)
    env = dict(os.environ)
    env.update({
        "DAGSTER_HOME": str(dagster_home), "CDP_CONFIG": str(tenant),
        "DAGSTER_PG_HOST": url.hostname, "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres", "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": database,
    })
    env.pop("CDP_WAREHOUSE", None)
    return env


def _sensor_tick_with_run(instance):
    """The export sensor's first tick that requested a run, or None."""
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR:
            for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
                if tick.run_ids:
                    return tick
    return None


@needs_postgres
def test_daemon_fires_export_sensor_against_postgres(tmp_path, fresh_database, monkeypatch):
    import dagster as dg
    from dagster._core.storage.tags import SENSOR_NAME_TAG

    from cdp_assets.cli import run_tenant
    from cdp_assets.generate import generate_demo_data

    tenant = tmp_path / "tenant" / "tenant.yaml"
    tenant.parent.mkdir()
    shutil.copy(DEFAULT_CONFIG, tenant)
    shutil.copytree(DEFAULT_CONFIG.parent / "queries", tenant.parent / "queries")
    generate_demo_data(tenant.parent / "data", people=PEOPLE, seed=11)

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    env = _deployment_env(fresh_database, dagster_home, tenant)
    for key in ("DAGSTER_HOME", "CDP_CONFIG", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT",
                "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("CDP_WAREHOUSE", raising=False)

    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_tenant(str(tenant), quiet=True, instance=instance)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        assert instance.get_latest_materialization_event(dg.AssetKey(["c360", "customer_360"]))

        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
            "module_name": "cdp_assets.definitions", "location_name": "cdp",
            "working_directory": str(Path(__file__).parent.parent)}}]}))
        daemon_log = tmp_path / "daemon.log"
        with open(daemon_log, "w") as log:
            daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + DAEMON_TIMEOUT_S
            tick, export_run = None, None
            while time.monotonic() < deadline:
                tick = tick or _sensor_tick_with_run(instance)
                if tick:
                    runs = instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: SENSOR}))
                    if runs and runs[0].is_finished:
                        export_run = runs[0]
                        break
                assert daemon.poll() is None, daemon_log.read_text()[-3000:]
                time.sleep(2)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()

        assert tick is not None, f"no {SENSOR} tick requested a run:\n{daemon_log.read_text()[-3000:]}"
        assert export_run is not None, f"the export run did not finish in {DAEMON_TIMEOUT_S}s"
        assert export_run.job_name == "activation_exports"
        assert export_run.run_id in tick.run_ids
        assert export_run.status == dg.DagsterRunStatus.SUCCESS, daemon_log.read_text()[-3000:]

    exported = list((tenant.parent / "exports" / "c360").glob(f"*__{export_run.run_id[:8]}.csv"))
    assert len(exported) == 1, list((tenant.parent / "exports").rglob("*"))
    lines = exported[0].read_text().splitlines()
    assert lines[0].startswith("cdp_id") and len(lines) > 1
