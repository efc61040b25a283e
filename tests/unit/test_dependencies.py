"""The package's declared runtime dependencies against what its modules import."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "readings_service"


def imported_distributions() -> set[str]:
    """Normalised names of the distributions providing a module that some package module imports."""
    modules: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    providers = packages_distributions()
    return {normalised(dist) for module in modules for dist in providers.get(module, [])}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_declared_dependency_is_imported() -> None:
    """A runtime dependency that no module of the package imports is dead weight (or a missing use)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        normalised(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]
    }
    assert set() == declared - imported_distributions()
