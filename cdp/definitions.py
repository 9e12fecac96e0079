"""The Dagster code location: the tenant's whole asset graph, read like the pipeline.

    sources (domain.*) -> stitch (Splink) -> customer 360 databases + interactions (dbt)
        -> custom tables (dbt) -> activation

The tenant config comes from $CDP_CONFIG (default: tenants/demo/tenant.yaml); the warehouse
from $CDP_WAREHOUSE or the config's `warehouse`. What the tenant's sources cannot feed (e.g.
interactions, bi and predictive without transactions sources) is left out of the graph
(cdp/scope.py); why is in the definitions' metadata `cdp/left_out`, which `cdp run` prints.
"""

from __future__ import annotations

import dagster as dg

from cdp.engine import warehouse_resource # the DuckDB file, or the lakehouse on Spark
from cdp.stages.activation.destinations import build_activation_definitions
from cdp.stages.bi.assets import build_bi_definitions
from cdp.config import TenantConfig, load_config
from cdp.stages.custom.assets import build_custom_definitions
from cdp.dbt.project import dbt_resource, left_out_tables, prepare_manifest
from cdp.stages.interactions.assets import build_interaction_definitions
from cdp.stages.activation.lakehouse_sync import build_lakehouse_definitions
from cdp.stages.c360.assets import build_merge_definitions
from cdp.stages.activation.orchestrations import build_orchestration_definitions
from cdp.stages.predictive.assets import build_predictive_definitions
from cdp.stages.activation.profile_store import build_profile_store_asset
from cdp.stages.activation.queries import build_query_definitions, left_out_queries
from cdp.scope import TABLE_NEEDS, check_built_references, scope_notes
from cdp.stages.activation.segments import build_segment_definitions
from cdp.stages.sources.assets import build_source_definitions
from cdp.stages.stitch import build_stitch_definitions


def left_out_of_graph(cfg: TenantConfig, manifest) -> dict[str, str]:
    """schema.table -> why, for every table the tenant's sources do not let it build: the
    purchase stages' tables, dbt models and saved queries that read them."""
    tables = left_out_tables(cfg, manifest)
    return {**tables, **left_out_queries(cfg, tables)}


def left_out_notes(cfg: TenantConfig, left_out: dict[str, str]) -> list[str]:
    """The stages left out, then every custom model and saved query left out, each with why."""
    return [*scope_notes(cfg),
            *(f"{table} is left out: {why}" for table, why in left_out.items() if table not in TABLE_NEEDS)]


def build_definitions(cfg: TenantConfig) -> dg.Definitions:
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    manifest = prepare_manifest(cfg)
    left_out = left_out_of_graph(cfg, manifest)
    check_built_references(cfg, left_out)
    source_assets, source_checks = build_source_definitions(cfg)
    stitch_assets, stitch_checks = build_stitch_definitions(cfg)
    activation = build_activation_definitions(cfg)
    orchestrations = build_orchestration_definitions(cfg)
    lakehouse = build_lakehouse_definitions(cfg)
    return dg.Definitions(
        assets=[*source_assets, *stitch_assets, *build_merge_definitions(cfg, manifest),
                *build_interaction_definitions(cfg, manifest), *build_bi_definitions(cfg, manifest),
                *build_predictive_definitions(cfg), *build_custom_definitions(cfg, manifest),
                *activation["assets"], *build_query_definitions(cfg, left_out), *build_segment_definitions(cfg),
                build_profile_store_asset(cfg),
                *orchestrations["assets"], *lakehouse["assets"]],
        asset_checks=[*source_checks, *stitch_checks],
        jobs=[*activation["jobs"], *orchestrations["jobs"]],
        sensors=[*activation["sensors"], *orchestrations["sensors"], *lakehouse["sensors"]],
        schedules=activation["schedules"],
        resources={
            "warehouse": warehouse_resource(cfg),
            "dbt": dbt_resource(cfg),
        },
        # One DuckDB file has one writer: steps run one after another in the run's process.
        executor=dg.in_process_executor,
        metadata={"cdp/left_out": left_out_notes(cfg, left_out)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
