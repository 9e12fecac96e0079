"""Stage 1 - sources: every configured source file read, standardised into domain.<source>
(rejected rows to domain.quarantine), each with a check that every row is accounted for.
On Spark the files are loaded by spark.py, which builds on assets.py; the stage hands it in.
A source of deliveries (a folder of daily files) is applied delivery by delivery
(deliveries.py), with a sensor that starts a run when a new one lands (delivery_assets.py)."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.engine import SourceLoaders
from cdp.stages.sources.assets import load_domain_table_here, source_definitions
from cdp.stages.sources.delivery_assets import delivery_definitions
from cdp.stages.sources.spark import load_domain_table

# both ways of loading a file; the engine runs the one it suits (cdp.engine.SourceLoaders)
LOADERS = SourceLoaders(in_process=load_domain_table_here, distributed=load_domain_table)


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return dg.Definitions.merge(source_definitions(cfg, LOADERS), delivery_definitions(cfg))
