"""Personal data outside the product: Dagster keeps every materialization's metadata in its event
log and shows it in its UI, so previews mask PII unless the tenant turns raw previews on."""

import re
import shutil
from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._serdes import serialize_value
from dagster_duckdb import DuckDBResource

from cdp.config import load_config
from cdp.pii import mask_frame, mask_text, mask_value, pii_kind
from cdp.engine.tables import preview_md

EMAIL = re.compile(r"[a-z0-9._%+'-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
DIGITS = re.compile(r"\d[\d ().-]{5,20}\d")


def test_pii_columns_come_from_the_semantic_tags_and_their_derived_names():
    for col in ("email", "phone", "given_name", "surname", "full_name", "address", "address2", "postal",
                "birthdate", "loyalty_id", "national_id", "other_id_passport", "street_number",
                "email_l", "phone_r", "email__all", "email_user", "name_key_full", "given_name_alias",
                "street_name", "first_name", "last_name", "postal_code", "zip", "surnames"):
        assert pii_kind(col) is not None, col
    for col in ("cdp_id", "source", "pk", "city", "state", "country", "gender", "product_name",
                "email__from", "sources", "members", "order_revenue", "match_probability"):
        assert pii_kind(col) is None, col


def test_masked_forms():
    assert mask_value("email", "Jane.Doe@example.com") == "J***@example.com"
    assert mask_value("phone", "+12145550123") == "***-***-0123"
    assert mask_value("name", "Jane Doe") == "J. D."
    assert mask_value("birthdate", date(1984, 3, 7)) == "1984-**-**"
    assert mask_value("postal", "75201") == "75***"
    assert mask_value("identifier", "LOY-0012345") == "***45"
    assert mask_value("email", ["a@b.com", None]) == ["a***@b.com", None]
    assert mask_value("email", None) is None
    # free text and JSON documents (a profile, a quarantined line)
    text = mask_text("call (214) 912-7679 or write to autumn1971@gmail.com on 2024-01-02 10:00:00")
    assert "912-7679" not in text and "autumn1971" not in text and "2024-01-02 10:00:00" in text
    doc = mask_text('{"cdp_id": "x", "given_name": "Ann", "emails": ["ann@x.com"], "sources": ["pos"]}')
    assert doc == '{"cdp_id": "x", "given_name": "A.", "emails": ["a***@x.com"], "sources": ["pos"]}'


def test_preview_masks_by_default_and_raw_shows_values():
    df = pd.DataFrame({"cdp_id": ["P1"], "email": ["ann@example.com"], "given_name": ["Ann"],
                       "email__from": ["pos_customers"], "lifetime_revenue": [12.5]})
    masked = preview_md(df)
    assert "ann@example.com" not in masked and "a***@example.com" in masked and "| A. |" in masked
    assert "pos_customers" in masked and "12.5" in masked and "P1" in masked
    assert "ann@example.com" in preview_md(df, raw=True)
    # a (field, value) table: the blocklist, merge provenance
    block = pd.DataFrame({"field": ["email", "phone", "state"], "value": ["ann@x.com", "+15551234567", "TX"]})
    assert list(mask_frame(block)["value"]) == ["a***@x.com", "***-***-4567", "TX"]


def _source_values(con, sources):
    emails, phones = set(), set()
    for name in sources:
        for email, phone in con.execute(f'select email, phone from domain."{name}"').fetchall():
            if email:
                emails.add(email.lower())
            if phone:
                phones.add(re.sub(r"\D", "", phone)[-10:])
    return emails, phones


def _leaks(entry, emails, phones) -> set[str]:
    text = serialize_value(entry).lower()
    found = set(EMAIL.findall(text)) & emails
    found |= {d for d in (re.sub(r"\D", "", t)[-10:] for t in DIGITS.findall(text)) if d in phones}
    return found


def test_no_email_or_phone_of_the_sources_in_dagsters_event_log(pipeline_run, dagster_instance, demo_tenant):
    """The whole demo graph ran with the default setting: no event of any run (materializations,
    outputs, check evaluations, log lines) carries an email address or phone number of the data."""
    cfg = load_config(demo_tenant)
    with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
        emails, phones = _source_values(con, cfg.customer_sources)
    assert len(emails) > 100 and len(phones) > 100
    entries = [e for run in dagster_instance.get_runs() for e in dagster_instance.all_logs(run.run_id)]
    assert len(entries) > 500
    materializations = [e for e in entries if e.dagster_event and e.dagster_event.is_step_materialization]
    assert any("preview" in e.dagster_event.step_materialization_data.materialization.metadata
               for e in materializations)
    leaking = {}
    for e in entries:
        found = _leaks(e, emails, phones)
        if found:
            what = e.dagster_event.event_type_value if e.dagster_event else "log"
            leaking[f"{what} {e.step_key}"] = sorted(found)[:3]
    assert not leaking, leaking


@pytest.mark.parametrize("raw", [False, True])
def test_raw_previews_setting_shows_values(pipeline_run, demo_tenant, tmp_path, raw):
    """`dagster: {raw_previews: true}` in the tenant: the domain tables' previews (and the
    blocklist's) show the values as they are."""
    from cdp.stages.sources.assets import build_source_asset

    root = demo_tenant.parent
    doc = (root / "tenant.yaml").read_text() + f"\ndagster:\n  raw_previews: {str(raw).lower()}\n"
    doc = doc.replace("warehouse: warehouse.duckdb", f"warehouse: {tmp_path / 'warehouse.duckdb'}")
    path = root / f"tenant_raw_{raw}.yaml"
    path.write_text(doc)
    cfg = load_config(path)
    assert cfg.dagster.raw_previews is raw and cfg.warehouse_path.parent == tmp_path
    with dg.instance_for_test() as instance:
        result = dg.materialize([build_source_asset(cfg, "pos_customers", cfg.sources["pos_customers"])],
                                resources={"warehouse": DuckDBResource(database=str(cfg.warehouse_path))},
                                instance=instance)
        assert result.success
        preview = result.asset_materializations_for_node("domain__pos_customers")[0].metadata["preview"].value
        with duckdb.connect(str(cfg.warehouse_path), read_only=True) as con:
            emails, phones = _source_values(con, ["pos_customers"])
    found = {e for e in EMAIL.findall(preview.lower()) if e in emails}
    found |= {d for d in (re.sub(r"\D", "", t)[-10:] for t in DIGITS.findall(preview)) if d in phones}
    if raw:
        assert len(found) >= 4, preview   # emails and phones of the first rows, as they are
    else:
        assert not found, preview
        assert "***@" in preview and "***-***-" in preview
    shutil.rmtree(tmp_path, ignore_errors=True)
