"""The dbt project (dbt_project/) as Dagster assets, shared by the merge and interactions stages.

The tenant config reaches dbt in two ways:
  * `--vars` carries sources, merge rules and the address group to every dbt command;
  * files generated from the config: `models/_tenant_sources.yml` declares each
    `domain.<source>` table as a dbt source (true lineage from source assets to models in
    Dagster), and `models/databases/<db>/` holds each customer 360 database's models.
dbt runs each tenant in its own project folder next to its warehouse (`.dbt_project/`): every
file of dbt_project/ linked there (an engineer's edit is seen at once) plus the tenant's
generated files, so two tenants - or a test run and a benchmark - never overwrite each other's.
The manifest is re-parsed only when that tenant-derived input changes.

dbt writes its artifacts (manifest.json among them) in place, not atomically, so no dbt command
writes where the manifest is read: every dbt invocation (the parse, each build step) runs in a
target folder of its own (`dbt_target`), and the parse's manifest and partial-parse state are
then renamed into the tenant's target folder. The code location, every run worker and the
sensors read that manifest.json, which is always a whole file: the previous one or the new one.
"""


import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource

from cdp.engine import WarehouseResource, warehouse_of
from cdp.config import SourceKind, TenantConfig
from cdp.dbt.databases import write_database_models
from cdp.dbt.incremental import how_built, macros_digest
from cdp.paths import DBT_PROJECT_DIR
from cdp.config.scope import TABLE_NEEDS, needs_of, tenant_scope
from cdp.engine.tables import table_preview


TENANT_SOURCES = "_tenant_sources.yml"
GENERATED_MODELS = {TENANT_SOURCES, "databases"}       # under models/, written per tenant
NOT_LINKED = {"target", "logs", "dbt_packages"}

# dbt model folder -> Dagster group (the stage it belongs to)
GROUP_BY_FOLDER = {"c360": "c360", "interactions": "interactions", "bi": "bi", "custom": "custom"}


def tenant_project_dir(cfg: TenantConfig) -> Path:
    return cfg.warehouse_path.parent / ".dbt_project"


def _generated(rel: Path) -> bool:
    return len(rel.parts) > 1 and rel.parts[0] == "models" and rel.parts[1] in GENERATED_MODELS


def link_project_files(project: Path) -> None:
    """Link every file of dbt_project/ into `project` (dbt does not walk into linked folders,
    so files are linked one by one) and drop links whose file is gone."""
    wanted = set()
    for src in sorted(DBT_PROJECT_DIR.rglob("*")):
        rel = src.relative_to(DBT_PROJECT_DIR)
        if not src.is_file() or rel.parts[0] in NOT_LINKED or _generated(rel):
            continue
        dst = project / rel
        wanted.add(dst)
        if dst.is_symlink() and os.readlink(dst) == str(src):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        dst.symlink_to(src)
    for dst in sorted(project.rglob("*")):
        if dst.is_symlink() and dst not in wanted:
            dst.unlink()


# ---- the engine dbt runs on ---------------------------------------------------------------------

def dbt_engine(cfg: TenantConfig) -> str:
    """duckdb (dbt-duckdb on the warehouse file) or spark (dbt-spark in session mode on the
    lakehouse folder): the tenant's engine (`engine:`; $CDP_ENGINE overrides)."""
    return cfg.active_engine


def lakehouse_path(cfg: TenantConfig) -> Path:
    """The Spark engine's table folder: <lakehouse>/<schema>/<table>/ Parquet files."""
    return cfg.lakehouse_path


def lakehouse_tables(root: Path) -> list[str]:
    """schema.table of every table folder in the lakehouse (one that holds Parquet files)."""
    if not root.is_dir():
        return []
    return sorted(f"{table.parent.name}.{table.name}" for table in root.glob("*/*")
                  if table.is_dir() and not table.parent.name.startswith("_")
                  and any(table.glob("**/*.parquet")))


def lakehouse_relation(cfg: TenantConfig, schema: str, table: str, spark: bool = False) -> str:
    """A lakehouse table as a relation in DuckDB SQL: for DuckDB a glob of its Parquet files;
    for the Spark connection (which transpiles DuckDB SQL) the folder, which Spark reads whole."""
    folder = lakehouse_path(cfg) / schema / table
    return f"read_parquet('{folder}')" if spark else f"read_parquet('{folder}/**/*.parquet')"


