"""Shared fixtures and markers of the test suite.

Fixtures: a small generated demo tenant, materialized once per session through the real graph
(real Splink, real dbt, real DuckDB) for the tests that inspect its output (`pipeline_run`,
`warehouse`); the tiny hand-made tenant of tests/tiny (`tiny_tenant`, `tiny`, `tiny_copy`); an
international tenant (`intl_tenant`); and serving an app on a free loopback port (`free_port`,
`serve_app`).

Markers (registered in pyproject.toml, --strict-markers), set here by what a test needs:
  spark     every test under tests/spark (pyspark and a JVM)
  browser   tests that use the `browser` fixture (Chromium through Playwright)
  postgres  set on the test itself: it needs CDP_TEST_POSTGRES_URL (.ci/postgres.sh)
  slow      tests that need `pipeline_run` (the demo tenant's whole run, minutes once per
            session) or whose module marks them slow (over ~20 s on the 2-core CI machine)
The quick inner loop (about two minutes):
    python -m pytest -m "not spark and not browser and not postgres and not slow"
"""

import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cdp.config import DEFAULT_CONFIG

TESTS = Path(__file__).parent
# tests that depend on these fixtures are slow (see the module docstring)
SLOW_FIXTURES = {"pipeline_run"}


def pytest_collection_modifyitems(config, items):
    """The markers a test earns by where it is and what it uses."""
    for item in items:
        if Path(item.path).relative_to(TESTS).parts[0] == "spark":
            item.add_marker(pytest.mark.spark)
        if "browser" in item.fixturenames:
            item.add_marker(pytest.mark.browser)
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


SMALL_PEOPLE = 400


@pytest.fixture(scope="session")
def demo_tenant(tmp_path_factory) -> Path:
    """The demo tenant config copied beside freshly generated data for SMALL_PEOPLE people."""
    from cdp.demo.generate import generate_demo_data

    root = tmp_path_factory.mktemp("tenant")
    shutil.copy(DEFAULT_CONFIG, root / "tenant.yaml")
    shutil.copytree(DEFAULT_CONFIG.parent / "queries", root / "queries")
    generate_demo_data(root / "data", people=SMALL_PEOPLE, seed=7)
    return root / "tenant.yaml"


@pytest.fixture(scope="session")
def dagster_instance(tmp_path_factory):
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        yield instance


