"""Who a new plugin package is by, where it lives and what it does: ``dback new-plugin``
asks for these (or takes them from options) so that the package is ready to publish - a
LICENSE naming its holder, and the author, URL and description an index shows.

Defaults come from what the author already told their tools: ``git config user.name`` and
``user.email``, else the login name, so a package written without a terminal (a script, CI)
never carries a placeholder either.
"""

from __future__ import annotations

import getpass
import json
import subprocess
from dataclasses import dataclass

#: The prefix every published dback plugin's distribution name carries, so that a search
#: of the package index for "dback-" finds them all and no name collides with another project.
PREFIX = "dback-"


@dataclass(frozen=True)
class About:
    """The author's answers: ``email`` and ``url`` may be empty (left out of the metadata)."""

    author: str
    description: str
    email: str = ""
    url: str = ""

    def authors_toml(self) -> str:
        """``pyproject.toml``'s ``authors`` line."""
        entry = f"name = {_toml_string(self.author)}"
        if self.email:
            entry += f", email = {_toml_string(self.email)}"
        return f"authors = [{{ {entry} }}]"

    def urls_toml(self) -> str:
        """A ``[project.urls]`` table, or nothing without a URL."""
        if not self.url:
            return ""
        home = _toml_string(self.url)
        return f"\n[project.urls]\nHomepage = {home}\nSource = {home}\n"


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes (``\\"``, ``\\\\``, ``\\uXXXX``) are TOML's too."""
    return json.dumps(text, ensure_ascii=False)


def git_config(key: str) -> str:
    """``git config --get key``, or "" when git or the key is missing."""
    try:
        found = subprocess.run(
            ["git", "config", "--get", key], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return found.stdout.strip() if found.returncode == 0 else ""


def default_author() -> str:
    """git's ``user.name``, else the login name."""
    name = git_config("user.name")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the author"


def default_description(title: str) -> str:
    return f"{title}: a provider for dback, the d-zone presence server"


def prefix_warning(name: str) -> str | None:
    """Why a name without ``dback-`` is a poor choice for a published plugin, or None."""
    if name.startswith(PREFIX):
        return None
    return (
        f"{name!r} lacks the {PREFIX!r} prefix that dback plugins are published under: "
        f"others will not find it among them (consider {PREFIX}{name})"
    )
