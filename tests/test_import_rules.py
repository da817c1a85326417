"""Imports go one way (DESIGN.md "Import rules"): a stage never reaches back."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"

LEAVES = {
    "gateway.config",
    "gateway.keys.site_secret",
    "gateway.base.identifiers",
    "gateway.base.metrics",
    "gateway.base.export_paths",
    "gateway.keys.reid_keys",
    "gateway.keys.dev_certificates",
    "gateway.service.sdnotify",
    "gateway.base.transfer_syntaxes",
}
STORES = {
    "gateway.stores.quarantine",
    "gateway.stores.spool",
    "gateway.stores.mapping",
    "gateway.stores.audit",
}
TOP = {
    "gateway.cli.main",
    "gateway.service.gateway_service",
    "gateway.service.worker_pool",
    "gateway.offline",
    "gateway.scheduler",
    "gateway.reidentify",
}


# Below the leaves: stdlib-only helpers every store and key file writer shares.
BASE = {"gateway.base.durable"}


def _layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module in LEAVES:
        return "leaf"
    if module.startswith(("gateway.deid", "gateway.pixels")) or module == "gateway.verify.leaks":
        return "engine"
    if module in STORES:
        return "store"
    if module == "gateway.pipeline.instance":
        return "pipeline"
    if module.startswith("gateway.net"):
        return "net"
    if module == "gateway.tools.synthetic":
        return "tool"
    if module in TOP:
        return "top"
    return "unknown"


ALLOWED = {
    "base": set(),
    "leaf": {"base"},
    "engine": {"base", "leaf", "engine"},
    "store": {"base", "leaf"},
    "pipeline": {"base", "leaf", "engine", "store"},
    "tool": {"base", "leaf"},
    # DESIGN: net/scp imports spool; net/scu imports spool and quarantine; tls is shared.
    "net": {"base", "leaf", "store", "net"},
    "top": {"base", "leaf", "engine", "store", "pipeline", "net", "tool", "top"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gateway":
                found.update(f"gateway.{alias.name}" for alias in node.names)
            elif node.module.startswith("gateway."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway."))
    return found


def test_every_module_imports_only_layers_below_it() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module in ("gateway", "gateway.deid", "gateway.pixels", "gateway.net"):
            continue
        layer = _layer(module)
        assert layer != "unknown", f"{module}: place it in a layer in this test"
        for imported in _imports(path):
            target = _layer(imported)
            if target not in ALLOWED[layer]:
                problems.append(f"{module} ({layer}) imports {imported} ({target})")
    assert not problems, "\n".join(problems)


def test_nothing_imports_the_command_line() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if _module_name(path) == "gateway.cli.main":
            continue
        assert "gateway.cli.main" not in _imports(path), path
