"""Activation - orchestrations: send a segment's members or a saved query's rows to a destination
every time they are rebuilt, and remember who was sent what, when and where.

    orchestrations:
      bakery_fans_to_esp:
        segment: bakery_fans            # or  query: <saved query file stem>
        destination: esp_webhook        # a file, postgres or webhook destination
        fields: {email: email, first_name: given_name}   # field sent -> column; all when empty
        campaign: spring_bakery         # default: the orchestration's name

Each orchestration is the asset `activation/send_<name>` (with a retry policy: a failed send is
retried with exponential backoff, every attempt visible in the run's page in the UI), its own job
`orchestration_<name>`, and a sensor `orchestrate_<name>` (stopped by default) that launches the
job once per new materialization of the segments or the query.

What was sent is kept in `orchestrations.<name>` (the last payload, which a postgres destination
receives as that table) and every recipient is appended to `activation.campaign_recipients`
(campaign, orchestration, destination, kind, cdp_id, sent_at, run_id), in one transaction with the
send's row in `activation.sends`: a payload equal to the one last sent is not sent again
(`sends.py`), unless the run has the tag `cdp/resend=true`.
"""

from datetime import datetime, timezone

import dagster as dg

from cdp.engine import WarehouseResource
from cdp.stages.activation.destinations import export_file_name, file_suffix, send_webhook, write_atomically
from cdp.stages.activation.bi_connect import publish_to_postgres
from cdp.config import Destination, Orchestration, Postgres, TenantConfig, Webhook
from cdp.errors import UserError
from cdp.stages.activation.queries import SCHEMA as QUERY_SCHEMA, saved_queries
from cdp.stages.activation.segments import SCHEMA as SEGMENT_SCHEMA, SEGMENTS_KEY, require_built
from cdp.stages.activation.sends import (delivered_already, payload_version, record_delivery, resend_requested, send_sensor,
                    send_tags, unchanged_metadata)
from cdp.engine.tables import preview_md, transaction

GROUP = "activation"
PAYLOAD_SCHEMA = "orchestrations"
RECIPIENTS = "activation.campaign_recipients"
RECIPIENTS_DDL = f"""create table if not exists {RECIPIENTS} (
    campaign varchar, orchestration varchar, destination varchar, destination_kind varchar,
    cdp_id varchar, sent_at timestamp, run_id varchar)"""


