"""Who may import whom: the layers of readings_service, checked on its source and in a serving process.

The rules, for every import statement of a module (also those inside functions):

- core/ is pure: it imports no aiohttp, cassandra, rich or prometheus_client, and from the package only
  core/ and errors.
- Only store/ imports cassandra.
- Only api/ imports aiohttp's server (aiohttp.web, aiohttp.web_*); cli hands the app to api.server.
  ops/ may use the aiohttp client (the --url sink of load).
- api/ imports neither store/ nor ops/: it reaches storage only through the ReadingStore Protocol.
- store/ imports neither api/ nor ops/ nor aiohttp.
- Only ops/ and cli import ops/; only ops/ imports rich.
- `serve` never loads ops/ or rich: nothing reachable from cli's module-level imports and run_serve's imports
  is in ops/ or rich — statically here, and in a process that runs the serve command up to the server loop.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, env_without_readings

PACKAGE = "readings_service"


def within(name: str, *prefixes: str) -> bool:
    """Whether the dotted `name` is one of `prefixes` or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def layer(name: str) -> str:
    return f"{PACKAGE}.{name}"


def aiohttp_server(name: str) -> bool:
    return within(name, "aiohttp.web") or name.startswith("aiohttp.web_")


@dataclass(frozen=True)
class Rule:
    name: str
    applies_to: Callable[[str], bool]
    forbidden: Callable[[str], bool]


