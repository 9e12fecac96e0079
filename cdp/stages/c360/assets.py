"""Stage 3 - customer 360 databases: one customer 360 database per `databases:` entry of the tenant config
(c360 by default), each stitch.unified_coalesced -> <db>.unified_records -> <db>.merged_customers
(+ merged_customers_provenance) -> <db>.customer_360, in its own schema and Dagster group.

dbt cannot create models from config, so cdp generates thin model files per database into
models/databases/<db>/ of the tenant's dbt project (cdp/dbt/databases.py, written when the
manifest is prepared), each calling a shared macro (dbt_project/macros/customer_databases.sql,
merge rules in merge_rules.sql) with that database's own settings written into the file. A config change therefore changes only the files of the
databases it touches: dagster-dbt's code version of a model is its file's checksum, so only
those assets (and what is downstream of them) become stale.

A database that groups records its own way (stitch_mode deterministic or a threshold) needs the
connected components of its stronger links. Finding components takes a loop, which SQL models
cannot run on every engine (Spark SQL has no recursive UNION), so a Python asset before dbt,
<db>/record_components, finds them with Splink's clustering on the warehouse's engine (DuckDB or
Spark, the db_api Stitch uses) and the database's unified_records model reads them.

Custom attributes (attr_<name>, see sources.py) are merged field by field like the built-in
single fields, by their own rule in `merge.fields` or the database's default, and are columns of
merged_customers (with `<attr>__from`), the provenance and customer_360 of every database.
"""

from __future__ import annotations

import dagster as dg

from cdp.config import TenantConfig
from cdp.engine import WarehouseResource, splink_db_api, warehouse_of
from cdp.dbt.databases import COMPONENTS, links_its_own_way
from cdp.dbt.project import build_dbt_assets, manifest_for
from cdp.engine.tables import preview_md


# ---- the people of a deterministic or threshold database ---------------------------------------

def database_links_sql(stitch_mode: str | float) -> str:
    """The links of a database, as pairs of record keys ('source|pk'): from stitch.unified_scores,
    inside one Stitch cluster only, a deterministic rule or an analyst's match label - and with a
    threshold, a Splink match probability at or above it."""
    score = "" if stitch_mode == "deterministic" else f" or match_probability >= {float(stitch_mode)}"
    return f"""
        select source_l || '|' || pk_l as record_key_l, source_r || '|' || pk_r as record_key_r
        from stitch.unified_scores
        where linked and same_cdp_id
          and (deterministic_rule is not null or label = 'match'{score})"""


LINKS = "record_links"   # <db>.record_links: the links the components were last found from


def write_record_components(con, name: str, stitch_mode: str | float) -> dict[str, int]:
    """Table <name>.record_components (record_key, component): every record with at least one
    link of the database, and its connected component, named by the component's lowest record
    key. Records without a link are components of their own and are not listed. Splink's
    connected components (iterative min-label propagation over the links: linear in the links
    per round, never pairs of a component's records) on the connection's engine.

    The links found are kept in <name>.record_links. When the last run's are there (for the
    same stitch_mode), only the Stitch clusters that a changed link touches are re-clustered: a
    link lies inside one Stitch cluster, so a component that no changed link reaches, directly
    or through the old component of one of its ends, is what it was. Returns counts for the
    asset's metadata (`reclustered_records`: the records whose components were found again)."""
    schema = f'"{name}"'
    con.execute(f"create schema if not exists {schema}")
    con.execute(f"create or replace temp table _db_links as {database_links_sql(stitch_mode)}")
    mode = str(stitch_mode)
    engine = warehouse_of(con)
    previous = (engine.table_exists(con, name, LINKS) and engine.table_exists(con, name, COMPONENTS)
                and con.execute(f"select count(*) = 0 or bool_and(links_of = ?) from {schema}.{LINKS}",
                                [mode]).fetchall()[0][0])
    if previous:
        scope = _changed_clusters(con, schema)
        links = (f"select * from _db_links where record_key_l in (select record_key from {scope})")
    else:
        scope, links = None, "select * from _db_links"
    con.execute(f"create or replace temp table _db_scope_links as {links}")
    con.execute("""create or replace temp table _db_nodes as
                   select record_key_l as record_key from _db_scope_links
                   union select record_key_r from _db_scope_links""")
    _cluster(con)
    if scope is None:
        con.execute(f"create or replace table {schema}.{COMPONENTS} as "
                    "select record_key, component from _db_components")
    else:
        con.execute(f"delete from {schema}.{COMPONENTS} where record_key in (select record_key from {scope})")
        con.execute(f"insert into {schema}.{COMPONENTS} select record_key, component from _db_components")
    con.execute(f"create or replace table {schema}.{LINKS} as "
                "select record_key_l, record_key_r, ? as links_of from _db_links", [mode])
    reclustered = con.execute("select count(*) from _db_components").fetchall()[0][0]
    links_n, records, parts, largest = con.execute(f"""
        select (select count(*) from _db_links), count(*), count(distinct component),
               coalesce(max(size), 0)
        from (select component, count(*) over (partition by component) as size
              from {schema}.{COMPONENTS})""").fetchone()
    for temp in ("_db_links", "_db_scope_links", "_db_nodes", "_db_components", "_db_changed", "_db_scope"):
        con.execute(f"drop table if exists {temp}")
    return {"links": int(links_n), "linked_records": int(records), "components": int(parts),
            "largest_component": int(largest), "reclustered_records": int(reclustered),
            "incremental": bool(previous)}


