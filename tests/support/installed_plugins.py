"""Plugins installed for one test the way pip installs them: a module beside a dist-info
with its ``dback`` entry point, found through ``sys.path`` or ``PYTHONPATH``."""

from __future__ import annotations

import textwrap
from pathlib import Path


def install_plugin(root: Path, name: str, source: str, target: str | None = None) -> None:
    """Install plugin ``name`` (version 1.2.3) into ``root``; ``target`` is its entry point's
    object, the module itself unless given."""
    module = name.replace("-", "_")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = root / f"{module}-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(f"[dback]\n{name} = {target or module}\n")
