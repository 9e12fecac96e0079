"""The audit log: workspace queries, exports, saves and profile views, and Profile API key use
(counted per minute, off the request path), written to a SQLite file outside the warehouse;
read with `cdp audit` and on /workspace/audit."""

import multiprocessing
import re
import shutil
import sqlite3
import time
from datetime import date, timedelta
from types import SimpleNamespace

import duckdb
import pytest
from fastapi.testclient import TestClient

from cdp.serve.access import create_key
from cdp.serve.audit import AuditLog, Principal, request_principal
from cdp.cli import main as cdp
from cdp.config import load_config
from cdp.serve.server import create_server
from cdp.serve.workspace.auth import add_user

USER, ANALYST, PASSWORD = "ana", "bo", "correct horse battery"
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def audit_tenant(pipeline_run, demo_tenant, tmp_path_factory):
    """A copy of the demo config beside it (same data, warehouse and profile store) with its own
    queries folder, users, keys, sessions and audit log: an admin, an analyst, a website's key."""
    root = demo_tenant.parent
    doc = (root / "tenant.yaml").read_text().replace("  folder: queries ", "  folder: queries_audit ")
    assert "queries_audit" in doc and "  keys_file: api_keys.yaml " in doc
    doc = doc.replace("  keys_file: api_keys.yaml ", "  keys_file: api_keys_audit.yaml ")
    path = root / "tenant_audit.yaml"
    path.write_text(doc + "\nworkspace:\n  users_file: users_audit.yaml\n  sessions_file: sessions_audit.sqlite\n"
                          "audit:\n  path: audit/audit_test.sqlite3\n")
    shutil.copytree(root / "queries", root / "queries_audit", dirs_exist_ok=True)
    cfg = load_config(path)
    add_user(cfg.resolve(cfg.workspace.users_file), USER, PASSWORD, role="admin")
    add_user(cfg.resolve(cfg.workspace.users_file), ANALYST, PASSWORD, role="analyst")
    KEYS["website"] = create_key(cfg.resolve(cfg.profile_api.keys_file), "website", ["profiles:read"])
    return path


