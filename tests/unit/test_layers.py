"""The import graph of cdp/ has no cycles and every import points down the layers.

Layers, lowest first (a module may import its own layer's modules and any lower layer's):

    1. cdp.errors, cdp.paths, cdp.countries   leaf helpers, nothing of cdp
    2. cdp.config                              the tenant config (pydantic models, load_config)
    3. cdp.pii                                 what the config's tags imply: personal data
    4. cdp.engine                              DuckDB/Spark tables and sessions
    5. cdp.dbt                                 the tenant's dbt project, manifest and dbt assets
    6. cdp.stages                              the pipeline's stages, in STAGES order (below)
    7. cdp.serve                               Profile API and analyst workspace (`cdp serve`)
    8. cdp.definitions, cdp.preflight, cdp.onboarding, cdp.demo, cdp.cli
                                               what assembles or drives the rest

Inside cdp.stages a stage may import an earlier stage, never a later one:
sources < stitch < c360 < interactions < predictive < bi < custom < activation.

The graph is built with `ast` from every import statement, at module level and inside
functions (a lazy import still ties two modules together; only `if TYPE_CHECKING:` imports,
which never run, are left out), and an import of cdp.a.b.c also
counts as importing the packages cdp.a.b and cdp.a, whose __init__ runs first.

No module is over MAX_LINES lines but those in LONG_MODULES, each with why; a listed module
that got shorter comes off the list.

What a tenant builds from its source kinds (cdp.config.scope) is part of the config layer: the
tenant model's validator checks every reference against it. KNOWN_EDGES lists edges the checks
leave aside, each with why (none today); the test fails once a listed edge is gone, so the list
only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cdp

ROOT = Path(cdp.__file__).parent
LAYERS = [
    ("cdp.errors", "cdp.paths", "cdp.countries"),
    ("cdp.config",),
    ("cdp.pii",),
    ("cdp.engine",),
    ("cdp.dbt",),
    ("cdp.stages",),
    ("cdp.serve",),
    ("cdp.definitions", "cdp.preflight", "cdp.onboarding", "cdp.demo", "cdp.cli"),
]
# importer -> imported: edges the checks leave aside, each with why (see the docstring)
KNOWN_EDGES: dict[tuple[str, str], str] = {}
MAX_LINES = 400
LONG_MODULES = {  # module -> why it is longer, for now (each is the next to split)
    "cdp.stages.sources.assets": "one source's whole path: read, standardise, quarantine, the domain "
                                 "asset and its accounting check (the recount itself is in "
                                 "accounting.py); split next into reading/assets",
    "cdp.stages.stitch.model": "the versioned Splink model: settings from the design, training "
                               "sessions, the saved model and its reuse; split next into settings/training",
    "cdp.dbt.project": "one dbt project: layout, parse, manifest, translator, the dbt multi-asset",
}
STAGE_ORDER = ["sources", "stitch", "c360", "interactions", "predictive", "bi", "custom", "activation"]


def module_name(path: Path) -> str:
    parts = ["cdp", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cdp_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def _imported(node: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    # `from cdp.x import y`: y is a module of package cdp.x, or a name defined in cdp.x
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def _with_packages(name: str, modules: dict[str, Path]) -> list[str]:
    """The module and every package above it (their __init__ runs first), cdp itself aside."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(2, len(parts) + 1)) if m in modules]


def _runtime_nodes(tree: ast.AST):
    """Every node of the module but those under `if TYPE_CHECKING:` (imports for annotations
    only, which never run)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
               for stmt in node.body for n in ast.walk(stmt)}
    return (n for n in ast.walk(tree) if id(n) not in skipped)


def import_graph(known: bool = False) -> dict[str, set[str]]:
    """module -> the cdp modules it imports (itself and its own parent packages aside), without
    KNOWN_EDGES unless `known`."""
    modules = cdp_modules()
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, name, path.name == "__init__.py", modules):
                if target.startswith("cdp."):
                    found.update(_with_packages(target, modules))
        graph[name] = found - {name} - set(_with_packages(name, modules))
        if not known:
            graph[name] -= {b for a, b in KNOWN_EDGES if a == name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> tuple[int, int]:
    """(layer, stage position) of a module: a stage's position orders the stages' modules."""
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                parts = module.split(".")
                stage = STAGE_ORDER.index(parts[2]) if prefix == "cdp.stages" and len(parts) > 2 else -1
                return level, stage
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer_of(b) > layer_of(a) and not _same_package(a, b))


def _same_package(a: str, b: str) -> bool:
    """A package's __init__ and its own modules (cdp.stages and cdp.stages.x) are one unit."""
    return b.startswith(a + ".")


def test_every_module_is_in_a_layer():
    for module in cdp_modules():
        if module != "cdp":
            layer_of(module)


def test_the_import_graph_has_no_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_no_module_is_long_without_a_reason():
    lines = {name: len(path.read_text().splitlines()) for name, path in cdp_modules().items()}
    long = {name for name, n in lines.items() if n > MAX_LINES}
    assert sorted(long - set(LONG_MODULES)) == []
    assert sorted(set(LONG_MODULES) - long) == [], "no longer long: take it off LONG_MODULES"


def test_the_known_edges_are_still_there():
    """A known edge that is gone comes off KNOWN_EDGES."""
    graph = import_graph(known=True)
    assert [edge for edge in KNOWN_EDGES if edge[1] not in graph[edge[0]]] == []


def test_the_checks_see_cycles_and_upward_imports():
    """The graph walker on a made-up graph: a cycle and an upward import are found."""
    assert find_cycle({"cdp.a": {"cdp.b"}, "cdp.b": {"cdp.c"}, "cdp.c": {"cdp.a"}}) == [
        "cdp.a", "cdp.b", "cdp.c", "cdp.a"]
    assert find_cycle({"cdp.a": {"cdp.b"}, "cdp.b": set()}) is None
    assert upward_imports({"cdp.config": {"cdp.stages.sources.assets"}}) == [
        "cdp.config -> cdp.stages.sources.assets"]
    assert upward_imports({"cdp.stages.sources.assets": {"cdp.stages.activation.sends"}}) == [
        "cdp.stages.sources.assets -> cdp.stages.activation.sends"]
    graph = import_graph()
    assert "cdp.config" in graph["cdp.stages.sources.assets"]  # top-level imports are seen
    assert "cdp.engine.spark.warehouse" in graph["cdp.engine"]  # and imports inside functions
