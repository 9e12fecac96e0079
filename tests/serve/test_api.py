"""The Profile API: serving copy built from the tiny tenant, status codes through FastAPI's
TestClient, and one round trip against a real uvicorn server on loopback."""

import json
import re
import time

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from cdp.serve import access
from cdp.serve.access import KeyRing, create_key, key_weakness, load_keys, revoke_key, rotate_key
from cdp.serve.api import create_app
from cdp.config import ProfileApiSettings
from cdp.stages.activation.profile_store import build_profile_store

KEYS: dict[str, str] = {}   # key name -> token, created by the `served` fixture
STRONG_ENV_KEY = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"


@pytest.fixture(scope="module")
def served(tiny_tenant, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    store, keys_file = root / "profile_store.sqlite", root / "api_keys.yaml"
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(store),
                                                                           keys_file=str(keys_file))})
    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        counts = build_profile_store(cfg, con, store)
    finally:
        con.close()
    KEYS["website"] = create_key(keys_file, "website", ["profiles:read"])
    KEYS["notebook"] = create_key(keys_file, "notebook", ["workspace"])
    KEYS["ops"] = create_key(keys_file, "ops", ["admin"])
    return cfg, counts


def keys_of(cfg) -> KeyRing:
    return KeyRing(cfg.resolve(cfg.profile_api.keys_file))


@pytest.fixture(scope="module")
def client(served):
    cfg, _ = served
    return TestClient(create_app(cfg, keys=keys_of(cfg)))


def get(client, url, key="website"):
    return client.get(url, headers={"X-API-Key": KEYS.get(key, key)} if key else {})


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
    ("/profiles/P404", "website", 404, "not_found"),
    ("/profiles/lookup?email=nobody@example.com", "website", 404, "not_found"),
    ("/profiles/lookup?source=shop_customers&pk=zz", "website", 404, "not_found"),
    ("/profiles/bad%20id%3B", "website", 422, "invalid_request"),
    ("/profiles/lookup?email=not-an-email", "website", 422, "invalid_request"),
    ("/profiles/lookup?phone=12", "website", 422, "invalid_request"),
    ("/profiles/lookup", "website", 422, "invalid_request"),
    ("/profiles/lookup?email=a@b.com&phone=5551234567", "website", 422, "invalid_request"),
    ("/profiles/lookup?source=Bad-Source&pk=1", "website", 422, "invalid_request"),
    ("/profiles/P1", "notebook", 403, "forbidden"),   # a workspace-only key: not the Profile API
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
    for r in (TestClient(create_app(missing, api_key=STRONG_ENV_KEY)).get("/health"),
              get(TestClient(create_app(missing, api_key=STRONG_ENV_KEY)), "/profiles/P1", STRONG_ENV_KEY)):
        assert r.status_code == 503
        assert "/" not in json.dumps(r.json()).replace("activation/profile_store", ""), r.json()


def test_store_swapped_by_a_rebuild_is_picked_up(served, client, monkeypatch):
    import cdp.serve.api as api

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


def test_real_uvicorn_server_on_loopback(served, serve_app):
    cfg, _ = served
    with serve_app(create_app(cfg, keys=keys_of(cfg)), log_level="error", start_seconds=10) as base:
        r = httpx.get(f"{base}/profiles/P2", headers={"X-API-Key": KEYS["website"]})
        assert r.status_code == 200 and json.loads(r.text)["customer"]["email"] == "bob@example.com"
        assert httpx.get(f"{base}/profiles/P2").status_code == 401


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
    client = TestClient(create_app(cfg, api_key=STRONG_ENV_KEY))
    r = get(client, "/profiles/lookup?email=family@example.com", STRONG_ENV_KEY)
    assert r.status_code == 409 and r.json()["cdp_ids"] == ["A", "B"]
    assert get(client, "/profiles/lookup?email=solo@example.com", STRONG_ENV_KEY).json()["cdp_id"] == "B"


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
    client = TestClient(create_app(cfg, api_key=STRONG_ENV_KEY))
    for url, reason in (("/profiles/lookup?email=None@None.com", "configured"),
                        ("/profiles/lookup?phone=%2B1%20555%20000%200000", "shared by 20 different people"),
                        # not on this store's blocklist, but carried by more people than Stitch allows
                        ("/profiles/lookup?email=crowd@example.com", "carried by 8 different people")):
        r = get(client, url, STRONG_ENV_KEY)
        assert r.status_code == 404, (url, r.text)
        body = r.json()
        assert body["error"] == "blocklisted" and reason in body["detail"] and "it is not served" in body["detail"]
        assert "cdp_ids" not in body and not any(p in r.text for p in people), r.text
    assert get(client, "/profiles/lookup?email=solo@example.com", STRONG_ENV_KEY).json()["cdp_id"] == "S1"
    assert get(client, "/profiles/lookup?phone=%2B15551112222", STRONG_ENV_KEY).json()["cdp_id"] == "S1"