@pytest.fixture(scope="module")
def app(audit_tenant):
    return create_server(load_config(audit_tenant))


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def _login(client, user: str = USER):
    """Log in; the client then sends the session's CSRF token, as the page's htmx does."""
    form = client.get("/workspace/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form).group(1)
    r = client.post("/workspace/login", data={"username": user, "password": PASSWORD, "login_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/workspace/people").text).group(1)
    client.headers["X-CSRF-Token"] = csrf


def _events(cfg, **filters):
    return AuditLog(cfg.resolve(cfg.audit.path)).read(**filters)


def test_workspace_queries_exports_saves_and_page_views_are_audited(client, audit_tenant):
    cfg = load_config(audit_tenant)
    _login(client)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        people, cdp_id = con.execute("select count(*), min(cdp_id) from c360.customer_360").fetchone()

    sql = "select cdp_id, email from c360.customer_360 order by cdp_id"
    assert client.post("/workspace/sql/run", data={"sql": sql, "limit": "7"}).status_code == 200
    r = client.post("/workspace/sql/csv", data={"sql": sql, "name": "emails"})
    assert r.status_code == 200 and r.text.count("\n") == people + 1
    assert client.post("/workspace/sql/save", data={"name": "audited_query", "sql": sql,
                                                    "overwrite": "on"}).status_code == 200
    form = {"name": "audited_segment", "combine": "all", "row_count": "1", "row-0-kind": "condition",
            "row-0-table": "c360.customer_360", "row-0-column": "order_count", "row-0-op": ">", "row-0-value": "2"}
    assert client.post("/workspace/segments/save", data=form).status_code == 200, "segment saved"
    assert client.get(f"/workspace/people/{cdp_id}").status_code == 200
    # a refused query is no query run
    assert client.post("/workspace/sql/run", data={"sql": "drop table x"}).status_code == 422

    got = {e["action"]: e for e in _events(cfg, user=USER)}
    assert {"query.run", "query.export", "query.save", "segment.save", "person.view"} <= set(got)
    for e in got.values():
        assert e["principal"] == USER and e["kind"] == "user" and e["client_ip"] == "testclient"
        assert e["at"][:10] == time.strftime("%Y-%m-%d", time.gmtime())
    assert got["query.run"]["what"] == sql and got["query.run"]["rows"] == 7
    assert got["query.run"]["detail"]["more_rows"] is True
    assert got["query.export"]["what"] == sql and got["query.export"]["rows"] == people
    assert got["query.export"]["detail"]["file"] == "emails.csv"
    assert got["query.save"]["what"] == "audited_query"
    assert got["segment.save"]["what"] == "audited_segment"
    assert got["person.view"]["what"] == cdp_id and got["person.view"]["rows"] == 1
    assert len([e for e in _events(cfg, user=USER) if e["action"] == "query.run"]) == 1


def test_api_key_use_is_counted_per_key_endpoint_and_minute(client, app, audit_tenant):
    cfg = load_config(audit_tenant)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        cdp_id, email = con.execute("select cdp_id, email from c360.customer_360 where email is not null "
                                    "order by cdp_id limit 1").fetchone()
    app.state.audit.flush(everything=True)
    before = len(_events(cfg, action="api"))
    for _ in range(30):
        assert client.get(f"/profiles/{cdp_id}", headers={"X-API-Key": KEYS["website"]}).status_code == 200
    for _ in range(5):
        client.get("/profiles/lookup", params={"email": email}, headers={"X-API-Key": KEYS["website"]})
    for _ in range(3):
        assert client.get(f"/profiles/{cdp_id}", headers={"X-API-Key": "guess"}).status_code == 401
    # nothing written on the request path: the counts wait for their minute to end
    assert len(_events(cfg, action="api")) == before
    app.state.audit.flush(everything=True)
    new = _events(cfg, action="api")[: len(_events(cfg, action="api")) - before]
    by: dict[tuple, int] = {}   # a minute may end during the test: two rows then, summed here
    for e in new:
        key = (e["principal"], e["kind"], e["action"], e["what"])
        by[key] = by.get(key, 0) + e["rows"]
        assert e["detail"] == {"aggregated": "per minute"} and e["at"].endswith(":00.000")  # the minute's start
        assert email not in e["what"]          # which endpoint, never the value looked up
    assert by == {("website", "key", "api.key_use", "/profiles/{cdp_id}"): 30,
                  ("website", "key", "api.key_use", "/profiles/lookup?email"): 5,
                  ("wrong key", "key", "api.key_denied", "/profiles/{cdp_id}"): 3}
    assert len(new) <= 6


def test_counting_a_request_costs_microseconds(tmp_path):
    """The hot path only bumps a counter: 1,000 req/s cost well under a millisecond a second."""
    log = AuditLog(tmp_path / "audit.sqlite3")
    who = Principal("api-key", "key")
    t0 = time.perf_counter()
    for i in range(20_000):
        log.count(who, "api.key_use", "/profiles/{cdp_id}", f"10.0.0.{i % 50}")
    per_call = (time.perf_counter() - t0) / 20_000
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} µs per request"
    log.flush(everything=True)
    events = log.read()
    assert 50 <= len(events) <= 100 and sum(e["rows"] for e in events) == 20_000
    log.close()


def test_the_audit_page_filters_and_is_not_for_the_api_key(client, audit_tenant):
    _login(client)
    client.post("/workspace/sql/run", data={"sql": "select 42 as answer"})
    page = client.get("/workspace/audit", params={"user": USER, "action": "query.run"})
    assert page.status_code == 200 and "select 42 as answer" in page.text and 'id="audit-table"' in page.text
    assert "person.view" not in page.text.split('id="audit-table"')[1]
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert "select 42" not in client.get("/workspace/audit", params={"since": tomorrow}).text
    assert "not a date" in client.get("/workspace/audit", params={"since": "last week"}).text
    with TestClient(client.app) as machine:   # no session: the Profile API key
        r = machine.get("/workspace/audit", headers={"X-API-Key": KEYS["website"]})
        assert r.status_code == 403


