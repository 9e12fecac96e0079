"""Stage 2 - Stitch: identity resolution across every customer source.

preprocess (blocklist, what the matcher sees) -> model (Splink, versioned) -> clusters
(deterministic rules, analyst labels, scores) -> ids (stable cdp_ids, change tables, history);
assets wires them into Dagster.
"""

from cdp.stages.stitch.assets import build_stitch_definitions
from cdp.stages.stitch.preprocess import NICKNAMES
from cdp.stages.stitch.quality import pairwise_quality

__all__ = ["NICKNAMES", "build_stitch_definitions", "pairwise_quality"]
