"""The layers of docs/architecture.md hold: the Marketo client, the sandbox, the lake, the coordination store,
the sync logic and unification import no Dagster, and lower layers never import the ones above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "molequle_dagster"
WITHOUT_DAGSTER = ("marketo", "sandbox", "lake", "coordination", "sync", "unification")
# What each layer may import from the project (besides itself); nothing here may import assets, jobs,
# schedules, sensors, resources or definitions.
ALLOWED = {
    "marketo": {"coordination"},
    "coordination": set(),
    "lake": set(),
    "sandbox": {"marketo"},
    "sync": {"lake", "marketo", "arrow_ops", "clock", "budget", "settings"},
    "unification": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", WITHOUT_DAGSTER)
def test_a_layer_below_dagster_imports_no_dagster_and_nothing_above_it(layer: str) -> None:
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "dagster" or top.startswith("dagster_"):
                wrong.append((path.name, name))
            elif top == "molequle_dagster":
                part = name.split(".")[1] if "." in name else ""
                if part and part != layer and part not in ALLOWED[layer]:
                    wrong.append((path.name, name))
    assert not wrong, f"{layer}/ imports outside its layer: {wrong}"


def test_every_package_folder_is_a_regular_package() -> None:
    """setuptools' `packages.find` leaves a folder without `__init__.py` out of a wheel: the image built from
    it would fail to import that part of the code (the editable install used in development hides this)."""
    folders = {path.parent for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    missing = sorted(str(f.relative_to(PACKAGE)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"package folders without __init__.py: {missing}"
