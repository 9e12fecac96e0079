"""Destinations against real receivers (a file folder, a local HTTP server, a real PostgreSQL),
campaign_recipients, and an unchanged payload not sent twice. The orchestration sensor on the real
graph: tests/test_activation.py."""

import csv
import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from cdp.stages.activation.destinations import WebhookError
from cdp.config import TenantConfig
from cdp.stages.activation.orchestrations import run_orchestration

SOURCES = {"shop": {"path": "x.csv", "kind": "customers", "columns": {"id": "pk"}}}
MAPPING = {"email": "email", "first_name": "given_name"}


def tenant(tmp_path, destination: dict, **orch) -> TenantConfig:
    cfg = TenantConfig.model_validate({
        "tenant": "t", "sources": SOURCES,
        "segments": {"il": {"column": "state", "op": "=", "value": "IL"}},
        "destinations": {"out": destination},
        "orchestrations": {"il_out": {"segment": "il", "destination": "out", "fields": MAPPING,
                                      "campaign": "spring", **orch}}})
    cfg.base_dir = tmp_path
    return cfg


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("create schema c360; create schema activation")
    con.execute("""create table c360.customer_360 as select * from (values
        ('P1', 'ann@example.com', 'Ann', 'IL'), ('P2', 'bob@example.com', 'Bob', 'NY'),
        ('P3', 'cy@example.com', 'Cy', 'IL'), ('P4', 'dee@example.com', 'Dee', 'IL'))
        t(cdp_id, email, given_name, state)""")
    con.execute("create table activation.segment_il as select cdp_id from c360.customer_360 where state = 'IL'")
    yield con
    con.close()


def recipients(con):
    return con.execute("select campaign, orchestration, destination, destination_kind, cdp_id "
                       "from activation.campaign_recipients order by cdp_id").fetchall()


def test_file_drop_gzip_is_atomic_and_mapped(tmp_path, con):
    cfg = tenant(tmp_path, {"kind": "file", "path": "drops", "format": "csv", "gzip": True})
    meta = run_orchestration(cfg, "il_out", con, "run-1")
    files = list((tmp_path / "drops").iterdir())
    assert [f.name.endswith(".csv.gz") for f in files] == [True]  # one file, no temp file left
    with gzip.open(files[0], "rt") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{"email": "ann@example.com", "first_name": "Ann"},
                    {"email": "cy@example.com", "first_name": "Cy"},
                    {"email": "dee@example.com", "first_name": "Dee"}]
    assert meta["dagster/row_count"] == 3
    assert recipients(con) == [("spring", "il_out", "out", "file", p) for p in ("P1", "P3", "P4")]


def test_an_unchanged_payload_is_sent_once(tmp_path, con):
    """Run again on the same members: no file, no recipients; resend: both; a change: both."""
    cfg = tenant(tmp_path, {"kind": "file", "path": "drops", "format": "csv"})
    assert run_orchestration(cfg, "il_out", con, "run-1")["sent"]
    again = run_orchestration(cfg, "il_out", con, "run-2")
    assert not again["sent"] and "run-1" in again["unchanged_since"]
    assert len(list((tmp_path / "drops").iterdir())) == 1
    assert run_orchestration(cfg, "il_out", con, "run-3", resend=True)["sent"]
    con.execute("update c360.customer_360 set given_name = 'Annie' where cdp_id = 'P1'")
    assert run_orchestration(cfg, "il_out", con, "run-4")["sent"]
    assert len(list((tmp_path / "drops").iterdir())) == 3
    assert con.execute("select run_id, count(*) from activation.campaign_recipients group by 1 order by 1"
                       ).fetchall() == [("run-1", 3), ("run-3", 3), ("run-4", 3)]
    assert con.execute("select run_id from activation.sends order by sent_at").fetchall() == [
        ("run-1",), ("run-3",), ("run-4",)]


