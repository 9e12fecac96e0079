"""TenantConfig: one tenant's whole config (the YAML's top level), the checks across its sections
(names that must refer to each other, attribute types, merge sources), the values the
environment overrides (`Overrides`, read once by cdp/config/loader.py) and what dbt is given."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from cdp.config.activation import AnyDestination, LakehouseSync, Orchestration, QuerySettings
from cdp.config.analytics import BiSettings, InteractionSettings, PredictiveSettings
from cdp.config.c360 import RESERVED_SCHEMAS, Database, MergeSettings
from cdp.config.common import IDENTIFIER, StrictModel, iso_country
from cdp.config.engine import DuckDBSettings, EngineName, SparkSettings
from cdp.config.segments import Segment, _segment_cycle
from cdp.config.serving import AuditSettings, DagsterSettings, ProfileApiSettings, WorkspaceSettings
from cdp.config.sources import Source
from cdp.config.scope import check_references
from cdp.config.secrets import read_secret
from cdp.config.stitch import StitchSettings
from cdp.config.tags import ADDRESS_GROUP, ATTRIBUTE_FIELD, ATTRIBUTE_PREFIX, SourceKind
from cdp.countries import DEFAULT_COUNTRY


class Overrides(BaseModel):
    """Values from outside the YAML that win over its own, taken once when the config is loaded
    (load_config reads the environment; `cdp run --warehouse` passes the warehouse); `origin`
    names where each came from (field -> CDP_ENGINE, --warehouse...), for messages."""
    model_config = ConfigDict(frozen=True)

    warehouse: Path | None = None       # CDP_WAREHOUSE or --warehouse, resolved
    engine: EngineName | None = None    # CDP_ENGINE
    dagster_home: Path | None = None    # DAGSTER_HOME, resolved
    origin: dict[str, str] = Field(default_factory=dict)


class TenantConfig(StrictModel):
    tenant: str = Field(description="the tenant's name, a lowercase identifier ([a-z][a-z0-9_]*): it "
                                    "begins the name of every file a file destination drops, is shown "
                                    "in the titles of the Spark app, the Profile API and the workspace, "
                                    "and seeds the cdp_ids Stitch issues to new people")
    country: str = Field(default=DEFAULT_COUNTRY,
                         description="ISO 3166-1 alpha-2 country of the tenant's customers: how phones, "
                                     "postcodes, states and street lines are read when neither the record "
                                     "nor its source says (sources.<name>.country); also the default "
                                     "bi.holiday_country. Default US")
    warehouse: str = Field(default="warehouse.duckdb",
                           description="DuckDB file, relative to the config file")
    engine: EngineName = Field(default="duckdb", description="duckdb (embedded) or spark; "
                                                           "$CDP_ENGINE overrides")
    spark: SparkSettings = Field(default_factory=SparkSettings,
                                 description="where and how Spark runs (engine: spark only)")
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings,
                                   description="memory and spill folder of the DuckDB connections to "
                                               "the warehouse file (cdp's and dbt's)")
    sources: dict[str, Source] = Field(
        description="the tenant's data files by name; a name is a lowercase identifier and becomes "
                    "the table domain.<name>. At least one source must have kind customers")
    stitch: StitchSettings = Field(default_factory=StitchSettings,
                                   description="identity resolution: which customer records are one "
                                               "person (cdp_id)")
    merge: MergeSettings = Field(default_factory=MergeSettings,
                                 description="merge rules of the c360 database when `databases` does "
                                             "not list c360 (when it does, set them in "
                                             "databases.c360.merge and leave this out)")
    databases: dict[str, Database] = Field(
        default_factory=dict,
        description="customer 360 databases by name (each its own schema); 'c360' is added from "
                    "`merge` when not listed")
    destinations: dict[str, AnyDestination] = Field(
        default_factory=dict,
        description="where outputs are sent, by name (a lowercase identifier): a file drop (the kind "
                    "when none is given), a PostgreSQL database or a webhook")
    interactions: InteractionSettings = Field(default_factory=InteractionSettings,
                                              description="the purchase attributes computed from the "
                                                          "transactions sources")
    predictive: PredictiveSettings = Field(default_factory=PredictiveSettings,
                                           description="the CLV and category propensity models "
                                                       "trained on the purchase history")
    bi: BiSettings = Field(default_factory=BiSettings,
                           description="the calendar (bi.dim_date) and holidays of the BI star schema")
    rebuild_cron: str = Field(default="0 3 * * *", description="daily rebuild schedule")
    queries: QuerySettings | None = Field(default=None, description="saved Presto SQL queries")
    profile_api: ProfileApiSettings = Field(default_factory=ProfileApiSettings,
                                            description="the Profile API of `cdp serve`: its API keys "
                                                        "and the serving copy it reads")
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings,
                                         description="the analyst workspace of `cdp serve`: users, "
                                                     "sessions and query limits")
    audit: AuditSettings = Field(default_factory=AuditSettings,
                                 description="the audit log of the workspace and the Profile API")
    dagster: DagsterSettings = Field(default_factory=DagsterSettings,
                                     description="what Dagster's metadata and UI show")
    segments: dict[str, Segment] = Field(default_factory=dict, description="audiences, see segments.py")
    orchestrations: dict[str, Orchestration] = Field(default_factory=dict,
                                                     description="segment/query -> destination bindings")
    lakehouse: LakehouseSync | None = Field(default=None, description="outputs synced to a lakehouse "
                                                                      "folder (Parquet or Delta)")

    # set by load_config, not by the YAML
    base_dir: Path = Field(default=Path("."), exclude=True)
    config_path: Path | None = Field(default=None, exclude=True)
    # set by load_config from the environment and the CLI's arguments (cdp/config/loader.py)
    _overrides: Overrides = PrivateAttr(default_factory=Overrides)

    @field_validator("rebuild_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(v):
            raise ValueError(f"{v!r} is not a cron schedule (five fields: minute hour day month weekday, "
                             "e.g. '0 3 * * *')")
        return v

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} must be a lowercase identifier ([a-z][a-z0-9_]*)")
        return v

    @field_validator("country", mode="before")
    @classmethod
    def _country_code(cls, v: Any) -> str:
        return iso_country(v)

    @model_validator(mode="after")
    def _inherit_country(self) -> "TenantConfig":
        """Sources without a country of their own, and public holidays, take the tenant's."""
        for src in self.sources.values():
            src._tenant_country = self.country
        if "holiday_country" not in self.bi.model_fields_set:
            self.bi.holiday_country = self.country
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> "TenantConfig":
        for name, src in self.sources.items():
            if not IDENTIFIER.match(name):
                raise ValueError(f"sources.{name}: source names must be lowercase identifiers "
                                 "([a-z][a-z0-9_]*), they become table names")
            if src.deliveries is not None and self.engine == "spark":
                raise ValueError(f"sources.{name}.deliveries: delivery folders are loaded on the duckdb "
                                 "engine only for now (this tenant has engine: spark); point path: at "
                                 "one file, or run on duckdb")
            if src.order_source is not None:
                target = self.sources.get(src.order_source)
                if src.kind != SourceKind.transaction_items:
                    raise ValueError(f"sources.{name}.order_source: only transaction_items sources name "
                                     "an order source")
                if target is None or target.kind != SourceKind.transactions:
                    raise ValueError(f"sources.{name}.order_source: {src.order_source!r} is not "
                                     "a transactions source of this tenant")
            if src.customer_source is not None:
                target = self.sources.get(src.customer_source)
                if target is None or target.kind != SourceKind.customers:
                    raise ValueError(f"sources.{name}.customer_source: {src.customer_source!r} is not "
                                     "a customers source of this tenant")
        if not self.customer_sources:
            raise ValueError("sources: at least one source must have kind 'customers'")
        for src in self.sources_of(SourceKind.customers).values():
            src._tenant_identifiers = self.identifier_columns
        attributes = self._check_attributes()
        for src in self.sources_of(SourceKind.customers).values():
            src._tenant_attributes = attributes
        for where, settings in [("merge", self.merge),
                                *((f"databases.{n}.merge", d.merge) for n, d in self.databases.items())]:
            for fname in settings.fields:
                if ATTRIBUTE_FIELD.match(fname) and fname not in attributes:
                    raise ValueError(f"{where}.fields.{fname}: no customers source keeps an attribute "
                                     f"{fname.removeprefix(ATTRIBUTE_PREFIX)!r}"
                                     + (f" (attributes: {', '.join(attributes)})" if attributes else ""))
        for fname, rule in self.merge.fields.items():
            for s in rule.sources:
                if s not in self.customer_sources:
                    raise ValueError(f"merge.fields.{fname}.sources: {s!r} is not a customers source")
            if rule.rule == "source_priority" and not rule.sources:
                raise ValueError(f"merge.fields.{fname}.sources: source_priority needs a list of sources")
        for s in self.merge.default.sources:
            if s not in self.customer_sources:
                raise ValueError(f"merge.default.sources: {s!r} is not a customers source")
        if "c360" in self.databases and "merge" in self.model_fields_set:
            raise ValueError("merge: the rules of database c360 are set in databases.c360.merge; "
                             "remove the top-level merge")
        for dbname, db in self.databases.items():
            where = f"databases.{dbname}"
            if not IDENTIFIER.match(dbname) or "__" in dbname:
                raise ValueError(f"{where}: database names must be lowercase identifiers without "
                                 "'__' ([a-z][a-z0-9_]*), they become schema names")
            if dbname in RESERVED_SCHEMAS:
                raise ValueError(f"{where}: {dbname!r} is a schema of cdp itself; choose another name")
            if isinstance(db.stitch_mode, float) and db.stitch_mode < self.stitch.match_threshold:
                raise ValueError(f"{where}.stitch_mode: {db.stitch_mode} is below stitch.match_threshold "
                                 f"({self.stitch.match_threshold}); a database can only be stricter "
                                 "than Stitch")
            for fname, rule in [("default", db.merge.default), *db.merge.fields.items()]:
                for s in rule.sources:
                    if s not in self.customer_sources:
                        raise ValueError(f"{where}.merge.fields.{fname}.sources: {s!r} is not a "
                                         "customers source")
                if rule.rule == "source_priority" and not rule.sources:
                    raise ValueError(f"{where}.merge.fields.{fname}.sources: source_priority needs a "
                                     "list of sources")
        for dname, dest in self.destinations.items():
            if not IDENTIFIER.match(dname):
                raise ValueError(f"destinations.{dname}: names must be lowercase identifiers")
        self._check_segments()
        self._check_orchestrations()
        self._check_deterministic_rules()
        check_references(self)  # nothing may name a table the sources cannot build
        return self

    def _check_attributes(self) -> dict[str, str]:
        """attribute column -> type over every customers source, sorted; an attribute kept by several
        sources merges across them, so they must give it the same type."""
        found: dict[str, tuple[str, str]] = {}
        for name, src in self.sources_of(SourceKind.customers).items():
            for column, attr in src.attributes.items():
                where = f"sources.{name}.attributes.{column}"
                if attr.column in found and found[attr.column][0] != attr.type:
                    raise ValueError(f"{where}: attribute {attr.name!r} is type {attr.type} here but "
                                     f"{found[attr.column][0]} in {found[attr.column][1]}; one attribute "
                                     "has one type in every source")
                found.setdefault(attr.column, (attr.type, where))
        return {c: found[c][0] for c in sorted(found)}

    def _check_deterministic_rules(self) -> None:
        """A rule the tenant wrote must name fields its customer sources have; the default rules
        are used where their fields exist (see stitch.design)."""
        if "deterministic_rules" not in self.stitch.model_fields_set:
            return
        tagged = self.tagged_profile_fields
        for i, rule in enumerate(self.stitch.deterministic_rules):
            missing = [f for f in rule if f not in tagged]
            if missing:
                raise ValueError(f"stitch.deterministic_rules.{i}: {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not tagged in any customers "
                                 f"source (tagged: {', '.join(sorted(tagged))})")

    def _check_orchestrations(self) -> None:
        for oname, orch in self.orchestrations.items():
            if not IDENTIFIER.match(oname):
                raise ValueError(f"orchestrations.{oname}: names must be lowercase identifiers")
            if orch.destination not in self.destinations:
                raise ValueError(f"orchestrations.{oname}.destination: {orch.destination!r} is not a "
                                 f"destination of this tenant; defined: {', '.join(sorted(self.destinations))}")
            if orch.segment is not None and orch.segment not in self.segments:
                raise ValueError(f"orchestrations.{oname}.segment: {orch.segment!r} is not a segment")
            if orch.query is not None and self.queries is None:
                raise ValueError(f"orchestrations.{oname}.query: the tenant has no queries folder")
            for out, col in orch.fields.items():
                if not IDENTIFIER.match(out) or not IDENTIFIER.match(col):
                    raise ValueError(f"orchestrations.{oname}.fields.{out}: field and column names must be "
                                     "lowercase identifiers")

    def _check_segments(self) -> None:
        for sname, seg in self.segments.items():
            if not IDENTIFIER.match(sname):
                raise ValueError(f"segments.{sname}: names must be lowercase identifiers")
            for ref in sorted(seg.referenced_segments()):
                if ref not in self.segments:
                    raise ValueError(f"segments.{sname}: refers to segment {ref!r}, which is not defined")
        cycle = _segment_cycle(self.segments)
        if cycle:
            raise ValueError(f"segments.{cycle[0]}: segments refer to each other in a cycle: "
                             + " -> ".join(cycle))

    # ---- convenience -------------------------------------------------------------------------
    def sources_of(self, kind: SourceKind) -> dict[str, Source]:
        return {n: s for n, s in self.sources.items() if s.kind == kind}

    @property
    def customer_sources(self) -> list[str]:
        return list(self.sources_of(SourceKind.customers))

    @property
    def identifier_columns(self) -> list[str]:
        """Identifier columns of the customer domain tables beyond loyalty_id, from every customers
        source's tags (each customer domain table has all of them, so the sources union)."""
        found = {c for s in self.sources_of(SourceKind.customers).values() for c in s.identifier_columns()}
        return sorted(found - {"loyalty_id"})

    @property
    def attribute_columns(self) -> dict[str, str]:
        """Custom attribute columns (attr_<name>) of the customer tables -> their type."""
        return {c: t for s in self.sources_of(SourceKind.customers).values()
                for c, t in s.tenant_attributes.items()}

    @property
    def tagged_profile_fields(self) -> set[str]:
        """Profile fields some customers source carries (a full name gives both names; a street
        number is part of the address)."""
        fields: set[str] = set()
        for src in self.sources_of(SourceKind.customers).values():
            cols = set(src.domain_columns().values())
            if "full_name" in cols:
                cols |= {"given_name", "surname"}
            if "street_number" in cols:
                cols.add("address")
            fields |= cols
        return fields

    def resolve(self, path: str) -> Path:
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def overrides(self) -> Overrides:
        """What the environment (and the CLI's arguments) set when this config was loaded."""
        return self._overrides

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file: $CDP_WAREHOUSE (or `cdp run --warehouse`) when the config was loaded
        with one, else the config's `warehouse`."""
        return self._overrides.warehouse or self.resolve(self.warehouse).resolve()

    @property
    def duckdb_connection_config(self) -> dict[str, str]:
        """The DuckDB settings (duckdb:) a connection to the warehouse file opens with; the ones
        left unset are DuckDB's defaults."""
        out = {}
        if self.duckdb.memory_limit:
            out["memory_limit"] = self.duckdb.memory_limit
        if self.duckdb.temp_directory:
            out["temp_directory"] = str(self.resolve(self.duckdb.temp_directory))
        return out

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance (runs, materializations, check results, sensor cursors) that
        `cdp run`, `cdp demo` and `cdp ui` share, so the UI shows what a run from the shell
        built: $DAGSTER_HOME if set, else `dagster_home/` beside the warehouse."""
        return self._overrides.dagster_home or self.warehouse_path.parent / "dagster_home"

    @property
    def active_engine(self) -> str:
        """The engine this run uses: $CDP_ENGINE if set when the config was loaded, else the
        config's `engine`."""
        return self._overrides.engine or self.engine

    def secret(self, name: str) -> str | None:
        """The value of the environment variable a setting names (`destinations.<name>.url_env`,
        `profile_api.api_key_env`), or None. Read when it is used and never kept on the config,
        so a secret is not in a dump or a log of it, and a rotated one is seen without a reload."""
        return read_secret(name)

    @property
    def lakehouse_path(self) -> Path:
        """Folder of the Spark engine's tables (Parquet)."""
        if self.spark.lakehouse:
            return self.resolve(self.spark.lakehouse).resolve()
        return self.warehouse_path.parent / "lakehouse"

    @property
    def customer_databases(self) -> dict[str, Database]:
        """Every customer 360 database; c360 (from the top-level `merge`) unless listed, first."""
        dbs = {"c360": self.databases.get("c360") or Database(
            description="The customer 360 (default database)", merge=self.merge)}
        dbs.update({n: d for n, d in self.databases.items() if n != "c360"})
        return dbs

    def dbt_vars(self) -> dict:
        """The part of the config dbt needs, passed with --vars. Each database's own rules and
        stitch mode are written into its generated model files (see cdp/stages/c360/assets.py), so a
        change to one database changes only its models."""
        merge = self.customer_databases["c360"].merge.dbt_rules()
        return {
            "tenant": self.tenant,
            "customer_sources": self.customer_sources,
            "transaction_sources": [
                {"name": n, "customer_source": s.customer_source,
                 "has": sorted(s.domain_columns().values())}
                for n, s in self.sources_of(SourceKind.transactions).items()],
            "item_sources": [{"name": n, "has": sorted(s.domain_columns().values()),
                              "order_source": s.order_source}
                             for n, s in self.sources_of(SourceKind.transaction_items).items()],
            "product_sources": [{"name": n, "has": sorted(s.domain_columns().values())}
                                for n, s in self.sources_of(SourceKind.products).items()],
            "merge_rules": merge,
            "address_group": list(ADDRESS_GROUP),
            "as_of_date": (self.interactions.as_of_date or date.today()).isoformat(),
            "early_repeat_days": self.interactions.early_repeat_days,
            "bi": self.bi.model_dump(),
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.dbt_vars(), sort_keys=True).encode()).hexdigest()[:16]