RULES = [
    Rule(
        "core-pure",
        lambda module: within(module, layer("core")),
        lambda name: (
            within(name, "aiohttp", "cassandra", "rich", "prometheus_client")
            or (within(name, PACKAGE) and not within(name, layer("core"), layer("errors")))
        ),
    ),
    Rule(
        "cassandra-only-in-store",
        lambda module: not within(module, layer("store")),
        lambda name: within(name, "cassandra"),
    ),
    Rule(
        "aiohttp-server-only-in-api",
        lambda module: not within(module, layer("api")),
        aiohttp_server,
    ),
    Rule(
        "api-without-store-or-ops",
        lambda module: within(module, layer("api")),
        lambda name: within(name, layer("store"), layer("ops")),
    ),
    Rule(
        "store-without-api-ops-aiohttp",
        lambda module: within(module, layer("store")),
        lambda name: within(name, layer("api"), layer("ops"), "aiohttp"),
    ),
    Rule(
        "ops-only-from-ops-and-cli",
        lambda module: not within(module, layer("ops"), layer("cli")),
        lambda name: within(name, layer("ops")),
    ),
    Rule(
        "rich-only-in-ops",
        lambda module: not within(module, layer("ops")),
        lambda name: within(name, "rich"),
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(module: str, tree: ast.AST, is_package: bool = False) -> set[str]:
    """Every module (or module.attribute) an import statement anywhere in `tree` names, relative ones resolved."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def violations(module: str, names: set[str]) -> list[tuple[str, str]]:
    """(rule, imported name) for every rule that `module` importing `names` breaks."""
    return sorted(
        (rule.name, name) for rule in RULES if rule.applies_to(module) for name in names if rule.forbidden(name)
    )


@functools.cache
def package_imports() -> dict[str, set[str]]:
    """Every module of the package with the names its import statements name."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = module_name(path)
        graph[name] = imported_names(name, ast.parse(path.read_text(), str(path)), path.name == "__init__.py")
    return graph


def reachable(graph: dict[str, set[str]], roots: set[str]) -> set[str]:
    """Every name reachable from `roots` through the import statements of the package modules in `graph`."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
    return seen


def serve_roots(cli_source: str) -> set[str]:
    """What the serve command imports: cli's module-level imports and those inside run_serve."""
    tree = ast.parse(cli_source)
    top = ast.Module(body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[])
    run_serve = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_serve")
    return imported_names(layer("cli"), top) | imported_names(layer("cli"), run_serve)


def not_for_serving(names: set[str]) -> list[str]:
    return sorted(name for name in names if within(name, layer("ops"), "rich"))


class TestPackageSource:
    @pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
    def test_every_module_keeps_the_rule(self, rule: Rule) -> None:
        """No module of the package breaks the rule."""
        broken = [
            (module, name)
            for module, names in package_imports().items()
            if rule.applies_to(module)
            for name in names
            if rule.forbidden(name)
        ]
        assert [] == broken

    def test_every_layer_is_there(self) -> None:
        """The rules name folders that exist, so none passes for want of modules."""
        modules = package_imports()
        for folder in ("core", "store", "api", "ops"):
            assert any(within(module, layer(folder)) and module != layer(folder) for module in modules), folder

    def test_serve_reaches_neither_ops_nor_rich(self) -> None:
        """Nothing the serve command imports, directly or through other modules, is in ops/ or rich."""
        graph = package_imports()
        roots = serve_roots((ROOT / PACKAGE / "cli.py").read_text())
        reached = reachable(graph, roots)
        assert {layer("api.app"), layer("store.cassandra")} <= reached
        assert [] == not_for_serving(reached)


class TestRulesCatchViolations:
    """Each rule fails on a module that breaks it, and lets the imports that are allowed pass."""

    @pytest.mark.parametrize(
        ("module", "source", "rule"),
        [
            ("readings_service.core.x", "from aiohttp import web", "core-pure"),
            ("readings_service.core.x", "import aiohttp", "core-pure"),
            ("readings_service.core.x", "def f():\n    import cassandra.cluster", "core-pure"),
            ("readings_service.core.x", "from readings_service.store import cassandra", "core-pure"),
            ("readings_service.core.x", "from readings_service.api.app import create_app", "core-pure"),
            ("readings_service.core.x", "from ..ops import load", "core-pure"),
            ("readings_service.core.x", "from readings_service import metrics", "core-pure"),
            ("readings_service.core.x", "import prometheus_client", "core-pure"),
            ("readings_service.api.app", "from cassandra.cluster import Session", "cassandra-only-in-store"),
            ("readings_service.ops.load", "import cassandra", "cassandra-only-in-store"),
            ("readings_service.cli", "from cassandra import ConsistencyLevel", "cassandra-only-in-store"),
            ("readings_service.ops.x", "from aiohttp import web", "aiohttp-server-only-in-api"),
            ("readings_service.cli", "from aiohttp import web", "aiohttp-server-only-in-api"),
            ("readings_service.store.x", "import aiohttp.web_request", "aiohttp-server-only-in-api"),
            ("readings_service.api.app", "from ..store.cassandra import open_store", "api-without-store-or-ops"),
            ("readings_service.api.x", "from .. import ops", "api-without-store-or-ops"),
            ("readings_service.store.x", "import aiohttp", "store-without-api-ops-aiohttp"),
            ("readings_service.store.x", "from readings_service.api import problems", "store-without-api-ops-aiohttp"),
            ("readings_service.metrics", "from readings_service.ops import load", "ops-only-from-ops-and-cli"),
            ("readings_service.config", "from rich.console import Console", "rich-only-in-ops"),
        ],
    )  # fmt: skip
    def test_violation_is_caught(self, module: str, source: str, rule: str) -> None:
        names = imported_names(module, ast.parse(source))
        assert rule in {name for name, _ in violations(module, names)}

    @pytest.mark.parametrize(
        ("module", "source"),
        [
            ("readings_service.core.ranges", "from readings_service.core.store import ReadingStore"),
            ("readings_service.core.ingest", "from readings_service.errors import BadRequest"),
            ("readings_service.core.ndjson", "import orjson"),
            ("readings_service.ops.http_sink", "import aiohttp"),
            ("readings_service.ops.commands", "from readings_service.store.cassandra import open_store"),
            ("readings_service.cli", "from readings_service.ops import commands"),
            ("readings_service.store.cassandra", "from cassandra.cluster import Cluster\nfrom . import bridge"),
            ("readings_service.api.app", "from aiohttp import web\nfrom readings_service.core.store import Pages"),
        ],
    )
    def test_allowed_imports_pass(self, module: str, source: str) -> None:
        assert [] == violations(module, imported_names(module, ast.parse(source)))

    def test_relative_imports_are_resolved(self) -> None:
        tree = ast.parse("from . import bridge\nfrom ..core.store import Pages\nfrom .. import ops")
        assert {
            "readings_service.store", "readings_service.store.bridge",
            "readings_service.core.store", "readings_service.core.store.Pages",
            "readings_service", "readings_service.ops",
        } == imported_names("readings_service.store.cassandra", tree)  # fmt: skip

    @pytest.mark.parametrize(
        "graph",
        [
            {"readings_service.api.app": {"readings_service.core.ranges"},
             "readings_service.core.ranges": {"readings_service.ops.progress"}},
            {"readings_service.api.app": {"readings_service.metrics"}, "readings_service.metrics": {"rich.console"}},
        ],
    )  # fmt: skip
    def test_serve_chain_through_other_modules_is_caught(self, graph: dict[str, set[str]]) -> None:
        """A module serve imports that (even lazily) imports ops or rich is found."""
        cli = "import os\ndef run_serve():\n    from readings_service.api.app import create_app\n"
        assert [] != not_for_serving(reachable(graph, serve_roots(cli)))

    def test_serve_roots_leave_the_other_commands_out(self) -> None:
        """main's lazy import of ops for the ops commands is not part of serve's chain."""
        cli = (
            "from readings_service.config import load\n"
            "def run_serve():\n    from readings_service.api.app import create_app\n"
            "def main():\n    from readings_service.ops import commands\n"
        )
        assert {"readings_service.config", "readings_service.config.load", "readings_service.api.app",
                "readings_service.api.app.create_app"} == serve_roots(cli)  # fmt: skip


SERVE_UNTIL_RUN_APP = """
import json, sys
from readings_service.api import server
async def listen(app, *args, **options):
    print(json.dumps(sorted(sys.modules)))
server.serve = listen
from readings_service.cli import main
main(["serve"])
"""


class TestServingProcess:
    def test_serve_loads_neither_ops_nor_rich(self) -> None:
        """A process running `serve` up to the server loop (no connection is opened before it) has not loaded ops/
        or rich."""
        result = subprocess.run(
            [sys.executable, "-c", SERVE_UNTIL_RUN_APP],
            cwd=ROOT, env=env_without_readings(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
        assert {layer("api.app"), layer("store.cassandra"), layer("cli")} <= loaded
        assert [] == not_for_serving(loaded)