def test_a_mapping_to_an_unknown_column_is_refused(tmp_path, con):
    cfg = tenant(tmp_path, {"kind": "file", "path": "drops"})
    cfg.orchestrations["il_out"].fields["phone"] = "phone"
    with pytest.raises(ValueError, match="fields: phone not among the columns"):
        run_orchestration(cfg, "il_out", con, "run-1")


class Receiver:
    """A local HTTP server that records every request; answers `fail_first` with 503 first."""

    def __init__(self, statuses: list[int]):
        self.requests, self.statuses = [], list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"key": self.headers["Idempotency-Key"], "body": json.loads(body)})
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/audience"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_webhook_batches_retries_and_idempotency(tmp_path, con):
    rx = Receiver([503])  # the first call fails: the batch is sent again with the same key
    try:
        cfg = tenant(tmp_path, {"kind": "webhook", "url": rx.url, "batch_size": 2, "backoff_seconds": 0.01})
        meta = run_orchestration(cfg, "il_out", con, "run-7")
    finally:
        rx.close()
    assert (meta["batches"], meta["retries"]) == (2, 1)
    keys = [r["key"] for r in rx.requests]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    delivered = [rec for r in rx.requests[1:] for rec in r["body"]["records"]]
    assert delivered == [{"email": "ann@example.com", "first_name": "Ann"},
                         {"email": "cy@example.com", "first_name": "Cy"},
                         {"email": "dee@example.com", "first_name": "Dee"}]
    assert rx.requests[2]["body"]["campaign"] == "spring" and rx.requests[2]["body"]["batch"] == 2
    assert [r[4] for r in recipients(con)] == ["P1", "P3", "P4"]


def test_webhook_refusal_fails_without_recording_recipients(tmp_path, con):
    rx = Receiver([400])
    try:
        cfg = tenant(tmp_path, {"kind": "webhook", "url": rx.url, "backoff_seconds": 0.01})
        with pytest.raises(WebhookError, match="HTTP 400"):
            run_orchestration(cfg, "il_out", con, "run-8")
    finally:
        rx.close()
    assert len(rx.requests) == 1  # a 400 is not retried
    assert con.execute("select count(*) from information_schema.tables "
                       "where table_name = 'campaign_recipients'").fetchone()[0] == 0


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("CDP_TEST_POSTGRES_URL"),
                    reason="CDP_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL "
                           "(source .ci/postgres.sh to run this test locally)")
def test_postgres_table_destination(tmp_path, con, monkeypatch):
    import psycopg

    monkeypatch.setenv("CDP_ORCH_PG", os.environ["CDP_TEST_POSTGRES_URL"])
    cfg = tenant(tmp_path, {"kind": "postgres", "url_env": "CDP_ORCH_PG", "tables": []})
    run_orchestration(cfg, "il_out", con, "run-1")
    con.execute("delete from activation.segment_il where cdp_id = 'P4'")
    run_orchestration(cfg, "il_out", con, "run-2")  # replaced, not appended
    with psycopg.connect(os.environ["CDP_TEST_POSTGRES_URL"]) as pg:
        rows = pg.execute("select email, first_name from orchestrations.il_out order by email").fetchall()
    assert rows == [("ann@example.com", "Ann"), ("cy@example.com", "Cy")]
    assert con.execute("select run_id, count(*) from activation.campaign_recipients group by 1 order by 1"
                       ).fetchall() == [("run-1", 3), ("run-2", 2)]


def test_a_left_out_segment_is_not_sent(tmp_path, con):
    """When the last segments build left the segment out, its table holds earlier members:
    the orchestration fails rather than send them."""
    from cdp.stages.activation.segments import SegmentError, build_segments

    cfg = tenant(tmp_path, {"kind": "file", "path": "drops"})
    cfg.segments["il"].column = "no_such_column"
    build_segments(cfg, con, "run-1")
    with pytest.raises(SegmentError, match="il.*left out of the last segments build.*no_such_column"):
        run_orchestration(cfg, "il_out", con, "run-1")
    assert not (tmp_path / "drops").exists()
