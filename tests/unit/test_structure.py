"""The shape of the code, held: no module over 400 lines, no function over 60, no class
over 250 (`api/query/allowlist.py`, a data table, excepted); no package imports one above
it; inside the core, stages import only stages before them (store, formats, the manifest,
ingest, versions, publish); no `dagster._` import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["lakehouse", "api", "lakehouse_assets", "devstack", "lakehouse_cli"]
EXCEPTED = {"api/query/allowlist.py"}
MAX_MODULE, MAX_FUNCTION, MAX_CLASS = 400, 60, 250

# Which top-level packages each may import (besides itself and third parties).
MAY_IMPORT = {
    "lakehouse": set(),
    "api": {"lakehouse"},
    "lakehouse_assets": {"lakehouse"},
    "devstack": {"lakehouse"},
    "lakehouse_cli": {"lakehouse", "devstack", "lakehouse_assets", "api"},
}
# The core's stages, in the order of a file's path; a module imports its own or earlier.
STAGES = [
    ("lakehouse.errors", "lakehouse.names", "lakehouse.state_secrets", "lakehouse.settings",
     "lakehouse.duck", "lakehouse.auth", "lakehouse.runs", "lakehouse.runtime"),
    ("lakehouse.store",),
    ("lakehouse.formats",),
    ("lakehouse.manifest",),
    ("lakehouse.ingest",),
    ("lakehouse.versions",),
    ("lakehouse.publish",),
]  # fmt: skip


def modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def stage(module: str) -> int | None:
    return next(
        (
            i
            for i, names in enumerate(STAGES)
            for n in names
            if module == n or module.startswith(n + ".")
        ),
        None,
    )


def test_no_module_function_or_class_is_too_long() -> None:
    too_long = []
    for path in modules():
        relative = str(path.relative_to(ROOT))
        if relative in EXCEPTED:
            continue
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE:
            too_long.append(f"{relative}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            size = (
                (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
            )
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and size > MAX_FUNCTION:
                too_long.append(f"{relative}: function {node.name}: {size} lines")
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS:
                too_long.append(f"{relative}: class {node.name}: {size} lines")
    assert too_long == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    name = module_name(path)
    package = name.split(".")[0]
    wrong = []
    for target in imports(path):
        top = target.split(".")[0]
        if target.startswith("dagster._"):
            wrong.append(f"{target}: not Dagster's public API (lakehouse/runtime/compat.py)")
        elif top in MAY_IMPORT and top != package and top not in MAY_IMPORT[package]:
            wrong.append(f"{target}: {package} may not import {top}")
        elif package == "lakehouse" and top == "lakehouse":
            here, there = stage(name), stage(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{target}: a later stage than {name}")
    assert wrong == []