def target_path(cfg: TenantConfig) -> Path:
    """dbt's target folder (manifest, partial parse state), one per engine: switching a tenant
    between engines does not throw away the other's parse."""
    suffix = "" if dbt_engine(cfg) == "duckdb" else f"_{dbt_engine(cfg)}"
    return cfg.warehouse_path.parent / f".dbt_target{suffix}"


def tenant_sources_yaml(cfg: TenantConfig) -> str:
    tables = [{"name": name, "description": src.description or f"{src.kind.value} source {name}"}
              for name, src in cfg.sources.items() if src.kind != SourceKind.customers]
    tables += [{"name": name, "description": src.description or f"customer source {name}"}
               for name, src in cfg.sources.items() if src.kind == SourceKind.customers]
    doc = {"version": 2, "sources": [{
        "name": "domain", "schema": "domain",
        "description": f"Standardised source tables of tenant {cfg.tenant} (generated from its config).",
        "tables": tables}]}
    return ("# GENERATED by cdp from the tenant config - do not edit.\n"
            + yaml.safe_dump(doc, sort_keys=False))


def dbt_vars(cfg: TenantConfig) -> dict:
    """The config's vars, what purchase data the tenant has (cdp/config/scope.py) and the digest
    of the macro files (an incremental model rebuilds whole when its macros changed:
    macros/incremental_people.sql)."""
    return {**cfg.dbt_vars(), **tenant_scope(cfg).dbt_vars(), "cdp_code_digest": macros_digest()}


def dbt_vars_arg(cfg: TenantConfig) -> list[str]:
    return ["--vars", json.dumps(dbt_vars(cfg), sort_keys=True)]


def dbt_vars_fingerprint(cfg: TenantConfig) -> str:
    return hashlib.sha256(json.dumps(dbt_vars(cfg), sort_keys=True).encode()).hexdigest()[:16]


def dbt_env(cfg: TenantConfig) -> dict[str, str]:
    """What profiles.yml and macros/lakehouse.sql read from the dbt process's environment."""
    env = {"CDP_WAREHOUSE": str(cfg.warehouse_path)}
    duckdb_settings = cfg.duckdb_connection_config
    env["CDP_DUCKDB_MEMORY_LIMIT"] = duckdb_settings.get("memory_limit", "80%")   # DuckDB's default
    if "temp_directory" in duckdb_settings:
        env["CDP_DUCKDB_TEMP_DIRECTORY"] = duckdb_settings["temp_directory"]
    if dbt_engine(cfg) == "spark":
        root = lakehouse_path(cfg)
        spark = cfg.spark
        env.update({
            "CDP_DBT_TARGET": "spark",
            "CDP_LAKEHOUSE": str(root),
            "CDP_LAKEHOUSE_TABLES": ",".join(lakehouse_tables(root)),
            "CDP_SPARK_MASTER": spark.master,
            "CDP_SPARK_SHUFFLE_PARTITIONS": str(spark.shuffle_partitions),
        })
    return env


@contextlib.contextmanager
def warehouse_env(cfg: TenantConfig):
    """profiles.yml reads the warehouse path (on Spark: the target, lakehouse folder and its
    tables) from the dbt process's environment: set it for one dbt invocation only, so no other
    tenant in this process is pointed at this one's file. dagster-dbt's DbtCliResource.cli gives
    dbt a copy of os.environ and takes no environment of its own, so the dbt layer is the one
    place cdp writes os.environ (tests/unit/test_config_door.py); the values come from the
    loaded config, never from the environment read back."""
    env = dbt_env(cfg)
    keys = ("CDP_WAREHOUSE", "CDP_DBT_TARGET", "CDP_LAKEHOUSE", "CDP_LAKEHOUSE_TABLES",
            "CDP_SPARK_MASTER", "CDP_SPARK_SHUFFLE_PARTITIONS", "CDP_DUCKDB_MEMORY_LIMIT",
            "CDP_DUCKDB_TEMP_DIRECTORY")
    previous = {key: os.environ.get(key) for key in keys}
    for key in keys:
        if key in env:
            os.environ[key] = env[key]
        elif key != "CDP_WAREHOUSE":
            os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def buildable_tests_only():
    """dbt's default (eager) indirect selection runs a test as soon as one of the models it reads
    is selected - e.g. a custom table's test that refers to c360.customer_360 would run in the
    c360 step, before the custom table exists. `buildable` runs a test in the step that builds
    all of its models (or their ancestors). dagster-dbt reads this from the environment."""
    previous = os.environ.get("DBT_INDIRECT_SELECTION")
    os.environ["DBT_INDIRECT_SELECTION"] = previous or "buildable"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DBT_INDIRECT_SELECTION", None)