def test_before_the_store_is_built_the_api_says_so(tiny_tenant, tmp_path):
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(store=str(tmp_path / "none.duckdb"))})
    client = TestClient(create_app(cfg, api_key=STRONG_ENV_KEY))
    r = get(client, "/profiles/P1", STRONG_ENV_KEY)
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"


def test_serving_needs_a_key(tiny_tenant, tmp_path, monkeypatch):
    monkeypatch.delenv("CDP_API_KEY", raising=False)
    cfg = tiny_tenant.model_copy(update={"profile_api": ProfileApiSettings(keys_file=str(tmp_path / "none.yaml"))})
    with pytest.raises(RuntimeError, match=r"no API keys: create one with `cdp key create NAME --scope profiles:read`"):
        create_app(cfg)


# ---- keys: scopes, revocation, rotation, weak keys ----------------------------------------------

@pytest.fixture()
def recheck_now(monkeypatch):
    """The keys file is re-read at most once a second; tests do not wait for it."""
    monkeypatch.setattr(access, "RECHECK_SECONDS", 0.0)


def test_keys_are_stored_hashed_and_shown_once(served):
    cfg, _ = served
    path = cfg.resolve(cfg.profile_api.keys_file)
    text = path.read_text()
    assert KEYS["website"] not in text and KEYS["website"].split("_")[2] not in text
    assert KEYS["website"].startswith("cdp_") and len(KEYS["website"]) == 58
    key = load_keys(path)["website"]
    assert KEYS["website"].startswith(f"cdp_{key.id}_") and key.scopes == ("profiles:read",)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_scopes_decide_what_a_key_opens(served, client):
    assert get(client, "/profiles/P1", "website").status_code == 200
    assert get(client, "/profiles/P1", "ops").status_code == 200        # admin: everything
    r = get(client, "/profiles/P1", "notebook")
    assert r.status_code == 403 and "lacks the profiles:read scope" in r.json()["detail"]
    # a well-formed token with a known id but the wrong secret
    forged = KEYS["website"][:15] + ("A" if KEYS["website"][15] != "A" else "B") + KEYS["website"][16:]
    assert get(client, "/profiles/P1", forged).status_code == 401


def test_a_revoked_or_rotated_key_is_refused(served, recheck_now, tmp_path):
    cfg, _ = served
    path = tmp_path / "keys.yaml"
    cfg = cfg.model_copy(update={"profile_api": cfg.profile_api.model_copy(update={"keys_file": str(path)})})
    old = create_key(path, "crm", ["profiles:read"])
    create_key(path, "spare", ["profiles:read"])
    client = TestClient(create_app(cfg, keys=keys_of(cfg)))
    assert get(client, "/profiles/P1", old).status_code == 200
    new = rotate_key(path, "crm")
    assert get(client, "/profiles/P1", old).status_code == 401
    assert get(client, "/profiles/P1", new).status_code == 200
    revoke_key(path, "crm")
    r = get(client, "/profiles/P1", new)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


@pytest.mark.parametrize("weak", ["change-me", "test-key-123", "a" * 64, "abcabcabcabcabcabcabcabcabcabcabc",
                                  "Change-Me-Change-Me-Change-Me-2024!", "0123456789abcdef"])
