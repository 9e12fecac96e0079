"""The Profile API: serving copy built from the tiny tenant, status codes through FastAPI's
TestClient, and one round trip against a real uvicorn server on loopback."""

import json
import re
import socket
import threading
import time

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from cdp_assets.api import create_app
from cdp_assets.config import ProfileApiSettings
from cdp_assets.profile_store import build_profile_store

KEY = "test-key-123"


@pytest.fixture(scope="module")
def served(tiny_tenant, tmp_path_factory):
    store = tmp_path_factory.mktemp("api") / "profile_store.sqlite"
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(store))})
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        counts = build_profile_store(cfg, con, store)
    finally:
        con.close()
    return cfg, counts


@pytest.fixture(scope="module")
def client(served):
    cfg, _ = served
    return TestClient(create_app(cfg, api_key=KEY))


def get(client, url, key=KEY):
    return client.get(url, headers={"X-API-Key": key} if key else {})


def test_store_holds_every_person_and_identity(served):
    _, counts = served
    assert counts == {"profiles": 3, "blocklist": 0, "by_email": 4, "by_phone": 0, "by_source_pk": 4}


def test_profile_by_cdp_id_has_every_section(client):
    r = get(client, "/profiles/P1")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["cdp_id"] == "P1" and doc["customer"]["email"] == "ann@example.com"
    assert doc["predicted_clv"]["clv_tier"] == "platinum"
    assert doc["transaction_attributes"]["cdp_id"] == "P1"
    assert doc["segments"] == []


def test_lookups_by_email_and_source_record(client):
    # a secondary email of P1 (record c2) finds the same person; input is standardised
    assert get(client, "/profiles/lookup?email= Ann.Other@Example.COM ").json()["cdp_id"] == "P1"
    assert get(client, "/profiles/lookup?source=shop_customers&pk=c3").json()["cdp_id"] == "P2"


@pytest.mark.parametrize("url,key,status,error", [
    ("/profiles/P1", None, 401, "unauthorized"),
    ("/profiles/P1", "wrong", 401, "unauthorized"),
    ("/profiles/P404", KEY, 404, "not_found"),
    ("/profiles/lookup?email=nobody@example.com", KEY, 404, "not_found"),
    ("/profiles/lookup?source=shop_customers&pk=zz", KEY, 404, "not_found"),
    ("/profiles/bad%20id%3B", KEY, 422, "invalid_request"),
    ("/profiles/lookup?email=not-an-email", KEY, 422, "invalid_request"),
    ("/profiles/lookup?phone=12", KEY, 422, "invalid_request"),
    ("/profiles/lookup", KEY, 422, "invalid_request"),
    ("/profiles/lookup?email=a@b.com&phone=5551234567", KEY, 422, "invalid_request"),
    ("/profiles/lookup?source=Bad-Source&pk=1", KEY, 422, "invalid_request"),
])
def test_status_codes_come_with_json_errors(client, url, key, status, error):
    r = get(client, url, key)
    assert r.status_code == status
    assert r.json()["error"] == error


def test_openapi_docs_load_their_assets_from_the_server(client):
    """/docs and /redoc work offline: every script and stylesheet is served by the API itself."""
    assert "/profiles/{cdp_id}" in client.get("/openapi.json").json()["paths"]
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/docs-assets/") for a in assets), (page, assets)
        assert "https://" not in html and "http://" not in html.replace("http://www.w3.org", "")
        for asset in assets:
            r = client.get(asset)
            assert r.status_code == 200 and len(r.content) > 500, asset
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle-5.35.0.js").text[:200_000]


def test_health_needs_no_key_and_shows_no_paths(served, client, tiny_tenant, tmp_path):
    cfg, _ = served
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    missing = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(tmp_path / "gone.db"))})
    for r in (TestClient(create_app(missing, api_key=KEY)).get("/health"),
              get(TestClient(create_app(missing, api_key=KEY)), "/profiles/P1")):
        assert r.status_code == 503
        assert "/" not in json.dumps(r.json()).replace("activation/profile_store", ""), r.json()


def test_store_swapped_by_a_rebuild_is_picked_up(served, client, monkeypatch):
    import cdp_assets.api as api

    cfg, _ = served
    monkeypatch.setattr(api, "RECHECK_SECONDS", 0.0)
    store = cfg.resolve(cfg.profile_api.store)
    before = get(client, "/profiles/P3").json()
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        con.execute("update c360.customer_360 set email = 'cy.new@example.com' where cdp_id = 'P3'")
        build_profile_store(cfg, con, store)
        con.execute("update c360.customer_360 set email = 'cy@example.com' where cdp_id = 'P3'")
    finally:
        con.close()
    assert before["customer"]["email"] == "cy@example.com"
    assert get(client, "/profiles/P3").json()["customer"]["email"] == "cy.new@example.com"


