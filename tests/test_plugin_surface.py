"""dback's own plugins, and the package ``dback new-plugin`` writes, use only the public
plugin API: ``dback_core`` and the ``dback_core.plugin`` package that docs/plugins.md lists
under "The public API", never the server's internals.

Our plugins and the generated package are the examples third parties copy; one that reaches
into the directory or the server object makes that look supported, and ties the plugin to
code that may change in any release. Every module under ``plugins/*/dback_*/`` and every
Python file of a freshly generated package (its tests included) is read as source (nothing
imported), so the rule holds for code paths no test happens to run. ``make lint`` checks the
same for the installed plugins' import graph (import-linter).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dback_core
import dback_core.plugin
from dback_core.ops.scaffold import write_plugin

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_MODULES = sorted(ROOT.glob("plugins/*/dback_*/**/*.py"))

#: The public API: module -> the names a plugin may import from it (None: any public name).
#: ``dback_core`` itself, and each module of the ``dback_core.plugin`` package.
PUBLIC: dict[str, set[str] | None] = {
    "dback_core": set(dback_core.__all__),
    **{
        f"dback_core.plugin.{path.stem}": None
        for path in sorted(Path(dback_core.plugin.__file__).parent.glob("[!_]*.py"))
    },
}
#: Attributes of the server object that only the core may touch.
INTERNAL_ATTRIBUTES = {"directory", "fanout", "sources", "hooks", "metrics", "counter"}


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


#: What a plugin's tests may import besides the public API (docs/plugins.md, "Testing").
TESTING: dict[str, set[str] | None] = {"dback_core.testing": None}


def violations(source: str, tests: bool = False) -> list[str]:
    """What in ``source`` goes past the public plugin API, one line each; ``tests``: the
    source is a plugin's test module, which may also use ``dback_core.testing``."""
    public_modules = {**PUBLIC, **TESTING} if tests else PUBLIC
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dback_core") and alias.name not in public_modules:
                    problems.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dback_core"):
            allowed = public_modules.get(node.module or "", set())
            for alias in node.names:
                public = allowed is None or alias.name in allowed
                if alias.name.startswith("_") or not public:
                    problems.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES:
            problems.append(f"line {node.lineno}: .{node.attr}")
        elif _startup_taking_the_server(node):
            problems.append(f"line {node.lineno}: startup takes the server object")
    return problems


def _startup_taking_the_server(node: ast.AST) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name != "startup":
        return False
    return "server" in [argument.arg for argument in node.args.args + node.args.kwonlyargs]


@pytest.fixture(scope="module")
def generated_modules(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every Python file ``dback new-plugin`` writes, its tests included."""
    target = write_plugin("dback-surface", tmp_path_factory.mktemp("generated"))
    return sorted(target.rglob("*.py"))


def test_the_generated_package_uses_only_the_public_api(generated_modules):
    assert {path.name for path in generated_modules} >= {"plugin.py", "test_plugin.py"}
    for path in generated_modules:
        assert violations(path.read_text(), tests=path.parent.name == "tests") == [], path.name


def test_the_public_api_is_dback_core_and_its_plugin_package():
    assert all(
        module == "dback_core" or module.startswith("dback_core.plugin.") for module in PUBLIC
    )
    assert "dback_core.plugin.hookspecs" in PUBLIC and "dback_core.plugin.errors" in PUBLIC


def test_the_scan_sees_every_plugin():
    packages = {path.relative_to(ROOT).parts[1] for path in PLUGIN_MODULES}
    assert packages == {"dback_discord", "dback_mock", "dback_postgres", "dback_redis"}


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=_relative)
def test_a_plugin_module_uses_only_the_public_api(path):
    assert violations(path.read_text()) == [], _relative(path)


def test_the_scan_catches_each_way_past_the_api():
    source = """
import dback_core.serving.server
from dback_core.world.directory import Directory
from dback_core.testing import Client
from dback_core import hookimpl, PluginHost
from dback_core.plugin.health import FAILED

class Plugin:
    def startup(self, settings, server):
        server.directory.guilds
"""
    assert violations(source) == [
        "line 2: import dback_core.serving.server",
        "line 3: from dback_core.world.directory import Directory",
        "line 4: from dback_core.testing import Client",
        "line 9: startup takes the server object",
        "line 10: .directory",
    ]


def test_the_public_api_is_the_one_docs_plugins_md_lists():
    text = (ROOT / "docs" / "plugins.md").read_text()
    table = text.split("## The public API", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(PUBLIC)
