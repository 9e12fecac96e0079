"""Stage 8 - activation: what the platform does with its customer 360.

destinations (file exports, the jobs and the daily rebuild), orchestrations (sends to a
destination), lakehouse sync, saved queries, segments and the Profile API's store.
"""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.activation.destinations import destination_definitions
from cdp.stages.activation.lakehouse_sync import lakehouse_definitions
from cdp.stages.activation.orchestrations import orchestration_definitions
from cdp.stages.activation.profile_store import profile_store_definitions
from cdp.stages.activation.queries import query_definitions
from cdp.stages.activation.segments import segment_definitions

PARTS = (destination_definitions, query_definitions, segment_definitions, profile_store_definitions,
         orchestration_definitions, lakehouse_definitions)


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return dg.Definitions.merge(*(part(cfg) for part in PARTS))
