"""``dback new-plugin``: a ready plugin package written from ``dback_core/ops/plugin_template``.

The package works as written - it installs, its tests pass, ``dback serve`` serves its
guild - so an author starts from something running and changes it step by step; and it is
ready to publish: a LICENSE naming its author, the metadata an index shows, and GitHub
workflows that run its tests and build, check and publish each tagged release. The
templates are plain files with ``{{placeholders}}``, shipped inside dback-core, so what is
generated always matches the installed core (its settings API, its pytest fixtures, and the
version range the pyproject asks for).
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

from dback_core.loading.plugins import normalize_name
from dback_core.ops.plugin_about import About, default_author, default_description
from dback_core.plugin.errors import ScaffoldError
from dback_core.version import __version__

#: template file -> where it goes in the package, ``{module}`` being the import name.
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "LICENSE.tmpl": "LICENSE",
    "init.py.tmpl": "{module}/__init__.py",
    "plugin.py.tmpl": "{module}/plugin.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
    "ci.yml.tmpl": ".github/workflows/ci.yml",
    "release.yml.tmpl": ".github/workflows/release.yml",
}

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def core_range(version: str = __version__) -> str:
    """``>=0.1,<0.2`` for 0.1.x: before 1.0 a minor release may change the plugin API."""
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"{major + 1}.0" if major else f"0.{minor + 1}"
    return f">={major}.{minor},<{upper}"


def title_of(name: str) -> str:
    """``Solar Wind`` for ``dback-solar-wind``: how the README and the guild name it."""
    return " ".join(word.capitalize() for word in name.removeprefix("dback-").split("-"))


def placeholders(name: str, about: About | None = None) -> dict[str, str]:
    """What the templates' ``{{...}}`` stand for, for plugin ``name`` (already normalised)
    by the author ``about`` says (the defaults: git's user, a generic description)."""
    short = name.removeprefix("dback-")
    words = short.split("-")
    digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    title = title_of(name)
    about = about or About(default_author(), default_description(title))
    return {
        "name": name,
        "module": name.replace("-", "_"),
        "class_name": "".join(word.capitalize() for word in words) + "Plugin",
        "title": title,
        "prefix": "DBACK_" + short.upper().replace("-", "_"),
        "short_id": short,
        # An 18-digit snowflake of its own, so two generated plugins do not share a guild.
        "guild": str(10**17 + digest % (9 * 10**17)),
        "core_range": core_range(),
        "year": str(datetime.now(UTC).year),
        "holder": about.author,
        "description": about.description,
        "description_toml": json.dumps(about.description, ensure_ascii=False),
        "authors_toml": about.authors_toml(),
        "urls_toml": about.urls_toml(),
    }


def check_name(raw: str) -> str:
    """The plugin name for ``raw``: lower case words joined by ``-`` (``_`` accepted)."""
    name = normalize_name(raw)
    if not _NAME.fullmatch(name) or keyword.iskeyword(name.replace("-", "_")):
        raise ScaffoldError(
            f"{raw!r} cannot name a plugin: use letters, digits and '-', starting with a "
            "letter (for example dback-weather)"
        )
    if name in {"dback", "dback-core"}:
        raise ScaffoldError(f"{raw!r} is dback's own name; choose another")
    return name


def write_plugin(raw_name: str, parent: Path, about: About | None = None) -> Path:
    """Write the package for plugin ``raw_name`` into ``parent/<name>`` and return that path.

    Refuses a target that already exists, so nothing of the author's is ever overwritten.
    """
    name = check_name(raw_name)
    target = parent / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another name or --dir")
    values = placeholders(name, about)
    templates = files("dback_core.ops.plugin_template")
    for template, relative in FILES.items():
        text = templates.joinpath(template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = target / relative.format(module=values["module"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
