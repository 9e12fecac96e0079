"""The Dagster code location: the tenant's whole asset graph, read like the pipeline.

    sources (domain.*) -> stitch (Splink) -> customer 360 databases + interactions (dbt)
        -> predictive, bi -> custom tables (dbt) -> activation

Every stage package (cdp/stages/<stage>/) has one contract, `definitions(cfg) -> dg.Definitions`
with its assets, checks, jobs, sensors and schedules; the code location is the `Definitions.merge`
of the stages in STAGES order plus what they share (`shared_definitions`): the warehouse and dbt
resources, the in-process executor and the metadata. Stages that read dbt models get the manifest
from the dbt layer (cdp.dbt.project.manifest_for), prepared once per load.

The tenant config comes from $CDP_CONFIG (default: tenants/demo/tenant.yaml); the warehouse
from $CDP_WAREHOUSE or the config's `warehouse`. What the tenant's sources cannot feed (e.g.
interactions, bi and predictive without transactions sources) is left out of the graph
(cdp/config/scope.py); why is in the definitions' metadata `cdp/left_out`, which `cdp run` prints.
"""

from __future__ import annotations

import dagster as dg

from cdp.config import TenantConfig, load_config
from cdp.dbt.project import dbt_resource
from cdp.engine import warehouse_resource  # the DuckDB file, or the lakehouse on Spark
from cdp.config.scope import TABLE_NEEDS, check_built_references, scope_notes
from cdp.stages import activation, bi, c360, custom, interactions, predictive, sources, stitch
from cdp.stages.activation.queries import left_out_of_graph

STAGES = (sources, stitch, c360, interactions, predictive, bi, custom, activation)


def left_out_notes(cfg: TenantConfig, left_out: dict[str, str]) -> list[str]:
    """The stages left out, then every custom model and saved query left out, each with why."""
    return [*scope_notes(cfg),
            *(f"{table} is left out: {why}" for table, why in left_out.items() if table not in TABLE_NEEDS)]


def shared_definitions(cfg: TenantConfig, left_out: dict[str, str]) -> dg.Definitions:
    """What every stage runs with: the warehouse and dbt, one process, and why tables are left out."""
    return dg.Definitions(
        resources={"warehouse": warehouse_resource(cfg), "dbt": dbt_resource(cfg)},
        # One DuckDB file has one writer: steps run one after another in the run's process.
        executor=dg.in_process_executor,
        metadata={"cdp/left_out": left_out_notes(cfg, left_out)},
    )


def build_definitions(cfg: TenantConfig) -> dg.Definitions:
    cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    left_out = left_out_of_graph(cfg)
    check_built_references(cfg, left_out)
    return dg.Definitions.merge(*(stage.definitions(cfg) for stage in STAGES),
                                shared_definitions(cfg, left_out))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
