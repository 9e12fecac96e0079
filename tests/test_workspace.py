"""The analyst workspace: a real uvicorn server on the demo pipeline's warehouse, driven by headless
Chromium (Playwright, Debian's /usr/bin/chromium), plus request-level checks of auth, errors and
saving. Screenshots of each page go to test-artifacts/workspace/."""

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from cdp_assets.config import load_config
from cdp_assets.workspace import create_server
from cdp_assets.workspace.auth import UsersFileError, add_user, hash_password, load_users, verify_password
from cdp_assets.workspace.reader import read_warehouse

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "workspace"
USER, PASSWORD, KEY = "ana", "correct horse battery", "test-api-key"
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
    path.write_text(doc + "\nworkspace:\n  users_file: users_workspace.yaml   # who may log in\n")
    shutil.copytree(root / "queries", root / "queries_workspace", dirs_exist_ok=True)
    cfg = load_config(path)
    add_user(cfg.resolve(cfg.workspace.users_file), USER, PASSWORD)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(workspace_tenant, dagster_instance):
    """`cdp serve`'s app in a real uvicorn server (a thread of this process, so it can share the
    test's Dagster instance for the rebuild times)."""
    import uvicorn

    app = create_server(load_config(workspace_tenant), api_key=KEY, instance=dagster_instance)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the workspace server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


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
    page.wait_for_function("document.querySelectorAll('canvas[data-drawn]').length >= 13")
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
    page.wait_for_function(f"document.querySelector('#live-count')?.innerText === '{buyers:,}'")
    page.click("#add-segment")
    page.wait_for_selector("select[name='row-1-segment']")
    page.select_option("select[name='row-1-segment']", "reachable_by_email")
    page.check("input[name='row-1-negate']")
    page.wait_for_function(f"document.querySelector('#live-count')?.innerText === '{buyers_without_email:,}'")
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


@pytest.fixture()
def client(workspace_tenant, dagster_instance):
    from fastapi.testclient import TestClient

    with TestClient(create_server(load_config(workspace_tenant), api_key=KEY, instance=dagster_instance)) as c:
        yield c


def login(client) -> None:
    r = client.post("/workspace/login", data={"username": USER, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303


def test_machines_use_the_api_key_and_htmx_is_sent_to_login(client):
    assert client.get("/workspace/people", headers={"X-API-Key": KEY}).status_code == 200
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
        with TestClient(create_server(cfg, api_key=KEY)) as c:
            r = c.get("/workspace/", headers={"X-API-Key": KEY})
            assert r.status_code == 503 and "being rebuilt by a pipeline run; retry" in r.text
            assert c.get("/health").status_code in (200, 503)  # the Profile API is unaffected
    finally:
        writer.stdin.close()
        writer.wait(10)
    with TestClient(create_server(cfg, api_key=KEY)) as c:  # the run is over: an empty warehouse
        r = c.get("/workspace/", headers={"X-API-Key": KEY})
        assert r.status_code == 200
        assert "c360.customer_360 has not been built yet" in r.text


def test_without_a_dagster_instance_the_page_says_when_the_warehouse_was_written(workspace_tenant, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # cdp serve finds the instance through it

    with TestClient(create_server(load_config(workspace_tenant), api_key=KEY)) as c:
        r = c.get("/workspace/", headers={"X-API-Key": KEY})
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
    from cdp_assets.workspace.app import _time_limit

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
    from cdp_assets.config import DEFAULT_CONFIG
    from cdp_assets.workspace.builder import splice_segment

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


def test_password_guessing_is_throttled(client):
    for _ in range(5):
        r = client.post("/workspace/login", data={"username": "bo", "password": "guess"}, follow_redirects=False)
        assert r.status_code == 401
    r = client.post("/workspace/login", data={"username": "bo", "password": "guess"}, follow_redirects=False)
    assert r.status_code == 429 and "too many failed logins for bo" in r.text
    login(client)  # other people are not locked out


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
    return client


def test_a_long_workspace_query_does_not_delay_an_api_lookup(workspace_tenant, pipeline_run):
    """A self-join that runs for 8 s (then is interrupted by workspace.query_seconds) through the
    SQL editor of a real uvicorn server, while Profile API lookups are sent: each is answered in
    well under a second (it waited the whole query when the editor ran DuckDB on the event loop)."""
    import httpx
    import uvicorn

    cfg = load_config(workspace_tenant)
    cfg = cfg.model_copy(update={"workspace": cfg.workspace.model_copy(update={"query_seconds": 8})})
    with read_warehouse(cfg.warehouse_path) as con:
        cdp_id = con.execute("select min(cdp_id) from c360.customer_360").fetchone()[0]
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_server(cfg, api_key=KEY), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        analyst = _logged_in(base)
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                 analyst.get("/workspace/sql").text))
        outcome = {}

        def long_query():
            t0 = time.monotonic()
            r = analyst.post("/workspace/sql/run", data={**hidden, "sql": LONG_QUERY, "limit": "10"},
                             headers={"HX-Request": "true"})
            outcome.update(seconds=time.monotonic() - t0, status=r.status_code, text=r.text)

        query = threading.Thread(target=long_query)
        query.start()
        time.sleep(1.5)  # the self-join is running
        api = httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30)
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
    finally:
        srv.should_exit = True
        thread.join(10)


def test_cdp_serve_with_two_workers(workspace_tenant, pipeline_run):
    """`cdp serve --workers 2` as users start it: two server processes on one port, each answering
    the API, and a login made on one worker valid on the other (one signing key for both)."""
    import os

    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "CDP_SESSION_SECRET"}
    env.update(CDP_API_KEY=KEY)
    proc = subprocess.Popen([sys.executable, "-m", "cdp_assets.cli", "serve", "--config", str(workspace_tenant),
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
            r = httpx.get(f"{base}/profiles/{cdp_id}", headers={"X-API-Key": KEY})
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
