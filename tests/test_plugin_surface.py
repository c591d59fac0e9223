"""dback's own plugins use only the public plugin API: the ``PluginHost`` handle and the
modules docs/plugins.md lists under "The public API", never the server's internals.

Our plugins are the examples third parties copy; one that reaches into the directory or the
server object makes that look supported, and ties the plugin to code that may change in
any release. Every module under ``plugins/*/dback_*/`` is read as source (nothing imported),
so the rule holds for code paths no test happens to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dback_core

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_MODULES = sorted(ROOT.glob("plugins/*/dback_*/**/*.py"))

#: The public API: module -> the names a plugin may import from it (None: any public name).
PUBLIC = {
    "dback_core": set(dback_core.__all__),
    "dback_core.events": None,
    "dback_core.host": None,
    "dback_core.health": None,
    "dback_core.backoff": None,
    "dback_core.settings": {"Setting", "SettingsError", "read"},
    "dback_core.limits": {"TokenBucket"},
    "dback_core.fairness": None,
    "dback_core.testing": None,
}
#: Attributes of the server object that only the core may touch.
INTERNAL_ATTRIBUTES = {"directory", "fanout", "sources", "hooks", "metrics", "counter"}


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def violations(source: str) -> list[str]:
    """What in ``source`` goes past the public plugin API, one line each."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dback_core") and alias.name not in PUBLIC:
                    problems.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dback_core"):
            allowed = PUBLIC.get(node.module or "", set())
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


def test_the_scan_sees_every_plugin():
    packages = {path.relative_to(ROOT).parts[1] for path in PLUGIN_MODULES}
    assert packages == {"dback_discord", "dback_mock", "dback_postgres", "dback_redis"}


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=_relative)
def test_a_plugin_module_uses_only_the_public_api(path):
    assert violations(path.read_text()) == [], _relative(path)


def test_the_scan_catches_each_way_past_the_api():
    source = """
import dback_core.server
from dback_core.directory import Directory
from dback_core.limits import ConnectionCounter
from dback_core import hookimpl, PluginHost
from dback_core.health import FAILED

class Plugin:
    def startup(self, settings, server):
        server.directory.guilds
"""
    assert violations(source) == [
        "line 2: import dback_core.server",
        "line 3: from dback_core.directory import Directory",
        "line 4: from dback_core.limits import ConnectionCounter",
        "line 9: startup takes the server object",
        "line 10: .directory",
    ]


def test_the_public_api_is_the_one_docs_plugins_md_lists():
    text = (ROOT / "docs" / "plugins.md").read_text()
    table = text.split("## The public API", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(PUBLIC)
