"""The production instance (deploy/dagster.yaml) against a real PostgreSQL: the demo tenant is
materialized with run/event storage in Postgres, the export sensor is started with `dagster sensor
start`, then a real `dagster-daemon run` asks for nothing after that `cdp run`, picks up a new
customer_360 materialization of changed data (the queued run coordinator launches the export run
and its file lands on disk), and after a restart asks for nothing again."""

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

from cdp.config import DEFAULT_CONFIG

PG_URL = os.environ.get("CDP_TEST_POSTGRES_URL")
DEPLOY = Path(__file__).parents[2] / "deploy"
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
    assert deployment["codeServerArgs"] == ["-m", "cdp.definitions"]
    assert "cdp.definitions" in (DEPLOY / "Dockerfile").read_text()


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


def compose_env() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["serve"]["environment"]


def test_serve_service_in_compose_and_helm_takes_the_same_settings():
    """`cdp serve` (Profile API + workspace) is deployed by compose and by the chart with the same
    environment: the API key and session secret the tenant config names, read from the
    environment / a Secret; the warehouse volume and the users file mounted read-only."""
    from cdp.config import load_config

    cfg = load_config(DEFAULT_CONFIG)
    secrets = set()   # keys and users are files of hashes (read-only mounts); no secret in the environment
    paths = {"CDP_CONFIG", "CDP_WAREHOUSE", "CDP_PROFILE_STORE", "CDP_USERS_FILE", "CDP_KEYS_FILE",
             "CDP_SESSIONS_FILE", "CDP_AUDIT_LOG"}
    assert cfg.workspace.session_secret_env not in compose_env() and "CDP_SESSION_SECRET" not in compose_env()

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    serve = compose["services"]["serve"]
    assert serve["command"][:2] == ["cdp", "serve"]
    env = serve["environment"]
    assert secrets | paths <= set(env)
    for name in secrets:   # from deploy/.env, compose refuses to start without them
        assert env[name].startswith(f"${{{name}:?"), env[name]
    assert "cdp_data:/data:ro" in serve["volumes"]
    for name in ("CDP_USERS_FILE", "CDP_KEYS_FILE"):
        mounted = [v for v in serve["volumes"] if v.endswith(":" + env[name] + ":ro")]
        assert len(mounted) == 1, (name, serve["volumes"])
    # serve writes only its audit log and its sessions: volumes of their own, not the warehouse's
    audit_dir = str(Path(env["CDP_AUDIT_LOG"]).parent)
    sessions_dir = str(Path(env["CDP_SESSIONS_FILE"]).parent)
    writable = [v for v in serve["volumes"] if not v.endswith(":ro")]
    assert sorted(writable) == sorted([f"cdp_audit:{audit_dir}", f"cdp_sessions:{sessions_dir}"]), serve["volumes"]
    assert {"cdp_audit", "cdp_sessions"} <= set(compose["volumes"]) and not env["CDP_AUDIT_LOG"].startswith("/data/")
    for folder in (audit_dir, sessions_dir):
        assert folder in (DEPLOY / "Dockerfile").read_text()   # created and owned by the image's user
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
    assert all(m.get("readOnly") for name, m in mounts.items() if name not in ("cdp-audit", "cdp-sessions"))
    assert not mounts["cdp-audit"].get("readOnly") and "persistentVolumeClaim" in volumes["cdp-audit"]
    assert helm_env["CDP_AUDIT_LOG"]["value"].startswith(mounts["cdp-audit"]["mountPath"] + "/")
    assert volumes["cdp-audit"]["persistentVolumeClaim"]["claimName"] != volumes["cdp-data"][
        "persistentVolumeClaim"]["claimName"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 1000
    assert helm_env["CDP_SESSIONS_FILE"]["value"].startswith(mounts["cdp-sessions"]["mountPath"] + "/")
    assert "emptyDir" in volumes["cdp-sessions"]
    assert helm_env["CDP_KEYS_FILE"]["value"].startswith(mounts["cdp-users"]["mountPath"] + "/")
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


def test_dagster_ui_is_published_only_behind_an_authenticating_proxy():
    """Dagster OSS has no login: in compose the webserver publishes no port and is reached only
    through the dagster_ui proxy, which asks for a password (basic auth, a bcrypt hash from
    deploy/.env); in Kubernetes the webserver is a ClusterIP service and the chart's Ingress is off."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    webserver, proxy = services["webserver"], services["dagster_ui"]
    assert "ports" not in webserver and webserver["expose"] == ["3000"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"dagster_ui", "serve"}, published   # serve has its own login and API key
    assert proxy["ports"] == ["${DAGSTER_UI_PORT:-3000}:3000"]
    for name in ("DAGSTER_UI_USER", "DAGSTER_UI_PASSWORD_HASH"):   # compose refuses to start without
        assert proxy["environment"][name].startswith(f"${{{name}:?"), name
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    site = caddyfile[caddyfile.index("{$DAGSTER_UI_SITE"):]
    assert "basic_auth" in site and "{$DAGSTER_UI_PASSWORD_HASH}" in site
    assert "reverse_proxy webserver:3000" in site
    assert site.index("basic_auth") < site.index("reverse_proxy")
    example = (DEPLOY / ".env.example").read_text()
    assert "DAGSTER_UI_USER=" in example and "DAGSTER_UI_PASSWORD_HASH='" in example
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False
    readme = (DEPLOY / "README.md").read_text()
    assert "no login" in readme and "oauth2-proxy" in readme


def test_profile_store_and_users_file_follow_the_environment(monkeypatch):
    from cdp.config import load_config

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


def _sensor_ticks(instance) -> list:
    """The export sensor's ticks, newest first."""
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return []


def _daemon(workspace: Path, env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(daemon: subprocess.Popen) -> None:
    os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


def _wait_for(what: str, found, daemon: subprocess.Popen, log_path: Path):
    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    while time.monotonic() < deadline:
        if result := found():
            return result
        assert daemon.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{what} within {DAEMON_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.postgres
@pytest.mark.slow
@needs_postgres
def test_daemon_sends_only_new_data_against_postgres(tmp_path, fresh_database, monkeypatch):
    """After `cdp run` the started sensor asks for nothing; a new materialization of changed data
    is exported exactly once; a restarted daemon asks for nothing again."""
    import dagster as dg
    import duckdb
    from dagster._core.scheduler.instigation import TickStatus
    from dagster._core.storage.tags import SENSOR_NAME_TAG

    from cdp.cli import run_tenant
    from cdp.demo.generate import generate_demo_data

    tenant = tmp_path / "tenant" / "tenant.yaml"
    tenant.parent.mkdir()
    shutil.copy(DEFAULT_CONFIG, tenant)
    shutil.copytree(DEFAULT_CONFIG.parent / "queries", tenant.parent / "queries")
    generate_demo_data(tenant.parent / "data", people=PEOPLE, seed=11)
    exports = tenant.parent / "exports" / "c360"

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
        assert len(list(exports.glob("*.csv"))) == 1

        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
            "module_name": "cdp.definitions", "location_name": "cdp",
            "working_directory": str(Path(__file__).parents[2])}}]}))
        # stopped by default: started the way the README says
        started = subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "start", SENSOR,
                                  "-w", str(workspace)], env=env, capture_output=True, text=True)
        assert started.returncode == 0, started.stdout + started.stderr

        def sensor_runs():
            return instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: SENSOR}))

        log_path = tmp_path / "daemon.log"
        daemon = _daemon(workspace, env, log_path)
        try:
            # 1. the first tick after `cdp run`: the export is newer than customer_360 - nothing
            _wait_for("no tick of the started sensor", lambda: [
                t for t in _sensor_ticks(instance) if t.status != TickStatus.STARTED], daemon, log_path)
            [tick] = _sensor_ticks(instance)
            assert tick.status == TickStatus.SKIPPED and "up to date" in tick.skip_reason

            # 2. customer_360 changes and is materialized again: exactly one export run, one file
            con = duckdb.connect(str(tenant.parent / "warehouse.duckdb"))
            con.execute("update c360.customer_360 set email = 'changed@example.com' "
                        "where cdp_id = (select min(cdp_id) from c360.customer_360)")
            con.close()
            instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(["c360", "customer_360"])))
            export_run = _wait_for("no finished export run", lambda: next(
                (r for r in sensor_runs() if r.is_finished), None), daemon, log_path)
        finally:
            _stop(daemon)
        assert export_run.job_name == "activation_exports"
        assert export_run.status == dg.DagsterRunStatus.SUCCESS, log_path.read_text()[-3000:]
        assert len(sensor_runs()) == 1
        [exported] = exports.glob(f"*__{export_run.run_id[:8]}.csv")
        assert "changed@example.com" in exported.read_text() and len(list(exports.glob("*.csv"))) == 2

        # 3. the daemon restarts: its next tick asks for nothing
        ticks_before = len(_sensor_ticks(instance))
        daemon = _daemon(workspace, env, log_path)
        try:
            _wait_for("no tick after the restart", lambda: len(_sensor_ticks(instance)) > ticks_before and
                      _sensor_ticks(instance)[0].status != TickStatus.STARTED, daemon, log_path)
        finally:
            _stop(daemon)
        assert _sensor_ticks(instance)[0].status == TickStatus.SKIPPED
        assert len(sensor_runs()) == 1 and len(list(exports.glob("*.csv"))) == 2
