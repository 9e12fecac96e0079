"""The analyst workspace: a real uvicorn server on the demo pipeline's warehouse, driven by headless
Chromium (Playwright, Debian's /usr/bin/chromium), plus request-level checks of auth, errors and
saving. Screenshots of each page go to test-artifacts/workspace/."""

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from cdp.serve.access import create_key
from cdp.config import load_config
from cdp.serve.server import create_server
from cdp.serve.workspace.auth import UsersFileError, add_user, hash_password, load_users, verify_password
from cdp.serve.workspace.reader import read_warehouse

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "workspace"
USER, PASSWORD = "ana", "correct horse battery"          # an admin
ANALYST, MARKETER = "al", "mia"                           # same password
KEYS: dict[str, str] = {}   # name -> token: "notebook" (workspace scope), "website" (profiles:read)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def workspace_tenant(pipeline_run, demo_tenant):
    """A copy of the demo config beside it (same data and warehouse) with its own queries folder
    and users file, so what the workspace saves does not change the config other tests load."""
    root = demo_tenant.parent
    doc = (root / "tenant.yaml").read_text()
    doc = doc.replace("  folder: queries ", "  folder: queries_workspace ")
    assert "queries_workspace" in doc
    path = root / "tenant_workspace.yaml"
    assert "  keys_file: api_keys.yaml " in doc
    doc = doc.replace("  keys_file: api_keys.yaml ", "  keys_file: api_keys_workspace.yaml ")
    path.write_text(doc + "\nworkspace:\n  users_file: users_workspace.yaml   # who may log in\n"
                          "  sessions_file: sessions_workspace.sqlite\n")
    shutil.copytree(root / "queries", root / "queries_workspace", dirs_exist_ok=True)
    cfg = load_config(path)
    users = cfg.resolve(cfg.workspace.users_file)
    add_user(users, USER, PASSWORD, role="admin")
    add_user(users, ANALYST, PASSWORD, role="analyst")
    add_user(users, MARKETER, PASSWORD, role="marketer")
    keys = cfg.resolve(cfg.profile_api.keys_file)
    KEYS["notebook"] = create_key(keys, "notebook", ["workspace"])
    KEYS["website"] = create_key(keys, "website", ["profiles:read"])
    return path


