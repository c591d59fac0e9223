"""A fake Discord on 127.0.0.1 - REST API and Gateway - that the real discord.py logs in to.

It implements what a guild-watching bot meets: login, READY and GUILD_CREATE with members,
roles and presences, heartbeats, RESUME with replay of missed dispatches, RECONNECT,
INVALID_SESSION, the privileged-intents refusal (close code 4014, at identify or later), a
reset token (4004), a gateway that is down, the application's ``bot_public`` flag, member
chunks of 1,000 (with presences only when asked; guilds over ``PRESENCE_LIMIT`` get none at
GUILD_CREATE), guild outages, a viewer's OAuth user and guild list (with outages and 429 +
Retry-After), bans (GUILD_BAN_ADD then GUILD_MEMBER_REMOVE), member requests answered
with RATE_LIMITED, member requests by user id, members left out of the member list,
and the dispatches a test pushes (presence, chat with attachments or in unknown channels,
members joining, changing and leaving, roles created, recoloured, moved, re-permissioned and
deleted, guilds joined, renamed and left, channels created, locked (permission overwrites)
and deleted, threads and forum posts created, messages with stickers, messages deleted).
For bigger bots: ``GET /gateway/bot`` (recommended shards, ``session_start_limit`` counted
down at each IDENTIFY), several shards (each guild served by shard ``(guild_id >> 22) %
shards``, close code 4011 for a shard with too many guilds), op 9 storms, a per-bot set of
allowed privileged intents, a shard's connection dropped and held.
Facts it depends on:

- REST bodies need ``Content-Type: application/json`` with no charset, or discord.py
  does not parse them; a 401 on ``GET /users/@me`` is a ``LoginFailure``.
- ``PRESENCE_UPDATE`` carries a partial user (only ``id``) plus ``status``,
  ``client_status`` and ``activities``. Members without a presence are offline.
- Roles carry both ``color`` (discord.py < 2.6) and ``colors.primary_color`` (>= 2.6).
- Permissions (a role's ``permissions``, an overwrite's ``allow`` / ``deny``) are decimal
  strings; an overwrite's ``type`` is 0 for a role, 1 for a member.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl
from aiohttp import WSMsgType, web

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_REQUEST_MEMBERS = 0, 1, 2, 6, 8
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11

GUILDS, MEMBERS, MODERATION, PRESENCES, GUILD_MESSAGES, MESSAGE_CONTENT = 1, 2, 4, 256, 512, 32768
PRIVILEGED = MEMBERS | PRESENCES | MESSAGE_CONTENT

#: From this many members on a guild is "large": GUILD_CREATE lists only online members and
#: the client asks for the rest (op 8), which arrive as GUILD_MEMBERS_CHUNK.
LARGE_GUILD = 250
#: Above this many members GUILD_CREATE carries no presences and no members but the bot's
#: (Discord's rule for guilds over 75,000 members); statuses come only with member chunks
#: asked for with ``presences``, or as they change.
PRESENCE_LIMIT = 75_000
#: Members per GUILD_MEMBERS_CHUNK, as Discord sends them.
CHUNK_SIZE = 1000

#: Permission bits (Discord's values).
ADMINISTRATOR, VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY = 1 << 3, 1 << 10, 1 << 11, 1 << 16
#: What ``@everyone`` may do in a new guild, as far as a chat bot cares.
EVERYONE_DEFAULT = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY
#: Channel types: text, voice, category, forum; public and private threads.
TEXT, VOICE, CATEGORY, FORUM, PUBLIC_THREAD, PRIVATE_THREAD = 0, 2, 4, 15, 11, 12

_ids = itertools.count(1)


def new_snowflake() -> int:
    return ((int(time.time() * 1000) - 1420070400000) << 22) | (next(_ids) & 0xFFF)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _overwrites(overwrites: dict[int, tuple[int, int]]) -> list[dict[str, Any]]:
    """Role overwrites as Discord sends them: role id -> ``(allow, deny)`` bits."""
    return [
        {"id": str(role_id), "type": 0, "allow": str(allow), "deny": str(deny)}
        for role_id, (allow, deny) in overwrites.items()
    ]


def user_object(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


@dataclass
class Member:
    user: dict[str, Any]
    nick: str | None = None
    roles: list[int] = field(default_factory=list)
    status: str = "offline"

    def payload(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "nick": self.nick,
            "roles": [str(role) for role in self.roles],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "avatar": None,
        }


@dataclass
class Guild:
    id: int
    name: str
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    threads: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)


@dataclass
class Session:
    id: str
    intents: int
    sequence: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    socket: web.WebSocketResponse | None = None
    #: ``[shard_id, shard_count]`` as the IDENTIFY said (one shard when it did not).
    shard: tuple[int, int] = (0, 1)

    def serves(self, guild_id: int) -> bool:
        """Discord's routing: a guild belongs to shard ``(guild_id >> 22) % shard_count``."""
        return shard_of(guild_id, self.shard[1]) == self.shard[0]


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


