"""docs/plugins.md documents every field of every event type, as ``dback_core/plugin/events.py``
declares it: name, type and default, in order."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from dback_core.plugin.events import ClientIdUpdate, Message, Presence, Refresh

TEXT = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
EVENTS = TEXT.split("\n## Event types\n", 1)[1].split("\n## ", 1)[0]


def rows(event: str) -> list[list[str]]:
    """The table rows under ``### <event>``: cells with ``\\|`` read back as ``|``."""
    assert f"\n### {event}\n" in EVENTS, f"docs/plugins.md: no '### {event}' under Event types"
    section = EVENTS.split(f"\n### {event}\n", 1)[1].split("\n### ", 1)[0]
    found = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.strip().strip("|").replace("\\|", "\0").split("|")
            found.append([cell.strip().replace("\0", "|") for cell in cells])
    return found


def documented_default(field) -> str:
    if field.default is MISSING:
        return ""
    return '`""`' if field.default == "" else f"`{field.default!r}`"


@pytest.mark.parametrize("event", [Presence, Message, ClientIdUpdate, Refresh])
def test_every_field_is_documented_with_its_type_and_default(event):
    documented = rows(event.__name__)
    expected = [
        [f"`{field.name}`", f"`{field.type}`", documented_default(field)] for field in fields(event)
    ]
    assert [row[:3] for row in documented] == expected
    assert all(row[3] for row in documented), f"{event.__name__}: a field has no meaning"