@pytest.fixture(scope="module")
def server(workspace_tenant, dagster_instance, serve_app):
    """`cdp serve`'s app in a real uvicorn server (a thread of this process, so it can share the
    test's Dagster instance for the rebuild times)."""
    with serve_app(create_server(load_config(workspace_tenant), instance=dagster_instance)) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def wait_js(page, expression: str, timeout: float = 30) -> None:
    """Poll `expression` until true (page.evaluate: Playwright's wait_for_function polls with eval,
    which the workspace's CSP rightly refuses)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        time.sleep(0.1)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_analyst_session_in_the_browser(server, browser, workspace_tenant):
    """Log in, read the customer 360 page, search a person, run a query, build and save a segment."""
    cfg = load_config(workspace_tenant)
    # the server's own way of reading (a test connection with other settings would block it)
    with read_warehouse(cfg.warehouse_path) as con:
        people = con.execute("select count(*) from c360.customer_360").fetchone()[0]
        cdp_id, email = con.execute("""
            select u.cdp_id, min(d.email) from stitch.unified_coalesced u
            join domain.ecommerce_customers d on d.pk = u.pk and u.source = 'ecommerce_customers'
            where d.email is not null group by u.cdp_id order by u.cdp_id limit 1""").fetchone()
        all_records = con.execute("select count(*) from stitch.unified_coalesced where cdp_id = ?",
                                  [cdp_id]).fetchone()[0]
        buyers = con.execute("select count(*) from c360.customer_360 where order_count >= 3").fetchone()[0]
        buyers_without_email = con.execute("select count(*) from c360.customer_360 where order_count >= 3 "
                                           "and email is null").fetchone()[0]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # the workspace's CSP must not block any of its own scripts, styles or requests
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)

    # an unauthenticated page sends you to the login
    page.goto(f"{server}/workspace/sql")
    assert "/workspace/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "wrong user name or password"
    shot(page, "01_login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/workspace/sql$"))

    # customer 360: every database, its figures and its charts (drawn by Chart.js)
    page.goto(f"{server}/workspace/")
    assert page.locator("#db-c360 .profiles").inner_text() == f"{people:,}"
    for db in ("c360", "email_c360", "paid_media_c360", "operations_c360"):
        assert page.locator(f"#db-{db}").count() == 1
    assert "took" in page.locator("#db-c360").inner_text()  # rebuild time from the Dagster instance
    wait_js(page, "document.querySelectorAll('canvas[data-drawn]').length >= 13")
    assert page.evaluate("Chart.getChart('chart-clusters-c360').data.datasets[0].data.reduce((a, b) => a + b)") == people
    shot(page, "02_customer_360")

    # profile viewer: search by an email of one of the person's source records, open the person
    page.click("text=Profiles")
    page.fill("#q", email.upper())
    page.press("#q", "Enter")
    page.locator(f"#results a[href$='/people/{cdp_id}']").click()
    page.wait_for_url(re.compile(f".*/people/{cdp_id}$"))
    assert page.locator("#cdp-id").inner_text() == cdp_id
    assert page.locator("#records tbody tr").count() == all_records
    assert page.locator("#transactions h2").inner_text().startswith("Transactions")
    shot(page, "03_profile")

    # SQL editor: run, see the table, a refused statement shown in place, save as a query
    page.goto(f"{server}/workspace/sql")
    assert page.locator("#catalog summary", has_text="customer_360").count() >= 1
    page.fill("#sql", "select city, count(*) as people from c360.customer_360 group by city order by people desc")
    page.fill("input[name=limit]", "5")
    page.click("#run")
    page.wait_for_selector("#row-count")
    assert page.locator("#row-count").inner_text().startswith("5 rows (limit 5 reached)")
    assert page.locator("#result-table thead th").all_inner_texts() == ["city", "people"]
    shot(page, "04_sql")
    with page.expect_download() as download:
        page.click("#download")
    csv_path = download.value.path()
    assert len(Path(csv_path).read_text().strip().splitlines()) > 5  # every row, not the shown 5
    page.fill("#query-name", "people_by_city")
    page.click("#save-query")
    page.wait_for_selector("#sql-status .ok")
    saved = workspace_tenant.parent / "queries_workspace" / "people_by_city.sql"
    assert "c360.customer_360" in saved.read_text()
    page.fill("#sql", "delete from c360.customer_360")
    page.click("#run")
    page.wait_for_selector("#sql-results .error")
    assert "only SELECT" in page.locator("#sql-results .error").inner_text()

    # segment builder: conditions, a live count, the compiled SQL, save
    page.goto(f"{server}/workspace/segments")
    page.fill("#segment-name", "big_buyers")
    page.select_option("select[name='row-0-column']", "order_count")
    page.select_option("select[name='row-0-op']", ">=")
    page.fill("input[name='row-0-value']", "3")
    wait_js(page, f"document.querySelector('#live-count')?.innerText === '{buyers:,}'")
    page.click("#add-segment")
    page.wait_for_selector("select[name='row-1-segment']")
    page.select_option("select[name='row-1-segment']", "reachable_by_email")
    page.check("input[name='row-1-negate']")
    wait_js(page, f"document.querySelector('#live-count')?.innerText === '{buyers_without_email:,}'")
    assert '"order_count" >= ?' in page.locator("#compiled-sql").inner_text()
    page.click("#save-segment")
    page.wait_for_selector("#segment-status .ok")
    shot(page, "05_segment_builder")
    assert not errors, errors

    cfg = load_config(workspace_tenant)  # what the pipeline will read
    seg = cfg.segments["big_buyers"]
    assert seg.all[0].column == "order_count" and seg.all[0].value == 3
    assert seg.all[1].not_.segment == "reachable_by_email"
    assert "# who may log in" in workspace_tenant.read_text()  # the file's comments are kept
    context.close()


def test_marketer_forged_post_and_logout_in_the_browser(server, browser, workspace_tenant):
    """A marketer's pages mask PII and have no SQL; a page on another port of the same host (same
    site: the SameSite cookie goes along) cannot post as the logged-in person; after logout the
    old cookie opens nothing."""
    import httpx

    cdp_id, email = a_person(workspace_tenant)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{server}/workspace/login")
    page.fill("input[name=username]", ANALYST)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/workspace/$"))
    # the attacker's page, served on another port of the same host, posts a segment save
    host, port = server.rsplit(":", 1)
    evil = f"{host}:{int(port) + 1}/evil"
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=f"""
        <form id="f" method="post" action="{server}/workspace/segments/save">
        <input name="name" value="forged_segment"><input name="combine" value="all">
        <input name="row_count" value="1"><input name="row-0-kind" value="condition">
        <input name="row-0-table" value="c360.customer_360"><input name="row-0-column" value="order_count">
        <input name="row-0-op" value="&gt;"><input name="row-0-value" value="1"></form>
        <script>document.getElementById('f').submit()</script>"""))
    with page.expect_response(f"{server}/workspace/segments/save") as forged:
        page.goto(evil)
    assert forged.value.status == 403
    assert "forged_segment" not in load_config(workspace_tenant).segments
    page.goto(f"{server}/workspace/people")   # still logged in: the forged post changed nothing
    assert page.locator("#who").inner_text() == ANALYST
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/workspace/login$"))
    old = [c for c in context.cookies() if c["name"] == "cdp_session"]
    assert not old   # the browser dropped it; a copy kept by an attacker is refused by the server:
    context.close()

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{server}/workspace/login")
    page.fill("input[name=username]", MARKETER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/workspace/$"))
    wait_js(page, "document.querySelectorAll('canvas[data-drawn]').length >= 13")  # charts under the CSP
    assert page.locator("nav a", has_text="SQL").count() == 0
    page.click("text=Profiles")
    page.fill("#q", cdp_id)   # search as you type (workspace.js, not an eval'd hx-trigger filter)
    page.wait_for_selector(f"#results a[href$='/people/{cdp_id}']")
    page.goto(f"{server}/workspace/people/{cdp_id}")
    assert page.locator("#masked-note").count() == 1
    body = page.locator("main").inner_text()
    assert email not in body and "***@" in body
    shot(page, "06_marketer_profile")
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "cdp_session")
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/workspace/login$"))
    r = httpx.get(f"{server}/workspace/people", cookies={"cdp_session": cookie}, follow_redirects=False)
    assert r.status_code == 303 and "/workspace/login" in r.headers["location"]
    assert not errors, errors
    context.close()


@pytest.fixture()
def client(workspace_tenant, dagster_instance):
    from fastapi.testclient import TestClient

    with TestClient(create_server(load_config(workspace_tenant), instance=dagster_instance)) as c:
        yield c


def login_form(client) -> str:
    """The login page's form token (its cookie is kept by the client)."""
    r = client.get("/workspace/login")
    return re.search(r'name="login_token" value="([^"]+)"', r.text).group(1)