def test_the_log_names_who_the_auth_layer_found_and_only_admins_read_it(client, audit_tenant):
    """The analyst's query is logged under the analyst; an analyst may not read the log, an admin
    may; the accessor reads request.state.principal, else the name it is given."""
    _login(client, ANALYST)
    assert client.post("/workspace/sql/run", data={"sql": "select 'bo was here' as x"}).status_code == 200
    assert client.get("/workspace/audit").status_code == 403
    client.cookies.clear()
    _login(client, USER)
    assert "bo was here" in client.get("/workspace/audit", params={"user": ANALYST}).text
    cfg = load_config(audit_tenant)
    assert any(e["what"] == "select 'bo was here' as x" and e["kind"] == "user"
               for e in _events(cfg, user=ANALYST, action="query.run"))
    req = SimpleNamespace(state=SimpleNamespace(principal={"name": "k1", "kind": "key"}), scope={})
    assert request_principal(req) == Principal("k1", "key")
    req = SimpleNamespace(state=SimpleNamespace(), scope={})
    assert request_principal(req, "ana") == Principal("ana", "user")
    assert request_principal(req) is None


def test_cdp_audit_prints_the_log(client, audit_tenant, capsys):
    _login(client)
    client.post("/workspace/sql/run", data={"sql": "select 'cli' as shown"})
    capsys.readouterr()
    assert cdp(["audit", "--config", str(audit_tenant), "--user", USER]) == 0
    out = capsys.readouterr().out
    assert "query.run" in out and "select 'cli' as shown" in out and "testclient" in out
    assert out.splitlines()[0].startswith("when (UTC)")
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert cdp(["audit", "--config", str(audit_tenant), "--since", tomorrow]) == 0
    assert "no events matching the filters" in capsys.readouterr().out
    assert cdp(["audit", "--config", str(audit_tenant), "--user", USER, "--action", "query", "--json",
                "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and '"action": "query.' in lines[0]
    assert cdp(["audit", "--config", str(audit_tenant), "--since", "yesterday-ish"]) == 2


def test_the_log_survives_a_warehouse_rebuild_and_is_append_only(audit_tenant, tmp_path, monkeypatch):
    """The log is its own file: a warehouse built again from nothing (here: deleted, then a
    domain table materialized into a new file) leaves every event in place."""
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from cdp.stages.sources.assets import build_source_asset

    monkeypatch.setenv("CDP_WAREHOUSE", str(tmp_path / "rebuilt.duckdb"))
    cfg = load_config(audit_tenant)
    path = cfg.resolve(cfg.audit.path)
    assert cfg.warehouse_path.parent == tmp_path and tmp_path not in path.parents
    log = AuditLog(path)
    log.record(Principal(USER), "query.run", "select 'before the rebuild'", 1, "127.0.0.1")
    before = len(log.read(limit=100_000))
    for _ in range(2):
        cfg.warehouse_path.unlink(missing_ok=True)
        with dg.instance_for_test() as instance:
            assert dg.materialize([build_source_asset(cfg, "pos_customers", cfg.sources["pos_customers"])],
                                  resources={"warehouse": DuckDBResource(database=str(cfg.warehouse_path))},
                                  instance=instance).success
    assert len(log.read(limit=100_000)) == before
    assert log.read(limit=1)[0]["what"] == "select 'before the rebuild'"
    with sqlite3.connect(path) as con:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("update audit_events set principal = 'someone else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("delete from audit_events")
    log.close()


def test_the_audit_path_follows_the_environment(audit_tenant, monkeypatch, tmp_path):
    monkeypatch.setenv("CDP_AUDIT_LOG", str(tmp_path / "elsewhere.sqlite3"))
    cfg = load_config(audit_tenant)
    assert cfg.resolve(cfg.audit.path) == tmp_path / "elsewhere.sqlite3"


def _writer(path: str, worker: int, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.record(Principal(f"user{worker}"), "query.run", f"select {i}", i, "127.0.0.1")
        log.count(Principal("api-key", "key"), "api.key_use", "/profiles/{cdp_id}", "127.0.0.1")
    log.close()


@pytest.mark.slow
def test_several_server_processes_write_one_log(tmp_path):
    """`cdp serve --workers N`: processes append to the same file at the same time (WAL, short
    transactions) without losing an event."""
    path = str(tmp_path / "audit.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = AuditLog(path).read(limit=100_000)
    runs = [e for e in events if e["action"] == "query.run"]
    assert len(runs) == 600 and {e["principal"] for e in runs} == {f"user{w}" for w in range(4)}
    assert sum(e["rows"] for e in events if e["action"] == "api.key_use") == 600