class InstalledDbt(DbtCliResource):
    """dagster-dbt's resource for the dbt installed beside cdp (this Python's environment), with
    two costs of every dbt step taken out:
      * it learns dbt's version from the installed dbt-core package, where dagster-dbt runs
        `dbt --version` - a second dbt process that also asks PyPI for the latest release
        (2.5-3.5 s per step, and a network call from every run);
      * it builds no dbt adapter inside the Dagster process (1.5 s per step): dagster-dbt needs
        one only to fetch column metadata or row counts, and cdp reads row counts and previews
        from the finished tables itself (build_dbt_assets)."""

    @functools.cached_property
    def _cli_version(self):
        from packaging.version import parse

        return parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None


def dbt_resource(cfg: TenantConfig) -> DbtCliResource:
    venv_dbt = Path(sys.executable).parent / "dbt"
    if venv_dbt.exists():
        return InstalledDbt(project_dir=str(tenant_project_dir(cfg)), profiles_dir=str(DBT_PROJECT_DIR),
                            dbt_executable=str(venv_dbt))
    return DbtCliResource(project_dir=str(tenant_project_dir(cfg)), profiles_dir=str(DBT_PROJECT_DIR),
                          dbt_executable="dbt")


PARTIAL_PARSE = "partial_parse.msgpack"


@contextlib.contextmanager
def dbt_target(cfg: TenantConfig, label: str = "dbt"):
    """A target folder for one dbt invocation, with the tenant's partial-parse state copied in
    (so dbt does not parse from scratch): dbt's artifacts land there, never over the manifest
    others read. Removed afterwards, unless the block failed (then it is kept for a look)."""
    shared = target_path(cfg)
    own = shared / "invocations" / f"{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    own.mkdir(parents=True)
    if (shared / PARTIAL_PARSE).exists():
        shutil.copy2(shared / PARTIAL_PARSE, own / PARTIAL_PARSE)
    yield own
    shutil.rmtree(own, ignore_errors=True)


def write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_manifest(cfg: TenantConfig) -> Path:
    """Lay out the tenant's dbt project (linked files + generated ones) and parse it when its
    inputs changed. The parse runs in its own target folder; its manifest is then renamed over
    the tenant's manifest.json (an atomic replace: a reader gets the old file or the new one)."""
    project = tenant_project_dir(cfg)
    link_project_files(project)
    sources_file = project / "models" / TENANT_SOURCES
    content = tenant_sources_yaml(cfg)
    if not sources_file.exists() or sources_file.read_text() != content:
        write_text_atomically(sources_file, content)
    write_database_models(cfg, project / "models" / "databases")
    target = target_path(cfg)
    manifest = target / "manifest.json"
    stamp = target / "cdp_fingerprint"
    project_files = sorted(p for p in project.rglob("*")
                           if p.is_file() and p.suffix in (".sql", ".yml", ".yaml")
                           and p.relative_to(project).parts[0] not in NOT_LINKED)
    layout = hashlib.sha256("\n".join(str(p.relative_to(project)) for p in project_files).encode()).hexdigest()
    fingerprint = (f"{dbt_vars_fingerprint(cfg)}:{layout[:16]}:"
                   f"{max((p.stat().st_mtime_ns for p in project_files), default=0)}")
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return manifest
    target.mkdir(parents=True, exist_ok=True)
    dbt = dbt_resource(cfg)
    with warehouse_env(cfg), dbt_target(cfg, "parse") as own:
        dbt.cli(["parse", "--quiet", *dbt_vars_arg(cfg)], target_path=own, raise_on_error=True).wait()
        if (own / PARTIAL_PARSE).exists():
            os.replace(own / PARTIAL_PARSE, target / PARTIAL_PARSE)
        os.replace(own / "manifest.json", manifest)  # the manifest first, then the stamp saying it is current
    write_text_atomically(stamp, fingerprint)
    return manifest


