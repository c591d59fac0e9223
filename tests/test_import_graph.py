"""No import cycle anywhere in dback_core, read from the import graph itself.

import-linter's contracts (``make lint``) keep the layers in order and the plugins on the
plugin surface; what they do not say is that no two modules reach each other at all - not
within one layer, and not through an import made only while type checking. grimp builds the
graph import-linter reads (type-checking imports included), and a strongly connected
component of more than one module is a cycle.
"""

from __future__ import annotations

import grimp

PACKAGE = "dback_core"
LAYERS = ("plugin", "wire", "world", "loading", "serving", "ops")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other, directly or around a loop (Tarjan)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowlink[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                lowlink[module] = min(lowlink[module], lowlink[imported])
            elif imported in on_stack:
                lowlink[module] = min(lowlink[module], index[imported])
        if lowlink[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in graph.find_modules_directly_imported_by(module):
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_dback_core_reaches_itself_through_its_imports():
    assert _cycles(_graph()) == []


def test_the_check_finds_a_cycle_when_there_is_one():
    graph = _graph()
    graph.add_import(
        importer="dback_core.plugin.events",
        imported="dback_core.serving.server",
        line_number=1,
        line_contents="from dback_core.serving.server import DbackServer",
    )
    cycles = _cycles(graph)
    assert len(cycles) == 1
    assert {"dback_core.plugin.events", "dback_core.serving.server"} <= set(cycles[0])


def test_every_module_lives_in_a_layer_or_is_one_of_the_few_at_the_top():
    """A module added beside the layers would escape the layers contract."""
    top = {f"{PACKAGE}.{name}" for name in ("__main__", "version", "testing", "pytest_plugin")}
    outside = {
        module
        for module in _graph().modules
        if module != PACKAGE and module not in top and module.split(".")[1] not in LAYERS
    }
    assert outside == set()
