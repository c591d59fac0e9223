"""The simulated world: four guilds, their members, and what happens in them.

Every guild has one shared simulation, so two people watching the same guild see the same
characters do the same things. A seeded ``random.Random`` makes a run reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from dback_core.plugin.events import Event, Message, Presence

DEFAULT_GUILD = "232769614004748288"


@dataclass(frozen=True)
class GuildSpec:
    snowflake: str
    short_id: str
    name: str
    members: int
    default: bool = False
    passworded: bool = False


GUILDS = (
    GuildSpec(DEFAULT_GUILD, "dworld", "D-World", 40, default=True),
    GuildSpec("482241773318701056", "docs", "Docs (WIP)", 8),
    GuildSpec("123456789012345678", "oauth", "OAuth2 Protected Server", 12, passworded=True),
    GuildSpec("987654321098765432", "repos", "My Repos", 24),
)

_FIRST = (
    "pixel",
    "nova",
    "echo",
    "rusty",
    "mango",
    "lumen",
    "kiwi",
    "orbit",
    "pepper",
    "quill",
    "sable",
    "tofu",
    "vortex",
    "willow",
    "yuzu",
    "zephyr",
    "basil",
    "cobalt",
    "dune",
    "ember",
)
_SECOND = (
    "fox",
    "byte",
    "moth",
    "sprout",
    "golem",
    "otter",
    "wren",
    "comet",
    "lynx",
    "bean",
    "drake",
    "finch",
    "koi",
    "mole",
    "newt",
    "pike",
    "raven",
    "slug",
    "toad",
    "yak",
)
_COLORS = (
    "#e91e63",
    "#9b59b6",
    "#3498db",
    "#1abc9c",
    "#2ecc71",
    "#f1c40f",
    "#e67e22",
    "#e74c3c",
    "#95a5a6",
    "#607d8b",
    "#11806a",
    "#206694",
)
_PHRASES = (
    "hello!",
    "anyone around?",
    "brb",
    "that build is green again",
    "lunch time",
    "who broke main?",
    "gg",
    "nice",
    "on my way",
    "the map looks great today",
    "lol",
    "ok, shipping it",
    "coffee first",
    "good night everyone",
    "did you see the new release?",
)
_STATUSES = ("online", "idle", "dnd", "offline")
_STATUS_WEIGHTS = (5, 2, 1, 2)


@dataclass
class MockGuild:
    spec: GuildSpec
    users: dict[str, dict[str, Any]] = field(default_factory=dict)


class MockWorld:
    """State of all mock guilds plus the random stream that drives them."""

    def __init__(self, seed: int | None = None, password: str | None = None) -> None:
        self.random = random.Random(seed)
        self.password = password
        self.guilds = {
            spec.snowflake: self._populate(index, spec) for index, spec in enumerate(GUILDS)
        }

    def _populate(self, index: int, spec: GuildSpec) -> MockGuild:
        guild = MockGuild(spec)
        names: set[str] = set()
        for number in range(spec.members):
            uid = f"{spec.snowflake[:12]}{index:02d}{number:04d}"
            name = self._unique_name(names)
            guild.users[uid] = {
                "uid": uid,
                "username": name,
                "status": self.random.choices(_STATUSES, _STATUS_WEIGHTS)[0],
                "roleColor": self.random.choice(_COLORS) if self.random.random() < 0.7 else False,
            }
        return guild

    def _unique_name(self, taken: set[str]) -> str:
        while True:
            name = f"{self.random.choice(_FIRST)}{self.random.choice(_SECOND)}"
            if self.random.random() < 0.3:
                name += str(self.random.randint(1, 99))
            if name not in taken:
                taken.add(name)
                return name

    def servers(self) -> dict[str, dict[str, Any]]:
        servers = {}
        for snowflake, guild in self.guilds.items():
            spec = guild.spec
            record: dict[str, Any] = {
                "id": spec.short_id,
                "name": spec.name,
                "passworded": spec.passworded,
                "is_default": spec.default,
                "enabled": True,
            }
            if spec.passworded and self.password:
                record["password"] = self.password
            servers[snowflake] = record
        return servers

    def users(self, server_id: str) -> dict[str, dict[str, Any]] | None:
        guild = self.guilds.get(server_id)
        if guild is None:
            return None
        return {uid: dict(user) for uid, user in guild.users.items()}

    def tick(self) -> list[Event]:
        """One step of the simulation: per guild a status change and, sometimes, a message."""
        events: list[Event] = []
        for snowflake, guild in self.guilds.items():
            uid = self.random.choice(list(guild.users))
            user = guild.users[uid]
            choices = [status for status in _STATUSES if status != user["status"]]
            weights = [_STATUS_WEIGHTS[_STATUSES.index(status)] for status in choices]
            user["status"] = self.random.choices(choices, weights)[0]
            events.append(
                Presence(snowflake, uid, user["status"], user["username"], user["roleColor"])
            )
            if self.random.random() < 0.5:
                speakers = [u for u, data in guild.users.items() if data["status"] != "offline"]
                if speakers:
                    events.append(
                        Message(
                            snowflake,
                            self.random.choice(speakers),
                            self.random.choice(_PHRASES),
                            "general",
                        )
                    )
        return events
