"""Tenant configuration: one YAML file per tenant, validated with pydantic.

Paths inside it are relative to the file's own folder. Any error names the file, the field and
what is wrong, e.g.::

    tenants/demo/tenant.yaml: sources.pos_customers.columns.FirstName: 'givenname' is not a
    semantic tag for a 'customers' source; expected one of: address, birthdate, ...

The modules, by what they configure:

  loader.py      load_config, ConfigError, and every environment variable cdp reads (the only
                 module that reads them, once, when a config is loaded)
  tenant.py      TenantConfig (the top level), its cross-section checks, Overrides, dbt's vars
  tags.py        semantic tags per source kind, profile fields, custom attribute names
  sources.py     `sources:` (files, formats, tagged columns, attributes)
  stitch.py      `stitch:` (Splink thresholds, blocklist, households, deterministic rules)
  c360.py        `merge:` and `databases:` (merge rules, stitch modes)
  analytics.py   `interactions:`, `predictive:`, `bi:`
  activation.py  `destinations:`, `orchestrations:`, `queries:`, `lakehouse:`
  segments.py    `segments:` (the segment grammar)
  serving.py     `profile_api:`, `workspace:`, `audit:`, `dagster:`
  engine.py      `engine:` and `spark:`
  common.py      the strict base model, identifiers, schema.table lists, country codes

Everything importable from here before the split still is (`from cdp.config import ...`).
"""

from cdp.config.activation import (AnyDestination, Destination, LakehouseSync, Orchestration, Postgres,
                                   QuerySettings, Webhook)
from cdp.config.analytics import BiSettings, InteractionSettings, PredictiveSettings
from cdp.config.c360 import (GROUP_RULES, RESERVED_SCHEMAS, Database, FallbackRuleName, MergeRule,
                             MergeRuleName, MergeSettings, StitchMode)
from cdp.config.common import IDENTIFIER, ConfigError, StrictModel, check_schema_tables, iso_country
from cdp.config.engine import EngineName, SparkSettings
from cdp.config.loader import DEFAULT_CONFIG, child_process_env, load_config
from cdp.config.secrets import read_secret
from cdp.config.segments import SEGMENT_OPS, Scalar, Segment, SegmentRule, _segment_cycle
from cdp.config.serving import AuditSettings, DagsterSettings, ProfileApiSettings, WorkspaceSettings
from cdp.config.sources import Attribute, AttributeType, Source
from cdp.config.stitch import DETERMINISTIC_FIELDS, IDENTIFIER_FIELD, Blocklist, StitchSettings
from cdp.config.tags import (ADDRESS_GROUP, ATTRIBUTE_FIELD, ATTRIBUTE_NAME, ATTRIBUTE_PREFIX, ATTRIBUTE_TYPES,
                             ITEM_TAGS, NAMED_ID_TAG, PRODUCT_TAGS, PROFILE_FIELDS, PROFILE_TAGS,
                             REQUIRED_TAGS, TAGS_BY_KIND, TRANSACTION_TAGS, SourceKind, attribute_name_of,
                             identifier_column)
from cdp.config.tenant import Overrides, TenantConfig

__all__ = [
    "ADDRESS_GROUP", "ATTRIBUTE_FIELD", "ATTRIBUTE_NAME", "ATTRIBUTE_PREFIX", "ATTRIBUTE_TYPES",
    "AnyDestination", "Attribute", "AttributeType", "AuditSettings", "BiSettings", "Blocklist",
    "ConfigError", "DEFAULT_CONFIG", "DETERMINISTIC_FIELDS", "DagsterSettings", "Database", "Destination",
    "EngineName", "FallbackRuleName", "GROUP_RULES", "IDENTIFIER", "IDENTIFIER_FIELD", "ITEM_TAGS",
    "InteractionSettings", "LakehouseSync", "MergeRule", "MergeRuleName", "MergeSettings", "NAMED_ID_TAG",
    "Orchestration", "Overrides", "PRODUCT_TAGS", "PROFILE_FIELDS", "PROFILE_TAGS", "Postgres",
    "PredictiveSettings", "ProfileApiSettings", "QuerySettings", "REQUIRED_TAGS", "RESERVED_SCHEMAS",
    "SEGMENT_OPS", "Scalar", "Segment", "SegmentRule", "Source", "SourceKind", "SparkSettings",
    "StitchMode", "StitchSettings", "StrictModel", "TAGS_BY_KIND", "TRANSACTION_TAGS", "TenantConfig",
    "Webhook", "WorkspaceSettings", "_segment_cycle", "attribute_name_of", "check_schema_tables",
    "child_process_env", "identifier_column", "iso_country", "load_config", "read_secret",
]