def login(client, user: str = USER, password: str = PASSWORD) -> str:
    """Log in as `user`; the client then sends the session's CSRF token on every request (as
    htmx does from the page's hx-headers). Returns the token."""
    r = client.post("/workspace/login", data={"username": user, "password": password,
                                              "login_token": login_form(client)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/workspace/people").text).group(1)
    client.headers["X-CSRF-Token"] = token
    return token


def test_machines_use_the_api_key_and_htmx_is_sent_to_login(client):
    assert client.get("/workspace/people", headers={"X-API-Key": KEYS["notebook"]}).status_code == 200
    r = client.get("/workspace/people", headers={"X-API-Key": "nope"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/workspace/login")
    r = client.post("/workspace/sql/run", data={"sql": "select 1"}, headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/workspace/login")


def test_bad_segment_and_query_are_refused_naming_the_field(client, workspace_tenant):
    login(client)
    before = workspace_tenant.read_text()
    form = {"name": "bad_one", "combine": "all", "row_count": "1", "row-0-kind": "condition",
            "row-0-table": "c360.customer_360", "row-0-column": "order_count", "row-0-op": ">", "row-0-value": "many"}
    r = client.post("/workspace/segments/save", data=form)
    assert r.status_code == 422
    assert "segments.bad_one.all[0].value: &#39;many&#39; is not a" in r.text
    r = client.post("/workspace/segments/save", data={**form, "row-0-column": "shoe_size", "row-0-value": "1"})
    assert "segments.bad_one.all[0].column: column &#39;shoe_size&#39; is not in c360.customer_360" in r.text
    r = client.post("/workspace/segments/save", data={**form, "name": "Bad-Name", "row-0-value": "1"})
    assert "segments.Bad-Name: names must be lowercase identifiers" in r.text
    r = client.post("/workspace/segments/save", data={**form, "name": "bakery_fans", "row-0-value": "1"})
    assert "segments.bakery_fans: a segment of this name already exists" in r.text
    assert workspace_tenant.read_text() == before  # nothing written
    r = client.post("/workspace/sql/save", data={"name": "oops", "sql": "drop table c360.customer_360"})
    assert r.status_code == 422 and "queries.oops: only SELECT" in r.text
    r = client.post("/workspace/sql/run", data={"sql": "select nope from c360.customer_360"})
    assert r.status_code == 422 and "the warehouse refused the query" in r.text


def test_a_warehouse_being_rebuilt_gives_a_clear_retry_page(workspace_tenant, tmp_path):
    """A run holding the warehouse's write lock (another process) -> 503 'being rebuilt', no crash."""
    from fastapi.testclient import TestClient

    busy = tmp_path / "busy.duckdb"
    duckdb.connect(str(busy)).close()
    cfg = load_config(workspace_tenant).model_copy(update={"warehouse": str(busy)})
    writer = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(busy)!r}); "
                               "print('locked', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        with TestClient(create_server(cfg)) as c:
            r = c.get("/workspace/", headers={"X-API-Key": KEYS["notebook"]})
            assert r.status_code == 503 and "being rebuilt by a pipeline run; retry" in r.text
            assert c.get("/health").status_code in (200, 503)  # the Profile API is unaffected
    finally:
        writer.stdin.close()
        writer.wait(10)
    with TestClient(create_server(cfg)) as c:  # the run is over: an empty warehouse
        r = c.get("/workspace/", headers={"X-API-Key": KEYS["notebook"]})
        assert r.status_code == 200
        assert "c360.customer_360 has not been built yet" in r.text


def test_without_a_dagster_instance_the_page_says_when_the_warehouse_was_written(workspace_tenant, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # cdp serve finds the instance through it

    with TestClient(create_server(load_config(workspace_tenant))) as c:
        r = c.get("/workspace/", headers={"X-API-Key": KEYS["notebook"]})
    assert r.status_code == 200
    assert r.text.count("warehouse last written") == 4  # one per customer 360 database


def test_passwords_and_the_users_file(tmp_path):
    stored = hash_password("s3cret-pass")
    assert verify_password("s3cret-pass", stored) and not verify_password("s3cret-pasS", stored)
    assert hash_password("s3cret-pass") != stored  # salted
    path = tmp_path / "users.yaml"
    add_user(path, "bo", "long enough")
    assert set(load_users(path)) == {"bo"}
    with pytest.raises(UsersFileError, match="users.Bo: user names must be lowercase"):
        add_user(path, "Bo", "long enough")
    path.write_text(yaml.safe_dump({"users": {"bo": "plaintext"}}))
    with pytest.raises(UsersFileError, match=r"users\.bo: expected an scrypt hash"):
        load_users(path)


def test_a_runaway_query_is_interrupted():
    from cdp.serve.workspace.state import _time_limit

    con = duckdb.connect()
    started = time.monotonic()
    with pytest.raises(duckdb.Error, match="ran longer than 1 s and was stopped"):
        with _time_limit(con, 1):
            con.execute("select count(*) from range(1000000000000)").fetchall()
    assert time.monotonic() - started < 10


def test_a_saved_segment_opens_in_the_builder_and_saves_back(client, workspace_tenant):
    login(client)
    page = client.get("/workspace/segments?segment=lapsing_high_value").text
    assert 'name="editing" value="lapsing_high_value"' in page
    form = {"name": "lapsing_high_value", "editing": "lapsing_high_value", "combine": "all", "row_count": "3",
            "description": "Top CLV tiers whose last order is over 90 days old, not bakery fans",
            "row-0-kind": "condition", "row-0-table": "predictive.predicted_clv_attributes",
            "row-0-column": "clv_tier", "row-0-op": "in", "row-0-value": "platinum, gold",
            "row-1-kind": "condition", "row-1-table": "interactions.transaction_attributes",
            "row-1-column": "days_since_last_order", "row-1-op": ">", "row-1-value": "90",
            "row-2-kind": "segment", "row-2-segment": "bakery_fans", "row-2-negate": "on"}
    for i, needle in enumerate(['value="clv_tier" selected', 'value="days_since_last_order" selected']):
        assert needle in page, i
    r = client.post("/workspace/segments/save", data=form)
    assert r.status_code == 200, r.text
    seg = load_config(workspace_tenant).segments["lapsing_high_value"]
    assert seg.all[0].value == ["platinum", "gold"] and seg.all[1].value == 90
    assert seg.all[2].not_.segment == "bakery_fans"
    assert "# all / any / not and by naming other segments" in workspace_tenant.read_text()


def test_saving_a_segment_changes_only_its_own_lines():
    from cdp.config import DEFAULT_CONFIG
    from cdp.serve.workspace.builder import splice_segment

    text = DEFAULT_CONFIG.read_text()
    new = splice_segment(text, "big_buyers", {"all": [{"column": "order_count", "op": ">=", "value": 3}]})
    new = splice_segment(new, "bakery_fans", {"description": "Bakery: likely", "all": [
        {"table": "predictive.product_category_propensity", "where": {"product_category": "Bakery"},
         "column": "propensity", "op": ">=", "value": 0.7}]})
    old_lines, new_lines = text.splitlines(), new.splitlines()
    changed = [line for line in new_lines if line not in old_lines]
    assert changed == ["    description: 'Bakery: likely'",
                       "      - {table: predictive.product_category_propensity, where: {product_category: Bakery}, "
                       "column: propensity, op: '>=', value: 0.7}",
                       "  big_buyers:", "      - {column: order_count, op: '>=', value: 3}"]
    gone = [line for line in old_lines if line not in new_lines]
    assert all("Snacks" in g or "Bakery" in g or "propensity" in g or "Likely to buy bakery" in g
               or "reachable_by_email" in g for g in gone), gone  # only bakery_fans' own lines
    doc = yaml.safe_load(new)
    assert doc["segments"]["big_buyers"] == {"all": [{"column": "order_count", "op": ">=", "value": 3}]}
    assert doc["segments"]["lapsing_high_value"] == yaml.safe_load(text)["segments"]["lapsing_high_value"]
    assert "# send a segment or saved query whenever it is rebuilt" in new


# ---- keys, roles, sessions, CSRF, throttle, headers ------------------------------------------

@pytest.fixture()
def recheck_now(monkeypatch):
    """The users and keys files are re-read at most once a second; tests do not wait for it."""
    from cdp.serve import access

    monkeypatch.setattr(access, "RECHECK_SECONDS", 0.0)


@pytest.fixture()
def app(workspace_tenant, dagster_instance):
    return create_server(load_config(workspace_tenant), instance=dagster_instance)


def client_at(app, ip: str):
    from fastapi.testclient import TestClient

    return TestClient(app, client=(ip, 40000))


def a_person(workspace_tenant) -> tuple[str, str]:
    """A person with an email in customer 360: (cdp_id, email)."""
    with read_warehouse(load_config(workspace_tenant).warehouse_path) as con:
        return con.execute("select cdp_id, email from c360.customer_360 where email is not null "
                           "order by cdp_id limit 1").fetchone()


def test_a_profiles_key_does_not_open_the_workspace(client, workspace_tenant, recheck_now):
    website = {"X-API-Key": KEYS["website"]}
    r = client.get("/workspace/", headers=website)
    assert r.status_code == 403 and "has no workspace scope" in r.text
    r = client.post("/workspace/sql/csv", data={"sql": "select * from c360.customer_360"}, headers=website)
    assert r.status_code == 403 and "cdp_id" not in r.text
    r = client.post("/workspace/segments/save", data={"name": "x"}, headers=website)
    assert r.status_code == 403
    notebook = {"X-API-Key": KEYS["notebook"]}   # workspace scope: an analyst, no CSRF token needed
    assert client.get("/workspace/sql", headers=notebook).status_code == 200
    r = client.post("/workspace/sql/csv", data={"sql": "select cdp_id from c360.customer_360"}, headers=notebook)
    assert r.status_code == 200 and r.text.startswith("cdp_id")
    # a revoked key: refused at its next use
    cfg = load_config(workspace_tenant)
    from cdp.serve.access import revoke_key

    token = create_key(cfg.resolve(cfg.profile_api.keys_file), "temp_ws", ["workspace"])
    assert client.get("/workspace/people", headers={"X-API-Key": token}).status_code == 200
    revoke_key(cfg.resolve(cfg.profile_api.keys_file), "temp_ws")
    r = client.get("/workspace/people", headers={"X-API-Key": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/workspace/login")
    r = client.post("/workspace/sql/csv", data={"sql": "select 1"}, headers={"X-API-Key": token})
    assert r.status_code == 401


def test_state_changing_requests_need_the_sessions_csrf_token(client, workspace_tenant):
    token = login(client)
    form = {"name": "csrf_probe", "combine": "all", "row_count": "1", "row-0-kind": "condition",
            "row-0-table": "c360.customer_360", "row-0-column": "order_count", "row-0-op": ">", "row-0-value": "1"}
    del client.headers["X-CSRF-Token"]
    before = workspace_tenant.read_text()
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": token[:-1]}):
        for url, data in (("/workspace/segments/save", form), ("/workspace/sql/save", {"name": "q_probe", "sql": "select 1"}),
                          ("/workspace/sql/run", {"sql": "select 1"}), ("/workspace/sql/csv", {"sql": "select 1"}),
                          ("/workspace/segments/preview", form), ("/workspace/logout", {})):
            r = client.post(url, data=data, headers=headers, follow_redirects=False)
            assert r.status_code == 403 and "CSRF token" in r.text, (url, headers)
    assert workspace_tenant.read_text() == before
    assert not (workspace_tenant.parent / "queries_workspace" / "q_probe.sql").exists()
    assert client.get("/workspace/people").status_code == 200   # the refused logout did not log out
    # the token in a form field (plain forms, the CSV download) or the header (htmx)
    r = client.post("/workspace/sql/csv", data={"sql": "select 1 as one", "csrf_token": token})
    assert r.status_code == 200 and r.text.startswith("one")
    r = client.post("/workspace/segments/preview", data=form, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and 'id="live-count"' in r.text
    # the login form itself carries a token bound to a cookie (no forged logins either)
    r = client.post("/workspace/login", data={"username": USER, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "the login form expired" in r.text


def test_sessions_are_server_side_and_logout_ends_them(client, app, workspace_tenant):
    login(client)
    cookie = client.cookies.get("cdp_session")
    set_cookie = [h for h in client.get("/workspace/login").headers.get_list("set-cookie")]  # no new session
    assert cookie and not any(h.startswith("cdp_session=") for h in set_cookie)
    sessions = load_config(workspace_tenant).resolve("sessions_workspace.sqlite")
    assert cookie.encode() not in sessions.read_bytes()   # only its hash is stored
    r = client.post("/workspace/logout", follow_redirects=False)
    assert r.status_code == 303
    replay = client_at(app, "10.9.0.1")
    replay.cookies.set("cdp_session", cookie)
    r = replay.get("/workspace/people", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/workspace/login")
    assert replay.post("/workspace/sql/csv", data={"sql": "select 1"}).status_code == 401


def test_the_session_cookie_is_httponly_and_samesite_strict(app):
    c = client_at(app, "10.9.0.2")
    r = c.post("/workspace/login", data={"username": USER, "password": PASSWORD, "login_token": login_form(c)},
               follow_redirects=False)
    header = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cdp_session="))
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/" in header


def test_a_removed_user_or_a_new_role_applies_at_the_next_request(app, workspace_tenant, recheck_now):
    from cdp.serve.workspace.auth import remove_user, set_role

    users = load_config(workspace_tenant).resolve("users_workspace.yaml")
    add_user(users, "temp_analyst", PASSWORD, role="analyst")
    c = client_at(app, "10.9.0.3")
    login(c, "temp_analyst")
    assert c.get("/workspace/sql").status_code == 200
    set_role(users, "temp_analyst", "marketer")
    r = c.get("/workspace/sql")
    assert r.status_code == 403 and "temp_analyst (marketer) may not use the SQL editor" in r.text
    assert c.post("/workspace/sql/csv", data={"sql": "select 1"}).status_code == 403
    remove_user(users, "temp_analyst")
    r = c.get("/workspace/people", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/workspace/login")
    add_user(users, "temp_analyst", PASSWORD, role="analyst")   # back under the same name: the old session stays ended
    assert c.get("/workspace/people", follow_redirects=False).status_code == 303


def test_cdp_user_commands(workspace_tenant, capsys, app):
    from cdp.cli import main

    config = str(workspace_tenant)
    c = client_at(app, "10.9.0.4")
    add_user(load_config(workspace_tenant).resolve("users_workspace.yaml"), "temp_cli", PASSWORD)
    login(c, "temp_cli")
    assert main(["user", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert re.search(r"temp_cli\s+analyst\s+1\b", out) and re.search(r"mia\s+marketer", out)
    assert main(["user", "role", "temp_cli", "marketer", "--config", config]) == 0
    assert main(["user", "remove", "temp_cli", "--config", config]) == 0
    assert "1 session ended" in capsys.readouterr().out
    assert c.get("/workspace/people", follow_redirects=False).status_code == 303   # at once, no recheck wait
    assert main(["user", "remove", "temp_cli", "--config", config]) == 2
    with pytest.raises(SystemExit):
        main(["user", "add", "temp_cli", "--role", "owner", "--password-stdin", "--config", config])


def test_a_marketer_sees_counts_and_masked_pii_and_cannot_query(app, workspace_tenant):
    cdp_id, email = a_person(workspace_tenant)
    local, domain = email.split("@")
    analyst = client_at(app, "10.9.1.1")
    login(analyst, ANALYST)
    assert email in analyst.get(f"/workspace/people/{cdp_id}").text
    assert email in analyst.get("/workspace/people", params={"q": email}).text
    c = client_at(app, "10.9.1.2")
    login(c, MARKETER)
    for r in (c.get(f"/workspace/people/{cdp_id}"), c.get("/workspace/people", params={"q": email})):
        shown = r.text.split('<table class="data results">')[-1]   # not the search box echoing the query
        assert r.status_code == 200 and cdp_id in shown
        assert email not in shown and local not in shown             # masked in the HTML the server sent
        assert f"{local[0]}***@{domain}" in shown
    page = c.get(f"/workspace/people/{cdp_id}").text
    assert 'id="masked-note"' in page and ">SQL<" not in page
    with read_warehouse(load_config(workspace_tenant).warehouse_path) as con:
        given, phone = con.execute("select given_name, phone from c360.customer_360 where cdp_id = ?", [cdp_id]).fetchone()
    if given and len(given) > 2:
        assert f">{given}<" not in page
    if phone:
        assert phone not in page
    # segments and counts: yes (the sample members masked); saving, SQL and CSV: no
    form = {"name": "", "combine": "all", "row_count": "1", "row-0-kind": "condition", "row-0-table": "c360.customer_360",
            "row-0-column": "email", "row-0-op": "not_null", "row-0-value": ""}
    r = c.post("/workspace/segments/preview", data=form)
    assert r.status_code == 200 and 'id="live-count"' in r.text and "@" in r.text and "***@" in r.text
    assert not re.search(r"<td>[^<*]+@", r.text)
    assert c.get("/workspace/segments").status_code == 200 and 'id="save-segment"' not in c.get("/workspace/segments").text
    assert c.post("/workspace/segments/save", data={**form, "name": "mia_seg"}).status_code == 403
    assert c.get("/workspace/sql").status_code == 403
    for url in ("/workspace/sql/run", "/workspace/sql/csv", "/workspace/sql/save"):
        r = c.post(url, data={"sql": "select email from c360.customer_360", "name": "mia_q"})
        assert r.status_code == 403 and "@" not in r.text, url


def test_an_analyst_saves_new_segments_but_only_an_admin_changes_saved_ones(app, workspace_tenant):
    c = client_at(app, "10.9.1.3")
    login(c, ANALYST)
    form = {"name": "bakery_fans", "editing": "bakery_fans", "combine": "all", "row_count": "1",
            "row-0-kind": "condition", "row-0-table": "c360.customer_360", "row-0-column": "order_count",
            "row-0-op": ">", "row-0-value": "1"}
    before = workspace_tenant.read_text()
    r = c.post("/workspace/segments/save", data=form)
    assert r.status_code == 403 and "changing a saved segment or query" in r.text
    assert workspace_tenant.read_text() == before
    r = c.post("/workspace/segments/save", data={**form, "name": "analyst_new", "editing": ""})
    assert r.status_code == 200, r.text
    assert "analyst_new" in load_config(workspace_tenant).segments
    r = c.post("/workspace/sql/save", data={"name": "analyst_q", "sql": "select 1 as x"})
    assert r.status_code == 200
    r = c.post("/workspace/sql/save", data={"name": "analyst_q", "sql": "select 2 as x", "overwrite": "on"})
    assert r.status_code == 403


def test_bad_logins_from_one_address_do_not_lock_the_user_out_elsewhere(app):
    attacker = client_at(app, "10.66.0.1")
    for _ in range(5):
        r = attacker.post("/workspace/login", data={"username": USER, "password": "guess",
                                                     "login_token": login_form(attacker)}, follow_redirects=False)
        assert r.status_code == 401
    r = attacker.post("/workspace/login", data={"username": USER, "password": PASSWORD,
                                                 "login_token": login_form(attacker)}, follow_redirects=False)
    assert r.status_code == 429 and "too many failed logins" in r.text   # even the right password, from there
    login(client_at(app, "10.66.0.2"))                 # the real user, from their own address
    # one address trying many names is limited as a whole
    for i in range(30):
        attacker.post("/workspace/login", data={"username": f"name{i}", "password": "guess",
                                                 "login_token": login_form(attacker)}, follow_redirects=False)
    r = attacker.post("/workspace/login", data={"username": ANALYST, "password": PASSWORD,
                                                 "login_token": login_form(attacker)}, follow_redirects=False)
    assert r.status_code == 429
    login(client_at(app, "10.66.0.3"), ANALYST)


def test_sessions_end_after_the_idle_and_the_absolute_timeout(tmp_path, monkeypatch):
    from cdp.serve.workspace import sessions as mod

    now = [1_000_000.0]
    monkeypatch.setattr(mod.time, "time", lambda: now[0])
    store = mod.SessionStore(tmp_path / "s.sqlite", idle=1800, absolute=12 * 3600)
    s = store.create("ana")
    now[0] += 1700
    assert store.get(s.sid) is not None          # used within 30 min: alive, and its idle clock restarts
    now[0] += 1700
    assert store.get(s.sid) is not None
    now[0] += 1801
    assert store.get(s.sid) is None              # idle too long
    s = store.create("ana")
    for _ in range(30):                          # used every 25 min for 12.5 h
        now[0] += 1500
        alive = store.get(s.sid) is not None
    assert not alive                             # the absolute limit
    assert store.get("x" * 200) is None and store.get("") is None


def test_workspace_pages_and_exports_send_security_headers(client):
    from cdp.serve.security_headers import WORKSPACE_CSP

    login(client)
    for r in (client.get("/workspace/"), client.get("/workspace/people?q=a"), client.get("/workspace/sql"),
              client.post("/workspace/sql/csv", data={"sql": "select 1"}), client.get("/workspace/login")):
        assert r.status_code == 200
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-security-policy"] == WORKSPACE_CSP
        assert r.headers["cache-control"] == "no-store"
    static = client.get("/workspace/static/workspace.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")
    assert static.headers["x-frame-options"] == "DENY"


def test_the_principal_is_on_the_request(app):
    """For the audit log: who made the request, as request.state.principal."""
    from fastapi import Request

    seen = []

    @app.middleware("http")
    async def record(request: Request, call_next):
        response = await call_next(request)
        seen.append(getattr(request.state, "principal", None))
        return response

    c = client_at(app, "10.9.2.1")
    login(c, MARKETER)
    c.get("/workspace/people")
    client_at(app, "10.9.2.2").get("/workspace/people", headers={"X-API-Key": KEYS["notebook"]})
    p_user, p_key = seen[-2], seen[-1]
    assert (p_user.name, p_user.kind, p_user.role) == (MARKETER, "user", "marketer")
    assert (p_key.name, p_key.kind, p_key.role, set(p_key.scopes)) == ("notebook", "key", "analyst", {"workspace"})


LONG_QUERY = """select count(*) as n from c360.customer_360 a, c360.customer_360 b, c360.customer_360 c,
                c360.customer_360 d where a.cdp_id || b.cdp_id < c.cdp_id || d.cdp_id"""


def _logged_in(base: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=60, follow_redirects=True)
    page = client.get("/workspace/login")
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    r = client.post("/workspace/login", data={**hidden, "username": USER, "password": PASSWORD,
                                              "next": "/workspace/sql"})
    assert r.status_code == 200 and r.url.path == "/workspace/sql", r.text[:500]
    client.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)
    return client


def test_a_long_workspace_query_does_not_delay_an_api_lookup(workspace_tenant, pipeline_run, serve_app):
    """A self-join that runs for 8 s (then is interrupted by workspace.query_seconds) through the
    SQL editor of a real uvicorn server, while Profile API lookups are sent: each is answered in
    well under a second (it waited the whole query when the editor ran DuckDB on the event loop)."""
    import httpx

    cfg = load_config(workspace_tenant)
    cfg = cfg.model_copy(update={"workspace": cfg.workspace.model_copy(update={"query_seconds": 8})})
    with read_warehouse(cfg.warehouse_path) as con:
        cdp_id = con.execute("select min(cdp_id) from c360.customer_360").fetchone()[0]
    with serve_app(create_server(cfg)) as base:
        analyst = _logged_in(base)
        outcome = {}

        def long_query():
            t0 = time.monotonic()
            r = analyst.post("/workspace/sql/run", data={"sql": LONG_QUERY, "limit": "10"},
                             headers={"HX-Request": "true"})
            outcome.update(seconds=time.monotonic() - t0, status=r.status_code, text=r.text)

        query = threading.Thread(target=long_query)
        query.start()
        time.sleep(1.5)  # the self-join is running
        api = httpx.Client(base_url=base, headers={"X-API-Key": KEYS["website"]}, timeout=30)
        waits = []
        for _ in range(20):
            t0 = time.monotonic()
            r = api.get(f"/profiles/{cdp_id}")
            waits.append(time.monotonic() - t0)
            assert r.status_code == 200 and r.json()["cdp_id"] == cdp_id
            time.sleep(0.1)
        running = query.is_alive()
        query.join(60)
        assert max(waits) < 1.0, waits
        assert running, "the query ended before the lookups: it proves nothing"
        assert outcome["seconds"] > 5, outcome
        assert outcome["status"] == 422 and "ran longer than 8 s and was stopped" in outcome["text"], outcome


def test_cdp_serve_with_two_workers(workspace_tenant, pipeline_run, free_port):
    """`cdp serve --workers 2` as users start it: two server processes on one port, each answering
    the API, and a login made on one worker valid on the other (sessions are in one SQLite file)."""
    import os

    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CDP_SESSION_SECRET", "CDP_API_KEY")}
    proc = subprocess.Popen([sys.executable, "-m", "cdp.cli", "serve", "--config", str(workspace_tenant),
                             "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "cdp serve --workers 2 did not come up"
            try:
                if httpx.get(f"{base}/health", timeout=2).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

        def workers() -> list[int]:
            kids = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == proc.pid:
                    kids.append(int(stat.parent.name))
            return kids

        deadline = time.monotonic() + 60
        while len([k for k in workers() if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]) < 2:
            assert time.monotonic() < deadline, workers()
            time.sleep(0.3)
        with read_warehouse(load_config(workspace_tenant).warehouse_path) as con:
            cdp_id = con.execute("select min(cdp_id) from c360.customer_360").fetchone()[0]
        for _ in range(12):
            r = httpx.get(f"{base}/profiles/{cdp_id}", headers={"X-API-Key": KEYS["website"]})
            assert r.status_code == 200 and r.json()["cdp_id"] == cdp_id
        analyst = _logged_in(base)
        for _ in range(12):  # new connections: the kernel spreads them over both workers
            fresh = httpx.Client(base_url=base, cookies=analyst.cookies, timeout=30)
            r = fresh.get("/workspace/people", follow_redirects=False)
            assert r.status_code == 200, r.status_code
            assert fresh.get("/health").status_code == 200
            fresh.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
