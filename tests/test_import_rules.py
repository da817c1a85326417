"""Imports go one way (DESIGN.md "Import rules"): a stage never reaches back.

The package's folders are its layers, from the floor up:

    base/        stdlib, pydicom and third-party helpers; nothing else of the package
    config/ keys/                     what a site is configured with and holds secret
    text/                             free text: PHI recognizer, name lists, safe words
    deid/ pixels/ verify/ documents/  the engines: pure, a dataset or array in and out
    stores/                           durable state (spool, quarantine, audit, mapping)
    pipeline/                         per-instance processing over the engines
    net/                              DICOM on the wire (scp, scu, tls, folder)
    site                              start-up: a config file turned into a checked site
    pull                              query/retrieve from the source into the running gateway
    console                           the web console: reads the stores, previews cleaning
    service/ offline reidentify       the three ways of running
    offline_cluster                   offline mode's files on a Dask cluster
    cli/                              the command; nothing imports it

Type-only imports (under `if TYPE_CHECKING:`) are annotations, never executed, and are
left out: they may name a type from a higher layer, as pynetdicom's modules do.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"

ENGINES = {"deid", "pixels", "verify", "documents"}
BELOW_ENGINES = {"base", "config", "keys", "text"}
# layer -> the layers its modules may import (its own layer always allowed).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "config": {"base"},
    "keys": {"base"},
    "text": {"base"},
    "deid": {"base", "config", "text"},
    "pixels": {"base", "config", "text"},
    "verify": {"base", "config", "text"},
    "documents": {"base", "config", "text"},
    "stores": {"base", "config", "keys"},
    "pipeline": BELOW_ENGINES | ENGINES | {"stores"},
    "net": {"base", "config", "stores"},
    "site": BELOW_ENGINES | ENGINES | {"stores", "pipeline", "net"},
    "pull": {"base", "config", "keys", "stores", "net"},
    "tools": {"base"},
    "console": BELOW_ENGINES | ENGINES | {"stores", "pipeline"},
    "service": BELOW_ENGINES | ENGINES | {"stores", "pipeline", "net", "site", "console"},
    "offline": BELOW_ENGINES | ENGINES | {"stores", "pipeline", "site"},
    "offline_cluster": BELOW_ENGINES | ENGINES | {"stores", "pipeline", "site", "offline"},
    "reidentify": {"base", "config", "keys", "stores"},
    "cli": set(),  # the top: everything (see _allowed)
}

# Inside deid/, one direction too: rules and tables, then the engine that applies them, the
# compiled profile that builds the engine, the readers that compile profile files and CTP
# scripts, and last what picks a reader or reviews a profile.
DEID_TIERS = [
    {
        "standard", "actions", "fakes", "pseudonyms", "tagsets", "strict", "iod_types",
        "overrides", "rule_apply", "marking", "csv_text", "compiled_rules", "free_text",
        "document_placeholder", "text_values", "deid_result", "pseudonym_table",
    },
    {"engine"},
    {"profile"},
    {"profile_file", "ctp"},
    {"profile_loading", "review", "clinical_csv"},
]  # fmt: skip
# Inside deid/ctp/: the script's words and file, the evaluator, CTP's element walk, the
# script functions (which recurse through the walk), and the script as a profile.
CTP_TIERS = [
    {"element_names", "syntax", "lookup_table", "arithmetic", "script_file"},
    {"evaluate"},
    {"element_walk"},
    {"script_functions"},
    {"profile"},
]
# The mapping's reader opens sealed records: only the re-identification command may use it.
READER = "gateway.stores.mapping_reader"
READER_LAYERS = {"reidentify", "cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "package"
    return parts[1] if parts[1] in ALLOWED else "unknown"


def _allowed(layer: str, target: str) -> bool:
    return layer == "cli" or target == layer or target in ALLOWED[layer] or target == "package"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, names: list[str]) -> set[str]:
    """`from gateway.deid import fakes` imports the module gateway.deid.fakes."""
    found = {module}
    for name in names:
        if f"{module}.{name}" in MODULES:
            found.add(f"{module}.{name}")
    return found


def runtime_imports(module: str) -> set[str]:
    """Every gateway module this module imports when it runs (function-level ones too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "gateway" or base.startswith("gateway."):
                found.update(_resolve(base, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(module)
    return {m for m in found if m in MODULES}


GRAPH = {module: runtime_imports(module) for module in MODULES}


def test_every_module_sits_in_a_layer() -> None:
    unplaced = [m for m in MODULES if _layer(m) == "unknown"]
    assert not unplaced, f"place these in a layer (ALLOWED in this test): {unplaced}"


def test_every_module_imports_only_layers_below_it() -> None:
    problems = []
    for module, imported in GRAPH.items():
        layer = _layer(module)
        for target in sorted(imported):
            if not _allowed(layer, _layer(target)):
                problems.append(f"{module} ({layer}) imports {target} ({_layer(target)})")
    assert not problems, "\n".join(problems)


def _tier(module: str, prefix: str, tiers: list[set[str]]) -> int | None:
    if not module.startswith(prefix):
        return None
    first = module[len(prefix) :].split(".")[0]
    return next((i for i, names in enumerate(tiers) if first in names), -1)


def _check_tiers(prefix: str, tiers: list[set[str]]) -> list[str]:
    problems = []
    for module, imported in GRAPH.items():
        mine = _tier(module, prefix, tiers)
        if mine is None:
            continue
        if mine == -1:
            problems.append(f"{module}: place it in a tier of this test")
        for target in sorted(imported):
            theirs = _tier(target, prefix, tiers)
            if theirs is not None and theirs > mine:
                problems.append(f"{module} (tier {mine}) imports {target} (tier {theirs})")
    return problems


def test_inside_deid_imports_go_from_profiles_down_to_rules() -> None:
    problems = _check_tiers("gateway.deid.", DEID_TIERS)
    problems += _check_tiers("gateway.deid.ctp.", CTP_TIERS)
    assert not problems, "\n".join(problems)


def test_no_import_cycle_anywhere() -> None:
    """Tarjan's strongly connected components over the runtime import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            connect(module)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_nothing_imports_the_command_line() -> None:
    for module, imported in GRAPH.items():
        if _layer(module) == "cli":
            continue
        assert not [m for m in imported if _layer(m) == "cli"], module


def test_only_reidentification_opens_the_mapping() -> None:
    users = {m for m, imported in GRAPH.items() if READER in imported}
    assert all(_layer(user) in READER_LAYERS for user in users), users


def test_the_rules_see_real_imports() -> None:
    """Guard against a parser that finds nothing: known edges are in the graph."""
    assert "gateway.stores.spool" in GRAPH["gateway.net.scp"]
    assert "gateway.deid.fakes" in GRAPH["gateway.deid.overrides"]


def test_no_module_over_450_lines() -> None:
    """Small modules whose names say what they hold (DESIGN.md, "How we like code")."""
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