def _changed_clusters(con, schema: str) -> str:
    """Temp table _db_scope (record_key): the records whose components are found again - every
    record of a Stitch cluster now holding an end of a link that appeared or went, or a member of
    such an end's old component - and the ends and old members themselves (a deleted record's
    row goes)."""
    con.execute(f"""
        create or replace temp table _db_changed as
        select record_key_l, record_key_r from (
            (select record_key_l, record_key_r from _db_links
             except select record_key_l, record_key_r from {schema}.{LINKS})
            union all
            (select record_key_l, record_key_r from {schema}.{LINKS}
             except select record_key_l, record_key_r from _db_links))""")
    con.execute(f"""
        create or replace temp table _db_scope as
        with ends as (select record_key_l as record_key from _db_changed
                      union select record_key_r from _db_changed),
        reached as (select record_key from ends
                    union select c.record_key from {schema}.{COMPONENTS} c
                    where c.component in (select o.component from {schema}.{COMPONENTS} o
                                          join ends using (record_key))),
        clusters as (select distinct u.cdp_id from stitch.unified_coalesced u
                     where u.source || '|' || u.pk in (select record_key from reached))
        select record_key from reached
        union select u.source || '|' || u.pk from stitch.unified_coalesced u
        where u.cdp_id in (select cdp_id from clusters)""")
    return "_db_scope"


def _cluster(con) -> None:
    """_db_components (record_key, component) of the graph _db_nodes / _db_scope_links."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    from cdp.stages.stitch.model import splink_scratch

    with splink_scratch(con):
        components = cluster_pairwise_predictions_at_threshold(
            "_db_nodes", "_db_scope_links", splink_db_api(con), node_id_column_name="record_key")
        con.execute("create or replace temp table _db_components as select record_key, "
                    f"cast(cluster_id as varchar) as component from {components.physical_name}")
        components.drop_table_from_database_and_remove_from_cache()


def build_record_component_assets(cfg: TenantConfig) -> list:
    """<db>/record_components for every database that links records its own way."""
    return [record_components_asset(name, db.stitch_mode, cfg.active_engine)
            for name, db in cfg.customer_databases.items() if links_its_own_way(db)]


def record_components_asset(name: str, mode: str | float, engine: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([name, COMPONENTS])
    how = ("a deterministic rule or an analyst's match label" if mode == "deterministic"
           else f"a deterministic rule, an analyst's match label or a Splink score >= {mode}")

    @dg.asset(key=key, group_name=name, kinds={engine, "splink"},
              deps=[dg.AssetKey(["stitch", "unified_scores"]), dg.AssetKey(["stitch", "unified_coalesced"])],
              code_version=f"stitch_mode={mode}",
              check_specs=[dg.AssetCheckSpec("inside_one_stitch_cluster", asset=key,
                                             description="Every component is a part of one Stitch "
                                                         "cluster (cdp_id).")],
              description=f"The records of {name} linked by {how} inside one Stitch cluster, each "
                          "with its connected component (lowest record key), found by Splink's "
                          "clustering. Read by its unified_records model; records without such a "
                          "link are people of their own.")
    def _components(warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            counts = write_record_components(con, name, mode)
            preview = con.execute(f'select * from "{name}"."{COMPONENTS}" limit 5').df()
            straddling = con.execute(f"""
                select count(*) from (
                    select c.component from "{name}"."{COMPONENTS}" c
                    join stitch.unified_coalesced u on u.source || '|' || u.pk = c.record_key
                    group by c.component having count(distinct u.cdp_id) <> 1)""").fetchone()[0]
        return dg.MaterializeResult(
            metadata={"dagster/row_count": counts["linked_records"], **counts,
                      "preview": dg.MetadataValue.md(preview_md(preview))},
            check_results=[dg.AssetCheckResult(
                check_name="inside_one_stitch_cluster", passed=straddling == 0,
                metadata={"components_across_clusters": int(straddling)})])

    return _components


def merge_definitions(cfg: TenantConfig) -> dg.Definitions:
    """The customer 360 databases' dbt models, an asset group per database, and before them the
    record components of the databases that link records their own way.

    The models of every database are one Dagster multi-asset, so a run builds them in one dbt
    invocation: each dbt process costs ~4 s to start and parse whatever it builds, which on a
    daily delivery is most of a database's incremental build. Selecting one database's assets
    still runs only its models (dagster-dbt subsets the invocation), and dbt builds the other
    databases when one fails (it skips only what depends on the failure)."""
    manifest = manifest_for(cfg)
    models = build_dbt_assets(cfg, manifest, folder="databases", name="customer_360_databases")
    return dg.Definitions(assets=[*build_record_component_assets(cfg), *([models] if models else [])])