class OrchestrationError(UserError, ValueError):
    """An orchestration whose source or field mapping does not fit the warehouse."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upstream_key(orch: Orchestration) -> dg.AssetKey:
    return SEGMENTS_KEY if orch.segment else dg.AssetKey([QUERY_SCHEMA, orch.query])


def source_relation(orch: Orchestration) -> str:
    if orch.segment:
        return (f"(select c.* from c360.customer_360 c join {SEGMENT_SCHEMA}."
                f"{_quote('segment_' + orch.segment)} s using (cdp_id))")
    return f"{QUERY_SCHEMA}.{_quote(orch.query)}"


def payload_sql(con, name: str, orch: Orchestration) -> str:
    """The rows to send with the field mapping applied; columns checked against the warehouse."""
    relation = source_relation(orch)
    columns = [r[0] for r in con.execute(f"describe select * from {relation}").fetchall()]
    if not orch.fields:
        return f"select * from {relation} src"
    missing = [c for c in orch.fields.values() if c not in columns]
    if missing:
        raise OrchestrationError(f"orchestrations.{name}.fields: {', '.join(missing)} not among the "
                                 f"columns of its source: {', '.join(columns)}")
    select = [f"src.{_quote(col)} as {_quote(out)}" for out, col in orch.fields.items()]
    if "cdp_id" in columns and "cdp_id" not in orch.fields:
        select.append("src.cdp_id as cdp_id")  # who was sent: kept for campaign_recipients
    return f"select {', '.join(select)} from {relation} src"


def run_orchestration(cfg: TenantConfig, name: str, con, run_id: str, log=None, resend: bool = False) -> dict:
    """Stage the payload, send it to the destination unless that very payload was its last send
    (or `resend`), record the recipients. Returns metadata (`sent`: whether anything left)."""
    orch = cfg.orchestrations[name]
    dest = cfg.destinations[orch.destination]
    campaign = orch.campaign or name
    if orch.segment:
        require_built(con, orch.segment, f"orchestrations.{name}")
    staged = f"{PAYLOAD_SCHEMA}.{_quote(name)}"
    con.execute(f"create schema if not exists {PAYLOAD_SCHEMA}")
    with transaction(con):
        con.execute(f"create or replace table {staged} as {payload_sql(con, name, orch)}")
    rows = con.execute(f"select count(*) from {staged}").fetchone()[0]
    columns = [r[0] for r in con.execute(f"describe {staged}").fetchall()]
    # who is being sent, recorded once the send succeeded
    con.execute(f"create or replace temp table _cdp_recipients as select "
                f"{'cdp_id' if 'cdp_id' in columns else 'null::varchar as cdp_id'} from {staged}")
    sent_fields = [c for c in columns if c != "cdp_id" or "cdp_id" in orch.fields or not orch.fields]
    outgoing = f"select {', '.join(_quote(c) for c in sent_fields)} from {staged}"
    version, _ = payload_version(con, outgoing, {"destination": dest.model_dump(mode="json"),
                                                 "campaign": campaign})
    last = delivered_already(con, send_asset_key(name).to_user_string(), version, resend)
    if last is not None:
        con.execute("drop table _cdp_recipients")
        return {**unchanged_metadata(last, rows), "destination": orch.destination, "campaign": campaign}
    meta: dict = {"sent": True, "dagster/row_count": rows, "version": version,
                  "destination": orch.destination, "campaign": campaign}
    target = orch.destination

    if isinstance(dest, Destination):
        folder = cfg.resolve(dest.path)
        file_name = export_file_name(cfg.tenant, name, run_id, file_suffix(dest.format, dest.gzip))
        path = write_atomically(con, outgoing, folder, file_name, dest.format, dest.gzip)
        meta.update(path=dg.MetadataValue.path(str(path)), bytes=path.stat().st_size)
        kind, target = "file", str(path)
    elif isinstance(dest, Postgres):
        url = cfg.secret(dest.url_env)
        if not url:
            raise dg.Failure(f"destinations.{orch.destination}.url_env: environment variable {dest.url_env} "
                             "is not set")
        # the table published is the staged payload with exactly the fields sent
        with transaction(con):
            con.execute(f"create or replace table {staged} as {outgoing}")
        counts = publish_to_postgres(con, url, [f"{PAYLOAD_SCHEMA}.{name}"])
        meta["postgres_table"] = f"{PAYLOAD_SCHEMA}.{name}"
        meta["postgres_rows"] = counts[f"{PAYLOAD_SCHEMA}.{name}"]
        kind = "postgres"
    elif isinstance(dest, Webhook):
        records = [r[0] for r in con.execute(f"select to_json(t)::varchar from ({outgoing}) t").fetchall()]
        result = send_webhook(records, dest.url, orchestration=name, campaign=campaign, run_id=run_id,
                              batch_size=dest.batch_size, max_retries=dest.max_retries,
                              backoff_seconds=dest.backoff_seconds, timeout_seconds=dest.timeout_seconds,
                              log=log)
        meta.update(batches=result.batches, retries=result.retries)
        kind = "webhook"
    else:
        raise OrchestrationError(f"orchestrations.{name}.destination: unsupported destination kind")

    con.execute("create schema if not exists activation")
    con.execute(RECIPIENTS_DDL)
    with transaction(con):  # who was sent and which version: together, or neither
        con.execute(f"insert into {RECIPIENTS} select ?, ?, ?, ?, cdp_id, ?, ? from _cdp_recipients",
                    [campaign, name, orch.destination, kind, datetime.now(timezone.utc).replace(tzinfo=None),
                     run_id])
        record_delivery(con, send_asset_key(name).to_user_string(), orch.destination, version, rows,
                        target, run_id)
    con.execute("drop table _cdp_recipients")
    meta["preview"] = dg.MetadataValue.md(preview_md(con.execute(f"{outgoing} limit 5").df(), raw=cfg.dagster.raw_previews))
    return meta


def send_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["activation", f"send_{name}"])


def build_orchestration_asset(cfg: TenantConfig, name: str) -> dg.AssetsDefinition:
    orch = cfg.orchestrations[name]
    what = f"segment `{orch.segment}`" if orch.segment else f"query `{orch.query}`"

    @dg.asset(key=send_asset_key(name), group_name=GROUP, deps=[upstream_key(orch)],
              kinds={type(cfg.destinations[orch.destination]).__name__.lower(), "activation"},
              retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL),
              tags=send_tags(),
              description=f"Orchestration: sends {what} to destination `{orch.destination}` "
                          f"(campaign {orch.campaign or name}) whenever it changed; recipients are "
                          f"appended to {RECIPIENTS}.")
    def _send(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            meta = run_orchestration(cfg, name, con, context.run.run_id, log=context.log,
                                     resend=resend_requested(context))
        if meta["sent"]:
            context.log.info(f"orchestration {name}: sent {meta['dagster/row_count']} rows to {orch.destination}")
        else:
            context.log.info(f"orchestration {name}: unchanged since {meta['unchanged_since']}, nothing sent")
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(meta["version"]))

    return _send


def orchestration_definitions(cfg: TenantConfig) -> dg.Definitions:
    """One send asset, job and sensor per orchestration."""
    queries = saved_queries(cfg)
    assets, jobs, sensors = [], [], []
    for name, orch in cfg.orchestrations.items():
        if orch.query is not None and orch.query not in queries:
            raise OrchestrationError(f"orchestrations.{name}.query: no saved query {orch.query!r} in the "
                                     f"queries folder; found: {', '.join(sorted(queries)) or 'none'}")
        assets.append(build_orchestration_asset(cfg, name))
        job = dg.define_asset_job(f"orchestration_{name}", selection=[send_asset_key(name)],
                                  description=f"Run orchestration {name}.")
        jobs.append(job)
        sensors.append(send_sensor(
            f"orchestrate_{name}", [upstream_key(orch)], [send_asset_key(name)], job,
            description=f"Runs orchestration {name} once per new materialization of "
                        f"{upstream_key(orch).to_user_string()}.", tags={"cdp/trigger": "orchestration"}))
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors)