class FakeDiscord:
    """Build guilds, ``await start()``, point discord.py at it with ``redirect()``, push events."""

    def __init__(self, token: str = "bot-token-for-tests", bot_id: int = 4242) -> None:
        self.token = token
        self.bot = user_object(bot_id, "dzone-bot", bot=True)
        self.guilds: dict[int, Guild] = {}
        self.sessions: dict[str, Session] = {}
        #: OAuth access token -> ids of the guilds its user is in.
        self.oauth_users: dict[str, list[int]] = {}
        #: OAuth access token -> its user's id (``GET /users/@me``); a token not named here
        #: belongs to a user whose id is derived from the token.
        self.oauth_ids: dict[str, int] = {}
        #: Refuse identifies that ask for privileged intents, like a bot whose portal
        #: switches are off.
        self.refuse_privileged = False
        #: While set, the gateway refuses connections with HTTP 503 (Discord unreachable).
        self.gateway_down = False
        #: The application's "Public Bot" switch: anyone may add a public bot to a guild.
        self.bot_public = False
        #: When set, OAuth calls (user, guild list) answer with this HTTP status (an outage).
        self.oauth_outage: int | None = None
        #: Seconds each OAuth call takes to answer.
        self.oauth_delay = 0.0
        #: While set, OAuth calls answer 429 with this ``Retry-After`` (seconds).
        self.oauth_retry_after: float | None = None
        #: When set, GUILD_CREATE waits for this event after READY: guilds that READY lists
        #: as unavailable arrive later, as after a Discord outage.
        self.guilds_held: asyncio.Event | None = None
        #: Privileged intents this bot may use (the portal switches, and Discord's approval
        #: for Message Content); an IDENTIFY asking for others is closed with 4014.
        self.allowed_intents = PRIVILEGED
        #: The next this many IDENTIFYs are answered with op 9 (not resumable) instead of
        #: READY, as during a Discord incident.
        self.invalid_session_storm = 0
        #: ``GET /gateway/bot``: the recommended shard count and ``session_start_limit``;
        #: every IDENTIFY spends a start, and one past zero resets the token (4004).
        self.recommended_shards = 1
        self.session_start_total = 1000
        self.session_starts_remaining = 1000
        self.session_reset_after_ms = 86_400_000
        self.max_concurrency = 1
        #: A shard serving more guilds than this is closed with 4011 (sharding required).
        self.max_guilds_per_shard: int | None = None
        #: Shards whose RESUME is not answered until their event is set (a shard's gateway
        #: down while the others serve).
        self.held_shards: dict[int, asyncio.Event] = {}
        #: Every IDENTIFY with the right token: (monotonic time, [shard_id, count], intents).
        self.identify_log: list[tuple[float, tuple[int, int], int]] = []
        self.requests: list[str] = []
        #: The paths called with a viewer's OAuth token, in order.
        self.oauth_requests: list[str] = []
        self.identifies = 0
        self.resumes = 0
        self.member_requests = 0
        self.member_requests_with_presences = 0
        #: The next this many member requests are answered with a RATE_LIMITED dispatch
        #: (``retry_after`` = ``chunk_retry_after``) instead of chunks; a request before the
        #: last ``retry_after`` has passed is refused again, and counted in ``too_early``.
        self.chunk_rate_limits = 0
        self.chunk_retry_after = 0.5
        self.chunk_limited_until = 0.0
        self.rate_limited_requests = 0
        self.too_early = 0
        #: Members a request for the whole member list leaves out, as a list that was cut
        #: short; asked for by id they are sent.
        self.unchunked: set[int] = set()
        #: The user ids of the member requests that named some, in order.
        self.member_queries: list[list[int]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- building the world ----------------------------------------------------------------

    def add_guild(self, guild_id: int, name: str) -> Guild:
        guild = Guild(guild_id, name)
        self.guilds[guild_id] = guild
        self.add_role(
            guild_id, guild_id, "@everyone", color=0, position=0, permissions=EVERYONE_DEFAULT
        )
        guild.members[int(self.bot["id"])] = Member(self.bot, status="online")
        return guild

    def add_role(
        self,
        guild_id: int,
        role_id: int,
        name: str,
        color: int,
        position: int,
        permissions: int = 0,
    ) -> None:
        self.guilds[guild_id].roles[role_id] = {
            "id": str(role_id),
            "name": name,
            "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "position": position,
            "permissions": str(permissions),
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    def add_channel(
        self,
        guild_id: int,
        channel_id: int,
        name: str,
        *,
        kind: int = TEXT,
        overwrites: dict[int, tuple[int, int]] | None = None,
    ) -> dict[str, Any]:
        """A channel; ``overwrites`` maps role ids to ``(allow, deny)`` permission bits."""
        channel = {
            "id": str(channel_id),
            "type": kind,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(self.guilds[guild_id].channels),
            "permission_overwrites": _overwrites(overwrites or {}),
            "parent_id": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
        }
        if kind == FORUM:
            channel.update(available_tags=[], default_reaction_emoji=None, flags=0)
        self.guilds[guild_id].channels[channel_id] = channel
        return channel

    def add_thread(
        self, guild_id: int, thread_id: int, parent_id: int, name: str, *, private: bool = False
    ) -> dict[str, Any]:
        """A thread (or forum post) in channel ``parent_id``, active when the bot logs in."""
        thread = self.guilds[guild_id].threads[thread_id] = {
            "id": str(thread_id),
            "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
            "guild_id": str(guild_id),
            "parent_id": str(parent_id),
            "owner_id": self.bot["id"],
            "name": name,
            "message_count": 0,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "locked": False,
            },
        }
        return thread

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        name: str,
        *,
        nick: str | None = None,
        roles: list[int] | None = None,
        status: str = "offline",
        bot: bool = False,
    ) -> Member:
        member = Member(user_object(user_id, name, bot), nick, list(roles or []), status)
        self.guilds[guild_id].members[user_id] = member
        return member

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/users/@me/guilds", self._oauth_guilds)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/{path:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        for session in self.sessions.values():
            if session.socket is not None:
                await session.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def redirect(self) -> Iterator[None]:
        """Send discord.py's REST calls and gateway connections here, then restore them."""
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved

    # -- REST ------------------------------------------------------------------------------

    @staticmethod
    def _reply(data: Any, status: int = 200) -> web.Response:
        body = json.dumps(data).encode()
        return web.Response(body=body, status=status, content_type="application/json")

    def _bot_auth(self, request: web.Request) -> bool:
        self.requests.append(f"{request.method} {request.path}")
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def oauth_user_id(self, token: str) -> int:
        """The id of the user an OAuth token belongs to."""
        return self.oauth_ids.get(token) or int(hashlib.sha256(token.encode()).hexdigest()[:12], 16)

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return await self._oauth_me(request)
        if not self._bot_auth(request):
            return self._reply({"message": "401: Unauthorized", "code": 0}, 401)
        return self._reply({**self.bot, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        if not self._bot_auth(request):
            return self._reply({"message": "401: Unauthorized", "code": 0}, 401)
        return self._reply(
            {
                "id": self.bot["id"],
                "name": "dzone",
                "description": "",
                "icon": None,
                "bot_public": self.bot_public,
                "bot_require_code_grant": False,
                "owner": user_object(1, "owner"),
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._bot_auth(request):
            return self._reply({"message": "401: Unauthorized", "code": 0}, 401)
        return self._reply(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": self.session_start_total,
                    "remaining": self.session_starts_remaining,
                    "reset_after": self.session_reset_after_ms,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    def _oauth_call(self, request: web.Request) -> web.Response | str:
        """What every call with a viewer's token meets first: an outage, a rate limit, a
        token Discord does not know. The token when the call may go on."""
        self.requests.append(f"{request.method} {request.path}")
        self.oauth_requests.append(request.path.removeprefix("/api/v10"))
        if self.oauth_outage is not None:
            return self._reply({"message": "outage", "code": 0}, self.oauth_outage)
        if self.oauth_retry_after is not None:
            limited = self._reply(
                {"message": "You are being rate limited.", "retry_after": self.oauth_retry_after},
                429,
            )
            limited.headers["Retry-After"] = f"{self.oauth_retry_after:g}"
            return limited
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.oauth_users:
            return self._reply({"message": "401: Unauthorized", "code": 0}, 401)
        return token

    async def _oauth_me(self, request: web.Request) -> web.Response:
        """``GET /users/@me`` with a viewer's token (scope ``identify``): its own user."""
        answer = self._oauth_call(request)
        if isinstance(answer, str):
            answer = self._reply(user_object(self.oauth_user_id(answer), "viewer"))
        await asyncio.sleep(self.oauth_delay)
        return answer

    async def _oauth_guilds(self, request: web.Request) -> web.Response:
        """The user's guilds as they are when the call arrives; the answer takes
        ``oauth_delay`` to come back (a kick meanwhile is not in it)."""
        answer = self._oauth_call(request)
        if isinstance(answer, str):
            guilds = self.oauth_users[answer]
            answer = self._reply([{"id": str(guild_id), "name": "guild"} for guild_id in guilds])
        await asyncio.sleep(self.oauth_delay)
        return answer

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        return self._reply({"message": "404: Not Found", "code": 0}, 404)

    # -- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return self._reply({"message": "Service Unavailable", "code": 0}, 503)
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        await socket_.send_str(json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": 40000}}))
        session: Session | None = None
        try:
            async for frame in socket_:
                if frame.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op, data = payload.get("op"), payload.get("d")
                if op == OP_HEARTBEAT:
                    await socket_.send_str(json.dumps({"op": OP_HEARTBEAT_ACK, "d": None}))
                elif op == OP_IDENTIFY:
                    session = await self._identify(socket_, data)
                elif op == OP_RESUME:
                    session = await self._resume(socket_, data)
                elif op == OP_REQUEST_MEMBERS and session is not None:
                    await self._send_members(session, data)
        finally:
            if session is not None and session.socket is socket_:
                session.socket = None
        return socket_

    async def _identify(self, socket_: web.WebSocketResponse, data: dict) -> Session | None:
        if data.get("token") != self.token:
            await socket_.close(code=4004, message=b"Authentication failed.")
            return None
        intents = int(data.get("intents", 0))
        shard_id, shard_count = data.get("shard") or (0, 1)
        shard = (int(shard_id), int(shard_count))
        self.identify_log.append((time.monotonic(), shard, intents))
        if self.session_starts_remaining <= 0:
            await self.reset_token()
            await socket_.close(code=4004, message=b"Authentication failed.")
            return None
        self.session_starts_remaining -= 1
        if intents & PRIVILEGED & ~self.allowed_intents or (
            self.refuse_privileged and intents & PRIVILEGED
        ):
            await socket_.close(code=4014, message=b"Disallowed intent(s).")
            return None
        if self.invalid_session_storm > 0:
            self.invalid_session_storm -= 1
            await socket_.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return None
        guilds = [
            guild for guild in self.guilds.values() if shard_of(guild.id, shard[1]) == shard[0]
        ]
        if self.max_guilds_per_shard is not None and len(guilds) > self.max_guilds_per_shard:
            await socket_.close(code=4011, message=b"Sharding required.")
            return None
        self.identifies += 1
        session = Session(uuid.uuid4().hex, intents, socket=socket_, shard=shard)
        self.sessions[session.id] = session
        ready = {
            "v": 10,
            "user": {**self.bot, "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.bot["id"], "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if data.get("shard"):
            ready["shard"] = list(shard)
        await self._send(session, "READY", ready)
        if self.guilds_held is not None:
            await self.guilds_held.wait()
        for guild in guilds:
            await self._send(session, "GUILD_CREATE", self._guild_payload(guild))
        return session

    async def _resume(self, socket_: web.WebSocketResponse, data: dict) -> Session | None:
        session = self.sessions.get(data.get("session_id"))
        if session is None or data.get("token") != self.token:
            await socket_.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return None
        held = self.held_shards.get(session.shard[0])
        if held is not None:
            await held.wait()
        self.resumes += 1
        seen = data.get("seq") or 0
        # Replay until caught up (events may be pushed meanwhile), then attach the socket.
        while missed := [payload for payload in session.history if payload["s"] > seen]:
            for payload in missed:
                await socket_.send_str(json.dumps(payload))
                seen = payload["s"]
        session.socket = socket_
        await self._send(session, "RESUMED", {})
        return session

    async def _send_members(self, session: Session, request: dict[str, Any]) -> None:
        """Answer op 8 with the guild's members (query "" asks for all, ``user_ids`` for
        those), in chunks of ``CHUNK_SIZE``; with presences only when asked (and only if
        the intent was given). Or refuse it with RATE_LIMITED, see ``chunk_rate_limits``."""
        self.member_requests += 1
        self.member_requests_with_presences += bool(request.get("presences"))
        guild = self.guilds.get(int(request["guild_id"]))
        if guild is None:
            return
        if await self._rate_limited(session, request):
            return
        user_ids = [int(user_id) for user_id in request.get("user_ids") or []]
        if user_ids:
            self.member_queries.append(user_ids)
            members = [guild.members[uid] for uid in user_ids if uid in guild.members]
        else:
            members = [m for m in guild.members.values() if int(m.user["id"]) not in self.unchunked]
        slices = [members[i : i + CHUNK_SIZE] for i in range(0, len(members), CHUNK_SIZE)] or [[]]
        for index, part in enumerate(slices):
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [member.payload() for member in part],
                "chunk_index": index,
                "chunk_count": len(slices),
            }
            if user_ids:
                chunk["not_found"] = [str(uid) for uid in user_ids if uid not in guild.members]
            if request.get("presences") and session.intents & PRESENCES:
                chunk["presences"] = [
                    self._presence(guild, member) for member in part if member.status != "offline"
                ]
            if request.get("nonce"):
                chunk["nonce"] = request["nonce"]
            await self._send(session, "GUILD_MEMBERS_CHUNK", chunk)
            await asyncio.sleep(0)

    async def _rate_limited(self, session: Session, request: dict[str, Any]) -> bool:
        """Discord's answer to a member request it will not serve now: a RATE_LIMITED
        dispatch naming the opcode, the wait, and the request (guild id and nonce)."""
        now = time.monotonic()
        early = now < self.chunk_limited_until
        if not early and self.chunk_rate_limits <= 0:
            return False
        if early:
            self.too_early += 1
        else:
            self.chunk_rate_limits -= 1
            self.chunk_limited_until = now + self.chunk_retry_after
        self.rate_limited_requests += 1
        meta: dict[str, Any] = {"guild_id": str(request["guild_id"])}
        if request.get("nonce"):
            meta["nonce"] = request["nonce"]
        retry_after = max(self.chunk_limited_until - now, 0.0)
        data = {"opcode": OP_REQUEST_MEMBERS, "retry_after": retry_after, "meta": meta}
        await self._send(session, "RATE_LIMITED", data)
        return True

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.sequence += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": session.sequence, "d": data}
        session.history.append(payload)
        if session.socket is not None:
            await session.socket.send_str(json.dumps(payload))

    async def _dispatch(self, event: str, build: Callable[[int], dict | None]) -> None:
        """Send to every session whose shard serves the event's guild."""
        for session in list(self.sessions.values()):
            data = build(session.intents)
            if data is None:
                continue
            guild_id = data.get("guild_id")
            if guild_id is None and event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"):
                guild_id = data.get("id")
            if guild_id is None or session.serves(int(guild_id)):
                await self._send(session, event, data)

    @staticmethod
    def _presence(guild: Guild, member: Member) -> dict[str, Any]:
        return {
            "user": {"id": member.user["id"]},
            "guild_id": str(guild.id),
            "status": member.status,
            "activities": [],
            "client_status": {} if member.status == "offline" else {"desktop": member.status},
        }

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        count = len(guild.members)
        members = list(guild.members.values())
        if count > PRESENCE_LIMIT:
            members = [guild.members[int(self.bot["id"])]]
        elif count >= LARGE_GUILD:
            members = [member for member in members if member.status != "offline"]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "owner_id": self.bot["id"],
            "unavailable": False,
            "large": count >= LARGE_GUILD,
            "member_count": count,
            "joined_at": _now(),
            "roles": list(guild.roles.values()),
            "channels": list(guild.channels.values()),
            "members": [member.payload() for member in members],
            "presences": []
            if count > PRESENCE_LIMIT
            else [self._presence(guild, m) for m in members if m.status != "offline"],
            "emojis": [],
            "stickers": [],
            "features": [],
            "threads": list(guild.threads.values()),
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
        }

    # -- events pushed by tests ------------------------------------------------------------

    async def set_status(self, guild_id: int, user_id: int, status: str) -> None:
        guild = self.guilds[guild_id]
        member = guild.members[user_id]
        member.status = status
        presence = self._presence(guild, member)
        await self._dispatch("PRESENCE_UPDATE", lambda intents: presence)

    async def say(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        text: str,
        *,
        attachments: Sequence[str] = (),
        stickers: Sequence[str] = (),
    ) -> int:
        """A message; ``channel_id`` may be one the bot never heard of (an archived thread).
        ``attachments`` are file names, ``stickers`` sticker names. Returns the message id."""
        member = self.guilds[guild_id].members[user_id]
        message_id = new_snowflake()
        message = {
            "id": str(message_id),
            "type": 0,
            "channel_id": str(channel_id),
            "guild_id": str(guild_id),
            "author": member.user,
            "member": {key: value for key, value in member.payload().items() if key != "user"},
            "content": text,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(new_snowflake()),
                    "filename": name,
                    "size": 1,
                    "url": f"http://127.0.0.1/{name}",
                    "proxy_url": f"http://127.0.0.1/{name}",
                }
                for name in attachments
            ],
            "sticker_items": [
                {"id": str(new_snowflake()), "name": name, "format_type": 1} for name in stickers
            ],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
        }

        def build(intents: int) -> dict[str, Any]:
            return message if intents & MESSAGE_CONTENT else {**message, "content": ""}

        await self._dispatch("MESSAGE_CREATE", build)
        return message_id

    async def delete_message(self, guild_id: int, channel_id: int, message_id: int) -> None:
        """MESSAGE_DELETE, as when a moderator or a moderation bot removes a message."""
        payload = {"id": str(message_id), "channel_id": str(channel_id), "guild_id": str(guild_id)}
        await self._dispatch("MESSAGE_DELETE", lambda intents: payload)

    async def delete_messages(self, guild_id: int, channel_id: int, message_ids: list[int]) -> None:
        """MESSAGE_DELETE_BULK (a purge)."""
        payload = {
            "ids": [str(message_id) for message_id in message_ids],
            "channel_id": str(channel_id),
            "guild_id": str(guild_id),
        }
        await self._dispatch("MESSAGE_DELETE_BULK", lambda intents: payload)

    async def create_channel(
        self, guild_id: int, channel_id: int, name: str, **options: Any
    ) -> None:
        """CHANNEL_CREATE; ``options`` as for ``add_channel``."""
        channel = self.add_channel(guild_id, channel_id, name, **options)
        await self._dispatch("CHANNEL_CREATE", lambda intents: dict(channel))

    async def set_overwrites(
        self, guild_id: int, channel_id: int, overwrites: dict[int, tuple[int, int]]
    ) -> None:
        """CHANNEL_UPDATE with new permission overwrites (role id -> ``(allow, deny)``)."""
        channel = self.guilds[guild_id].channels[channel_id]
        channel["permission_overwrites"] = _overwrites(overwrites)
        await self._dispatch("CHANNEL_UPDATE", lambda intents: dict(channel))

    async def delete_channel(self, guild_id: int, channel_id: int) -> None:
        channel = self.guilds[guild_id].channels.pop(channel_id)
        await self._dispatch("CHANNEL_DELETE", lambda intents: channel)

    async def create_thread(
        self, guild_id: int, thread_id: int, parent_id: int, name: str, *, private: bool = False
    ) -> None:
        """THREAD_CREATE for a thread (or a forum post) just opened in ``parent_id``."""
        thread = self.add_thread(guild_id, thread_id, parent_id, name, private=private)
        payload = {**thread, "newly_created": True}
        await self._dispatch("THREAD_CREATE", lambda intents: payload)

    async def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """GUILD_ROLE_UPDATE with new permissions (``@everyone``'s id is the guild's)."""
        role = self.guilds[guild_id].roles[role_id]
        role["permissions"] = str(permissions)
        payload = {"guild_id": str(guild_id), "role": dict(role)}
        await self._dispatch("GUILD_ROLE_UPDATE", lambda intents: payload)

    async def join_member(self, guild_id: int, user_id: int, name: str, **options: Any) -> None:
        member = self.add_member(guild_id, user_id, name, **options)
        payload = {**member.payload(), "guild_id": str(guild_id)}
        await self._dispatch("GUILD_MEMBER_ADD", lambda intents: payload)

    async def ban_member(self, guild_id: int, user_id: int, *, remove: bool = True) -> None:
        """A ban: GUILD_BAN_ADD (to sessions with the moderation intent), then, as Discord
        does, GUILD_MEMBER_REMOVE; ``remove=False`` stops after the ban, as when the removal
        is still on its way."""
        user = self.guilds[guild_id].members[user_id].user
        self._leave_oauth_guild(guild_id, user_id)
        payload = {"guild_id": str(guild_id), "user": user}
        await self._dispatch(
            "GUILD_BAN_ADD", lambda intents: payload if intents & MODERATION else None
        )
        if remove:
            await self.remove_member(guild_id, user_id)

    def _leave_oauth_guild(self, guild_id: int, user_id: int) -> None:
        """The user's OAuth guild lists no longer show the guild they left."""
        for token, guilds in self.oauth_users.items():
            if self.oauth_user_id(token) == user_id and guild_id in guilds:
                guilds.remove(guild_id)

    async def remove_member(self, guild_id: int, user_id: int) -> None:
        """GUILD_MEMBER_REMOVE: a kick, or the member left."""
        member = self.guilds[guild_id].members.pop(user_id)
        self._leave_oauth_guild(guild_id, user_id)
        payload = {"guild_id": str(guild_id), "user": member.user}
        await self._dispatch("GUILD_MEMBER_REMOVE", lambda intents: payload)

    async def update_member(
        self, guild_id: int, user_id: int, *, nick: str | None, roles: list[int]
    ) -> None:
        member = self.guilds[guild_id].members[user_id]
        member.nick, member.roles = nick, list(roles)
        payload = {**member.payload(), "guild_id": str(guild_id)}
        await self._dispatch("GUILD_MEMBER_UPDATE", lambda intents: payload)

    async def recolor_role(self, guild_id: int, role_id: int, color: int) -> None:
        role = self.guilds[guild_id].roles[role_id]
        role["color"] = color
        role["colors"] = {**role["colors"], "primary_color": color}
        payload = {"guild_id": str(guild_id), "role": dict(role)}
        await self._dispatch("GUILD_ROLE_UPDATE", lambda intents: payload)

    async def move_role(self, guild_id: int, role_id: int, position: int) -> None:
        role = self.guilds[guild_id].roles[role_id]
        role["position"] = position
        payload = {"guild_id": str(guild_id), "role": dict(role)}
        await self._dispatch("GUILD_ROLE_UPDATE", lambda intents: payload)

    async def create_role(
        self, guild_id: int, role_id: int, name: str, color: int, position: int
    ) -> None:
        self.add_role(guild_id, role_id, name, color, position)
        payload = {"guild_id": str(guild_id), "role": dict(self.guilds[guild_id].roles[role_id])}
        await self._dispatch("GUILD_ROLE_CREATE", lambda intents: payload)

    async def delete_role(self, guild_id: int, role_id: int) -> None:
        """Discord sends no member updates for a deleted role: members keep its id."""
        del self.guilds[guild_id].roles[role_id]
        payload = {"guild_id": str(guild_id), "role_id": str(role_id)}
        await self._dispatch("GUILD_ROLE_DELETE", lambda intents: payload)

    async def join_guild(self, guild: Guild) -> None:
        """The bot was added to ``guild`` (built with ``add_guild`` and friends).

        Unlike the GUILD_CREATE after READY, this one has no ``unavailable`` field: that is
        how discord.py tells a new guild (``on_guild_join``) from one coming back online.
        """
        payload = {k: v for k, v in self._guild_payload(guild).items() if k != "unavailable"}
        await self._dispatch("GUILD_CREATE", lambda intents: payload)

    async def rename_guild(self, guild_id: int, name: str) -> None:
        guild = self.guilds[guild_id]
        guild.name = name
        payload = {k: v for k, v in self._guild_payload(guild).items() if k != "members"}
        await self._dispatch("GUILD_UPDATE", lambda intents: payload)

    async def leave_guild(self, guild_id: int) -> None:
        del self.guilds[guild_id]
        await self._dispatch("GUILD_DELETE", lambda intents: {"id": str(guild_id)})

    async def reconnect(self) -> None:
        """Op 7: the client reconnects and resumes its session."""
        for session in self.sessions.values():
            if session.socket is not None:
                await session.socket.send_str(json.dumps({"op": OP_RECONNECT, "d": None}))

    async def drop_connections(self) -> None:
        """Close every socket (code 4000); sessions stay resumable and keep what they miss."""
        for session in self.sessions.values():
            socket_, session.socket = session.socket, None
            if socket_ is not None:
                await socket_.close(code=4000)

    async def drop_shard(self, shard_id: int) -> None:
        """Close the sockets of one shard's sessions (code 4000); they stay resumable."""
        for session in self.sessions.values():
            if session.shard[0] == shard_id and session.socket is not None:
                socket_, session.socket = session.socket, None
                await socket_.close(code=4000)

    def identifies_of(self, shard_id: int) -> int:
        """IDENTIFYs (with the right token) that shard ``shard_id`` sent."""
        return sum(1 for _, shard, _ in self.identify_log if shard[0] == shard_id)

    async def close_sessions(self, code: int, message: str) -> None:
        """Close every socket with ``code`` and forget the sessions (they cannot resume)."""
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            if session.socket is not None:
                await session.socket.close(code=code, message=message.encode())

    async def reset_token(self) -> str:
        """The owner reset the bot token: the old one stops working (close code 4004)."""
        self.token = f"{self.token}-reset"
        await self.close_sessions(4004, "Authentication failed.")
        return self.token

    async def revoke_intents(self) -> None:
        """The privileged intents were switched off: close code 4014 until switched on."""
        self.refuse_privileged = True
        await self.close_sessions(4014, "Disallowed intent(s).")

    async def guild_outage(self, guild_id: int) -> None:
        """GUILD_DELETE with ``unavailable``: the guild is down, the bot is still in it."""
        payload = {"id": str(guild_id), "unavailable": True}
        await self._dispatch("GUILD_DELETE", lambda intents: payload)

    async def guild_recovered(self, guild_id: int) -> None:
        """The guild is back: GUILD_CREATE with its data (``unavailable`` false)."""
        payload = self._guild_payload(self.guilds[guild_id])
        await self._dispatch("GUILD_CREATE", lambda intents: payload)

    async def invalidate_sessions(self) -> None:
        """Op 9 (not resumable): clients must identify again and receive fresh guilds."""
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            if session.socket is not None:
                await session.socket.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