def test_real_uvicorn_server_on_loopback(served):
    import uvicorn

    cfg, _ = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, api_key=KEY), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        r = httpx.get(f"{base}/profiles/P2", headers={"X-API-Key": KEY})
        assert r.status_code == 200 and json.loads(r.text)["customer"]["email"] == "bob@example.com"
        assert httpx.get(f"{base}/profiles/P2").status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)


def test_an_email_shared_by_two_people_is_a_409_with_both_ids(tiny_tenant, tmp_path):
    store = tmp_path / "profile_store.sqlite"
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(store))})
    con = duckdb.connect()  # a hand-made warehouse: a family email on two people's records
    con.execute("create schema domain; create schema stitch; create schema c360")
    con.execute("""create table domain.shop_customers as select * from (values
        ('c1', 'family@example.com'), ('c2', 'family@example.com'), ('c3', 'solo@example.com')) t(pk, email)""")
    con.execute("""create table stitch.unified_coalesced as select * from (values
        ('shop_customers', 'c1', 'A'), ('shop_customers', 'c2', 'B'), ('shop_customers', 'c3', 'B'))
        t(source, pk, cdp_id)""")
    con.execute("create table c360.customer_360 as select * from (values ('A', 'family@example.com'), "
                "('B', 'solo@example.com')) t(cdp_id, email)")
    build_profile_store(cfg, con, store)
    con.close()
    client = TestClient(create_app(cfg, api_key=KEY))
    r = get(client, "/profiles/lookup?email=family@example.com")
    assert r.status_code == 409 and r.json()["cdp_ids"] == ["A", "B"]
    assert get(client, "/profiles/lookup?email=solo@example.com").json()["cdp_id"] == "B"


def test_a_blocklisted_email_or_phone_is_a_404_with_the_reason_and_no_ids(tiny_tenant, tmp_path):
    """Junk (none@none.com) and values shared by too many people identify nobody: never served."""
    store = tmp_path / "profile_store.sqlite"
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(store))})
    con = duckdb.connect()
    con.execute("create schema domain; create schema stitch; create schema c360")
    people = [f"Q{i}" for i in range(20)]
    rows = [(f"j{i}", "none@none.com", "+15550000000") for i in range(20)] + [
        (f"o{i}", "crowd@example.com", None) for i in range(8)] + [("s1", "solo@example.com", "+15551112222")]
    con.execute("create table domain.shop_customers (pk varchar, email varchar, phone varchar)")
    con.executemany("insert into domain.shop_customers values (?, ?, ?)", rows)
    con.execute("create table stitch.unified_coalesced (source varchar, pk varchar, cdp_id varchar)")
    con.executemany("insert into stitch.unified_coalesced values ('shop_customers', ?, ?)",
                    [(f"j{i}", people[i]) for i in range(20)] + [(f"o{i}", people[i]) for i in range(8)]
                    + [("s1", "S1")])
    con.execute("create table c360.customer_360 (cdp_id varchar, email varchar)")
    con.executemany("insert into c360.customer_360 values (?, ?)", [(p, None) for p in people] + [("S1", "solo@example.com")])
    con.execute("""create table stitch.blocklist as select * from (values
        ('email', 'none@none.com', 'configured', 20), ('phone', '+15550000000', 'shared by 20 different people', 20))
        t(field, value, reason, records_touched)""")
    counts = build_profile_store(cfg, con, store)
    con.close()
    assert counts["blocklist"] == 2 and counts["by_email"] == 9  # crowd@ x8 + solo@; none@ left out
    client = TestClient(create_app(cfg, api_key=KEY))
    for url, reason in (("/profiles/lookup?email=None@None.com", "configured"),
                        ("/profiles/lookup?phone=%2B1%20555%20000%200000", "shared by 20 different people"),
                        # not on this store's blocklist, but carried by more people than Stitch allows
                        ("/profiles/lookup?email=crowd@example.com", "carried by 8 different people")):
        r = get(client, url)
        assert r.status_code == 404, (url, r.text)
        body = r.json()
        assert body["error"] == "blocklisted" and reason in body["detail"] and "it is not served" in body["detail"]
        assert "cdp_ids" not in body and not any(p in r.text for p in people), r.text
    assert get(client, "/profiles/lookup?email=solo@example.com").json()["cdp_id"] == "S1"
    assert get(client, "/profiles/lookup?phone=%2B15551112222").json()["cdp_id"] == "S1"


def test_before_the_store_is_built_the_api_says_so(tiny_tenant, tmp_path):
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(tmp_path / "none.duckdb"))})
    client = TestClient(create_app(cfg, api_key=KEY))
    r = get(client, "/profiles/P1")
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"


def test_serving_needs_the_api_key_variable(tiny_tenant, monkeypatch):
    monkeypatch.delenv("CDP_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="profile_api.api_key_env: environment variable CDP_API_KEY"):
        create_app(tiny_tenant)