@pytest.fixture(scope="session")
def pipeline_run(demo_tenant, dagster_instance):
    """One full materialization of the demo graph; returns the run result."""
    from cdp.cli import run_tenant

    os.environ.pop("CDP_WAREHOUSE", None)
    result = run_tenant(str(demo_tenant), quiet=True, instance=dagster_instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


@pytest.fixture()
def warehouse(pipeline_run, demo_tenant):
    con = duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"), read_only=True)
    yield con
    con.close()


# ---- the tiny hand-made tenant (tests/tiny): values in its tables are computed by hand --------

TINY = TESTS / "tiny"
TINY_CDP_IDS = {"c1": "P1", "c2": "P1", "c3": "P2", "c4": "P3"}


def _load_tiny_sources(cfg) -> None:
    """domain.* through the real standardisers, plus the Stitch/c360 tables dbt reads
    (Stitch is not run: the cdp_ids are fixed so every expected value can be worked out)."""
    import pandas as pd

    from cdp.stages.bi.assets import write_holiday_calendar
    from cdp.stages.sources.assets import build_domain_table
    from cdp.engine.tables import replace_table

    con = duckdb.connect(str(cfg.warehouse_path))
    try:
        for name, source in cfg.sources.items():
            domain, _, _ = build_domain_table(name, source, cfg.resolve(source.path))
            replace_table(con, "domain", name, domain)
        coalesced = pd.DataFrame({"source": "shop_customers", "pk": list(TINY_CDP_IDS),
                                  "cdp_id": list(TINY_CDP_IDS.values())})
        replace_table(con, "stitch", "unified_coalesced", coalesced)
        replace_table(con, "c360", "customer_360", pd.DataFrame(
            {"cdp_id": ["P1", "P2", "P3"], "email": ["ann@example.com", "bob@example.com", "cy@example.com"]}))
        write_holiday_calendar(con, cfg)
        # two buyers are too few to fit a CLV model: a fixed stand-in for the model's output
        replace_table(con, "predictive", "predicted_clv_attributes", pd.DataFrame(
            {"cdp_id": ["P1", "P2"], "predicted_orders_12m": [2.5, 0.4],
             "predicted_revenue_12m": [150.0, 10.0], "probability_alive": [0.9, 0.3],
             "clv_tier": ["platinum", "bronze"]}))
    finally:
        con.close()


def dbt_build(cfg, select: str) -> None:
    from cdp.dbt.project import dbt_resource, dbt_target, dbt_vars_arg, prepare_manifest, warehouse_env

    prepare_manifest(cfg)
    with warehouse_env(cfg), dbt_target(cfg, "test") as target:
        dbt_resource(cfg).cli(["build", "--select", select, *dbt_vars_arg(cfg)],
                              target_path=target, raise_on_error=True).wait()


def copy_tiny(folder: Path) -> Path:
    """tests/tiny's files copied into folder; returns the copy's tenant.yaml."""
    for f in TINY.iterdir():
        shutil.copy(f, folder / f.name)
    return folder / "tenant.yaml"


@pytest.fixture()
def tiny_copy(tmp_path) -> Path:
    """The tiny tenant's files copied into the test's tmp_path: its tenant.yaml, to edit freely."""
    return copy_tiny(tmp_path)


@pytest.fixture(scope="session")
def tiny_tenant(tmp_path_factory):
    """The tiny tenant with its interaction and BI models built by real dbt (models + tests)."""
    from cdp.config import load_config

    cfg = load_config(copy_tiny(tmp_path_factory.mktemp("tiny")))
    _load_tiny_sources(cfg)
    dbt_build(cfg, "interactions bi")
    return cfg


@pytest.fixture()
def tiny(tiny_tenant):
    con = duckdb.connect(str(tiny_tenant.warehouse_path), read_only=True)
    yield con
    con.close()


# ---- an international tenant (tests/unit/test_international.py, tests/spark/test_spark.py) ------

INTL_AU_CUSTOMERS = """\
id,name,email,phone,street,city,state,postcode
A1,Olivia Smith,olivia@example.com.au,02 1234 5678,12 George Street,Sydney,new south wales,2000
A2,Jack Wilson,jack@example.com,0412 345 678,5 Queen St.,Brisbane,Qld,4000
A3,Mia Brown,mia@example.com,(08) 8123 4567,1 King William Street,Adelaide,S.A.,5000
A4,Noah Taylor,noah@example.com,+64 9 123 4567,3 Smith Street,Darwin,Northern Territory,800
A5,Ava Jones,ava@example.com,08 9123 4567,1 Hay St,Perth,wa,20000
"""

INTL_DE_CUSTOMERS = """\
id,vorname,nachname,telefon,strasse,ort,bundesland,plz
D1,Lukas,Müller,030 1234567,Hauptstraße 5,Berlin,Berlin,10115
D2,Anna,Schmidt,089 123456,Leopoldstrasse 12,München,Bayern,80331
D3,Felix,Wagner,0351 1234567,Prager Str. 3,Dresden,Sachsen,1067
D4,Lea,Becker,0711 123456,Königstraße 1,Stuttgart,Baden-Wuerttemberg,70173
D5,Paul,Klein,+61 2 9876 5432,Große Straße 7,Düsseldorf,NRW,40212
"""

# records that carry their own country; W3 carries none (the tenant's), W5 one that is no country
INTL_WEB_SIGNUPS = """\
id,email,phone,state,postcode,country,born
W1,w1@example.com,020 7946 0000,England,sw1a1aa,UK,03/04/1980
W2,w2@example.com,(416) 555-0100,Ontario,k1a0b1,Canada,03/04/1980
W3,w3@example.com,0412 345 678,Vic.,3000,,25/12/1975
W4,w4@example.com,0176 12345678,Bavaria,80331,Deutschland,03.04.1980
W5,w5@example.com,0412 345 679,Washington,98101,Narnia,13/13/1980
"""


@pytest.fixture()
def intl_tenant(tmp_path) -> Path:
    """A tenant in Australia (country: AU) with an Australian shop, a German CRM (its source
    says country: DE; the file as German Excel writes it: cp1252, semicolons, CRLF) and web
    sign-ups whose records carry their own country."""
    import yaml

    (tmp_path / "au_customers.csv").write_text(INTL_AU_CUSTOMERS, encoding="utf-8")
    # as German Excel saves it: semicolons, Windows code page (read by sniffing, on both engines)
    (tmp_path / "de_customers.csv").write_bytes(INTL_DE_CUSTOMERS.replace(",", ";").replace("\n", "\r\n")
                                                .encode("cp1252"))
    (tmp_path / "web_signups.csv").write_text(INTL_WEB_SIGNUPS, encoding="utf-8")
    doc = {
        "tenant": "intl",
        "country": "AU",
        "sources": {
            "au_shop": {"path": "au_customers.csv", "kind": "customers", "columns": {
                "id": "pk", "name": "full-name", "email": "email", "phone": "phone",
                "street": "address", "city": "city", "state": "state", "postcode": "postal"}},
            "de_crm": {"path": "de_customers.csv", "kind": "customers", "country": "DE", "columns": {
                "id": "pk", "vorname": "given-name", "nachname": "surname", "telefon": "phone",
                "strasse": "address", "ort": "city", "bundesland": "state", "plz": "postal"}},
            "web_signups": {"path": "web_signups.csv", "kind": "customers", "columns": {
                "id": "pk", "email": "email", "phone": "phone", "state": "state",
                "postcode": "postal", "country": "country", "born": "birthdate"}},
        },
    }
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# ---- serving an app on loopback (tests/serve, tests/tenant/test_errors.py) ---------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function returning a free TCP port on 127.0.0.1 (for a server the test starts)."""
    return _free_port


@contextmanager
def _uvicorn_thread(app, log_level: str = "warning", start_seconds: float = 30):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_seconds
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def serve_app():
    """A context manager: `with serve_app(app) as base:` serves the ASGI app with a real uvicorn
    server in a thread of this process (so it shares the test's objects) on a free loopback
    port, and yields its base URL; the server stops on leaving the block."""
    return _uvicorn_thread