def test_weak_keys_are_refused_at_start(served, weak, monkeypatch):
    cfg, _ = served
    assert key_weakness(weak)
    with pytest.raises(RuntimeError, match="refused, the key is weak"):
        create_app(cfg, api_key=weak)
    monkeypatch.setenv("CDP_API_KEY", weak)
    with pytest.raises(RuntimeError, match="profile_api.api_key_env: CDP_API_KEY: refused, the key is weak"):
        create_app(cfg)


def test_strong_keys_pass_the_check():
    import base64
    import random

    rng = random.Random(20261201)      # seeded: keys drawn as `openssl rand` would, the same each run
    for _ in range(5000):
        raw = rng.randbytes(32)
        assert key_weakness(raw[:16].hex()) is None
        assert key_weakness(base64.urlsafe_b64encode(raw).decode().rstrip("=")) is None
    assert key_weakness(STRONG_ENV_KEY) is None


def test_a_placeholder_inside_random_characters_is_chance_not_a_placeholder():
    # secrets.token_hex(16) holds '1234' about once in 2,000 keys; CI once drew one
    assert key_weakness("52c5144f8b2f31234ad3129f79c83fb6") is None
    assert key_weakness("52c5144f8b2f3-1234-ad3129f79c83fb6") == "it contains the placeholder '1234'"
    assert key_weakness("mysupersecretkeyfortheprofileapi") == "it contains the placeholder 'secret'"
    assert key_weakness("production-password-7Hq2xVb9Lm4KpR8sT1wZ") == "it contains the placeholder 'password'"


def test_the_old_environment_key_opens_the_profile_api_only(served, monkeypatch, caplog):
    cfg, _ = served
    monkeypatch.setenv("CDP_API_KEY", STRONG_ENV_KEY)
    with caplog.at_level("WARNING", logger="cdp.api"):
        client = TestClient(create_app(cfg))
    assert "deprecated" in caplog.text
    assert get(client, "/profiles/P1", STRONG_ENV_KEY).status_code == 200
    assert get(client, "/profiles/P1", "website").status_code == 200   # the named keys too


def test_key_verification_stays_a_dict_lookup(served):
    """No file read per request: 20,000 verifications well under a second (no bcrypt/scrypt)."""
    cfg, _ = served
    ring = keys_of(cfg)
    token = KEYS["website"]
    assert ring.verify(token).name == "website"
    t0 = time.perf_counter()
    for _ in range(20_000):
        ring.verify(token)
    assert (time.perf_counter() - t0) / 20_000 < 50e-6


def test_every_response_refuses_framing_and_caching(client):
    for url in ("/profiles/P1", "/profiles/lookup?email=ann@example.com", "/profiles/P404", "/health"):
        r = get(client, url)
        assert r.headers["x-frame-options"] == "DENY", url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], url
        assert r.headers["cache-control"] == "no-store", url
    assert get(client, "/profiles/P1", None).headers["cache-control"] == "no-store"   # a 401 too


def test_cli_creates_lists_rotates_and_revokes_keys(tiny_tenant, tmp_path, capsys):
    import shutil

    from cdp.cli import main

    shutil.copy(tiny_tenant.config_path, tmp_path / "tenant.yaml")
    config = str(tmp_path / "tenant.yaml")
    assert main(["key", "create", "website", "--scope", "profiles:read", "--config", config]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"cdp_[0-9a-f]{10}_[A-Za-z0-9_\-]{43}", token)
    assert main(["key", "create", "website", "--scope", "admin", "--config", config]) == 2
    assert "a key of this name exists" in capsys.readouterr().err
    assert main(["key", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "website" in out and "profiles:read" in out and token not in out
    assert main(["key", "rotate", "website", "--config", config]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] != token
    assert main(["key", "revoke", "website", "--config", config]) == 0
    assert main(["key", "revoke", "website", "--config", config]) == 2
    assert load_keys(tmp_path / "api_keys.yaml") == {}
