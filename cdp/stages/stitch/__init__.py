"""Stage 2 - Stitch: identity resolution across every customer source.

preprocess (blocklist, what the matcher sees) -> model (Splink, versioned) -> clusters
(deterministic rules, analyst labels, scores) -> ids (stable cdp_ids, change tables, history);
assets wires them into Dagster.
"""

import dagster as dg

from cdp.config import TenantConfig
from cdp.stages.stitch.assets import stitch_definitions
from cdp.stages.stitch.preprocess import NICKNAMES
from cdp.stages.stitch.quality import pairwise_quality

__all__ = ["NICKNAMES", "definitions", "pairwise_quality"]


def definitions(cfg: TenantConfig) -> dg.Definitions:
    return stitch_definitions(cfg)
