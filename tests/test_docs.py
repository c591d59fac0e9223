"""The plugin guide cannot drift from the code: every hook documented, every hook tested.

``docs/plugins.md`` must carry each hook's exact signature under its own heading, and the
test suites must contain a real test with an implementation of each hook. Adding a hook to
``dback_core/plugin/hookspecs.py``, or changing one, without both makes these tests fail.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

from dback_core.loading.plugins import hook_names
from dback_core.plugin import hookspecs
from dback_core.plugin.host import PluginHost

ROOT = Path(__file__).resolve().parent.parent
PLUGINS_MD = ROOT / "docs" / "plugins.md"


def signature_text(name: str) -> str:
    """``def name(arg: T, ...) -> R`` exactly as written in hookspecs.py."""
    function = getattr(hookspecs, name)
    parameters = ", ".join(
        f"{parameter.name}: {parameter.annotation}"
        for parameter in inspect.signature(function, eval_str=False).parameters.values()
    )
    return f"def {name}({parameters}) -> {function.__annotations__['return']}"


def hook_sections(text: str) -> dict[str, str]:
    """The ``### name`` sections of the hook reference, by name."""
    reference = text.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (\S+)\s*$", reference, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_signature_text_is_what_hookspecs_says():
    assert signature_text("startup") == (
        "def startup(settings: Settings, host: PluginHost) -> None"
    )
    assert signature_text("get_server_data") == (
        "def get_server_data(server_id: str | None) -> dict[str, dict[str, Any]] | None"
    )


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented_with_its_exact_signature(hook):
    sections = hook_sections(PLUGINS_MD.read_text())
    assert hook in sections, f"docs/plugins.md has no '### {hook}' section"
    section = sections[hook]
    assert f"```python\n{signature_text(hook)}\n```" in section, (
        f"docs/plugins.md: the signature of {hook} differs from hookspecs.py"
    )
    assert "**When**" in section, f"docs/plugins.md: say when {hook} is called"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_states_its_rule_from_the_spec(hook):
    section = hook_sections(PLUGINS_MD.read_text())[hook]
    assert f"- **Rule**: {hookspecs.RULES[hook].summary()}." in section, (
        f"docs/plugins.md: the rule of {hook} differs from its @rule in hookspecs.py"
    )


def test_the_reference_documents_no_hook_that_does_not_exist():
    documented = set(hook_sections(PLUGINS_MD.read_text())) - {"Publishing"}
    assert documented == set(hook_names())


def test_publish_and_not_configured_are_documented():
    text = PLUGINS_MD.read_text()
    assert "await host.publish(event, *, relay=True)" in text
    assert "NotConfigured" in text
    publish = inspect.signature(PluginHost.publish)
    assert list(publish.parameters) == ["self", "event", "relay"]


def _host_members() -> list[str]:
    """Every method and property of the ``PluginHost`` protocol."""
    return sorted(
        name
        for name, value in vars(PluginHost).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )


@pytest.mark.parametrize("member", _host_members())
def test_every_plugin_host_member_is_documented(member):
    host_section = PLUGINS_MD.read_text().split("## The plugin host", 1)[1].split("\n## ", 1)[0]
    assert f"`host.{member}" in host_section or f"`await host.{member}(" in host_section, (
        f"docs/plugins.md: the plugin host table does not describe host.{member}"
    )


def _test_files() -> list[Path]:
    return sorted([*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")])


def _implemented_hooks(tree: ast.Module) -> set[str]:
    """Names of functions decorated with ``hookimpl`` anywhere in a module."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(target, ast.Name | ast.Attribute) and ast.unparse(target).endswith(
                "hookimpl"
            ):
                found.add(node.name)
    return found


def _has_tests(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.walk(tree)
    )


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_implemented_in_a_test_module(hook):
    """A module with real tests implements the hook: the core's handling of it is exercised."""
    modules = [
        path.relative_to(ROOT)
        for path in _test_files()
        if (tree := ast.parse(path.read_text()))
        and _has_tests(tree)
        and hook in _implemented_hooks(tree)
    ]
    assert modules, f"no test implements the hook {hook!r}; add one that exercises it"


def _code_block(text: str, heading: str, language: str) -> str:
    section = text.split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


async def test_the_testing_example_in_the_guide_runs(tmp_path, monkeypatch):
    """The tutorial's plugin and the guide's test example, run as written."""
    text = PLUGINS_MD.read_text()
    package = tmp_path / "dback_weather"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(
        _code_block(text, "### 3. `dback_weather/plugin.py`", "python")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    exec(
        compile(
            _code_block(text, "### With `dback_core.testing` directly", "python"),
            "plugins.md",
            "exec",
        ),
        namespace,
    )
    try:
        await namespace["test_the_weather_guild_is_served"]()
    finally:
        sys.modules.pop("dback_weather.plugin", None)
        sys.modules.pop("dback_weather", None)