def _engineer_files_stamp() -> tuple:
    """(path, mtime) of every file of dbt_project/ the tenant projects link: an engineer's edit
    changes it, so a memoized manifest is prepared again."""
    return tuple((str(p.relative_to(DBT_PROJECT_DIR)), p.stat().st_mtime_ns)
                 for p in sorted(DBT_PROJECT_DIR.rglob("*"))
                 if p.is_file() and p.relative_to(DBT_PROJECT_DIR).parts[0] not in NOT_LINKED)


def _config_checksum(cfg: TenantConfig) -> str:
    """What the tenant's generated dbt files and vars follow from: the whole config, where it is
    and the engine dbt runs on."""
    text = json.dumps([str(cfg.config_path), str(tenant_project_dir(cfg)), dbt_engine(cfg),
                       cfg.model_dump(mode="json")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_PREPARED: dict[tuple, tuple[Path, tuple[int, int]]] = {}


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file: a re-parse renames a new manifest over it, which changes both."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def manifest_for(cfg: TenantConfig) -> Path:
    """The tenant's manifest.json, prepared once per config checksum and dbt_project/ state: the
    stages that read dbt models (merge, interactions, bi, custom) and the scope of the graph all
    ask for it while the code location loads, and dbt's project is laid out and checked once.
    Prepared again when the file is no longer the one prepared (another config of the same
    folder re-parsed into it, or it was removed)."""
    key = (_config_checksum(cfg), _engineer_files_stamp())
    manifest, identity = _PREPARED.get(key, (None, None))
    if manifest is None or _file_identity(manifest) != identity:
        if len(_PREPARED) >= 16:  # a long-lived process (tests, `cdp serve`) sees many configs
            _PREPARED.clear()
        manifest = prepare_manifest(cfg)
        _PREPARED[key] = (manifest, _file_identity(manifest))
    return manifest


class CdpDbtTranslator(DagsterDbtTranslator):
    """Models are keyed schema/table (c360/customer_360: a model's alias when it has one, so
    model c360__customer_360 is c360/customer_360) and grouped by their folder's stage; the
    models of a customer 360 database (models/databases/<db>/) by their database."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        config = dbt_resource_props.get("config", {})
        schema = config.get("schema") or "main"
        return dg.AssetKey([schema, config.get("alias") or dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        folder = fqn[1] if len(fqn) > 2 else None
        if folder == "databases" and len(fqn) > 3:
            return fqn[2]
        return GROUP_BY_FOLDER.get(folder, "custom")


TRANSLATOR = CdpDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@functools.lru_cache(maxsize=8)
def _manifest_json(path: Path, mtime_ns: int) -> dict:
    return json.loads(path.read_text())


def load_manifest(manifest: Path) -> dict:
    """The parsed manifest, read again whenever the file changes. (dagster-dbt caches a manifest
    *path* for the life of the process, so a config change re-parsed into the same path would
    keep yesterday's models and code versions.)"""
    return _manifest_json(manifest, manifest.stat().st_mtime_ns)


# ---- models this tenant does not build ----------------------------------------------------------

def relation_name(props: Mapping[str, Any]) -> str:
    """schema.table of a model or source, as its asset key (CdpDbtTranslator) spells it."""
    return ".".join(TRANSLATOR.get_asset_key(props).path)


def left_out_models(cfg: TenantConfig, manifest: Path) -> dict[str, str]:
    """unique_id -> why, for every dbt model (and source) the tenant does not build: a table of
    the purchase stages without its data (scope.TABLE_NEEDS), a model whose `meta: {cdp_needs:
    [...]}` the tenant does not have, and every model that reads one of those."""
    scope = tenant_scope(cfg)
    doc = load_manifest(manifest)
    nodes = {**doc["sources"], **{k: v for k, v in doc["nodes"].items() if v["resource_type"] == "model"}}
    why: dict[str, str | None] = {}

    def reason(uid: str) -> str | None:
        if uid in why:
            return why[uid]
        props, text = nodes[uid], None
        table = relation_name(props)
        if table in TABLE_NEEDS and not scope.has(TABLE_NEEDS[table]):
            text = scope.why_not(TABLE_NEEDS[table])
        meta = {**props.get("meta", {}), **props.get("config", {}).get("meta", {})}
        for need in needs_of(meta.get("cdp_needs", []), props.get("original_file_path", uid)):
            if text is None and not scope.has(need):
                text = f"it needs {need.label} ({scope.why_not(need)})"
        for parent in props.get("depends_on", {}).get("nodes", []):
            if text is None and parent in nodes and reason(parent) is not None:
                text = f"it reads {relation_name(nodes[parent])}, which is left out ({reason(parent)})"
        why[uid] = text
        return text

    return {uid: reason(uid) for uid in sorted(nodes) if reason(uid) is not None}


def left_out_tables(cfg: TenantConfig, manifest: Path) -> dict[str, str]:
    """schema.table -> why, for the purchase stages' tables and the dbt models left out."""
    doc = load_manifest(manifest)
    nodes = {**doc["sources"], **doc["nodes"]}
    return {**tenant_scope(cfg).left_out_tables(),
            **{relation_name(nodes[uid]): text for uid, text in left_out_models(cfg, manifest).items()}}


def _folder_models(manifest: Path, folder: str) -> dict[str, dict]:
    parts = ["cdp", *folder.split(".")]
    return {uid: props for uid, props in load_manifest(manifest)["nodes"].items()
            if props["resource_type"] == "model" and props["fqn"][:len(parts)] == parts}


def build_dbt_assets(cfg: TenantConfig, manifest: Path, folder: str,
                     name: str) -> dg.AssetsDefinition | None:
    """dbt models under models/<folder> as one Dagster multi-asset, without the models the
    tenant does not build (left_out_models); None when it builds none of them."""
    from dagster_dbt import dbt_assets

    models = _folder_models(manifest, folder)
    left_out = [props for uid, props in models.items() if uid in left_out_models(cfg, manifest)]
    if len(left_out) == len(models):
        return None
    # `+`: with its tests (which the folder's fqn selects too) and what reads it - left out as well
    exclude = " ".join(f"fqn:{'.'.join(props['fqn'])}+" for props in left_out) or None

    spark = dbt_engine(cfg) == "spark"
    builds = {TRANSLATOR.get_asset_key(props): how_built(props, spark) for props in models.values()}

    @dbt_assets(manifest=load_manifest(manifest), select=f"fqn:cdp.{folder}.*", exclude=exclude,
                name=name, dagster_dbt_translator=TRANSLATOR)
    def _models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        if isinstance(warehouse, WarehouseResource):  # (tests may bind dagster-duckdb's own)
            warehouse.release()  # dbt opens the warehouse in its own process
        with warehouse_env(cfg), buildable_tests_only(), dbt_target(cfg, f"{name}-{context.run.run_id[:8]}") as own:
            invocation = dbt.cli(["build", *dbt_vars_arg(cfg)], context=context, target_path=own)
            # dbt holds the DuckDB file while it runs: collect its events, then add row counts
            # and a preview from the finished tables.
            events = list(invocation.stream())
        stored = lakehouse_tables(lakehouse_path(cfg)) if dbt_engine(cfg) == "spark" else None
        with warehouse.get_connection() as con:
            for event in events:
                if isinstance(event, dg.Output):
                    key = context.asset_key_for_output(event.output_name)
                    relation = ".".join(f'"{p}"' for p in key.path)
                    if stored is not None:
                        if f"{key.path[0]}.{key.path[-1]}" not in stored:
                            yield event          # a view: nothing stored to count
                            continue
                        relation = warehouse_of(con).stored_relation(lakehouse_path(cfg) / key.path[0] / key.path[-1])
                    rows, preview = table_preview(con, relation, raw=cfg.dagster.raw_previews)
                    build = {"build": builds[key]} if builds.get(key) else {}
                    event = event.with_metadata({**event.metadata, "dagster/row_count": rows,
                                                 "preview": dg.MetadataValue.md(preview), **build})
                yield event

    return _models
