"""Every query the plugin sends, and the mapping from rows to dback's records and events.

Kept in one module so the SQL the running server depends on can be read in one place, and
so the hooks and the listener build records the same way.
"""

from __future__ import annotations

from typing import Any

from dback_core.plugin.events import Message, Presence

#: A guild with a password hash is passworded, whatever its ``passworded`` column says. The
#: hash of the hash tells the core when the password changed (never the hash itself).
SERVERS = """
    SELECT server_id, name, passworded OR password_hash IS NOT NULL AS passworded, is_default,
           md5(password_hash) AS access_version
    FROM servers WHERE enabled ORDER BY server_id
"""
USERS = """
    SELECT u.user_id, u.username, u.status, u.role_color
    FROM users u JOIN servers s USING (server_id)
    WHERE u.server_id = $1 AND s.enabled
"""
#: The current rows of a batch of (server_id, user_id) keys; keys without a row are absent.
MEMBERS = """
    SELECT u.user_id, u.server_id, u.username, u.status, u.role_color
    FROM unnest($1::text[], $2::text[]) AS k (server_id, user_id)
    JOIN users u USING (server_id, user_id)
"""
CLIENT_ID = "SELECT client_id FROM servers WHERE server_id = $1 AND enabled"
CLIENT_IDS = """
    SELECT server_id, client_id FROM servers WHERE server_id = ANY($1::text[]) AND enabled
"""
PASSWORD_HASH = "SELECT password_hash FROM servers WHERE server_id = $1 AND enabled"
#: Set (or, with NULL, clear) a guild's password hash; it is passworded exactly when it has one.
SET_PASSWORD_HASH = """
    UPDATE servers SET password_hash = $2::text, passworded = $2::text IS NOT NULL
    WHERE server_id = $1
"""
MESSAGES = """
    SELECT message_id, server_id, user_id, message, channel
    FROM messages WHERE message_id = ANY($1::bigint[]) ORDER BY message_id
"""
LAST_MESSAGE_ID = "SELECT coalesce(max(message_id), 0) FROM messages"
#: How many messages after id $1 are more than $2 seconds old: too old to replay.
MESSAGES_TOO_OLD = """
    SELECT count(*) FROM messages
    WHERE message_id > $1 AND created_at <= now() - make_interval(secs => $2)
"""
#: How many messages have an id above $1 and below $2 and are at most $3 seconds old.
MESSAGES_BETWEEN = """
    SELECT count(*) FROM messages
    WHERE message_id > $1 AND message_id < $2 AND created_at > now() - make_interval(secs => $3)
"""
#: Messages after id $1 and at most $2 seconds old, newest first, at most $3 of them.
MESSAGES_AFTER = """
    SELECT message_id, server_id, user_id, message, channel
    FROM messages
    WHERE message_id > $1 AND created_at > now() - make_interval(secs => $2)
    ORDER BY message_id DESC LIMIT $3
"""


def server_record(row: Any) -> dict[str, Any]:
    """A ``servers`` row as a ``get_server_data`` record (disabled rows never get here)."""
    return {
        "id": row["server_id"],
        "name": row["name"],
        "passworded": row["passworded"],
        "is_default": row["is_default"],
        "access_version": row["access_version"],
    }


def user_record(row: Any) -> dict[str, Any]:
    """A ``users`` row as a ``get_user_data`` record."""
    return {
        "uid": row["user_id"],
        "username": row["username"],
        "status": row["status"],
        "roleColor": row["role_color"] or False,
    }


def presence(row: Any) -> Presence:
    """A member as it is now: the client draws or updates the character from this."""
    return Presence(
        server_id=row["server_id"],
        uid=row["user_id"],
        status=row["status"],
        username=row["username"],
        role_color=row["role_color"] or False,
    )


#: The ``Message.source`` of this plugin's chat: its positions are ``message_id``s.
CHAT_SOURCE = "dback-postgres"


def message(row: Any) -> Message:
    """A chat row as an event that carries its id, so each process shows it once and a bus
    can hand the next publisher the id to resume after."""
    return Message(
        server_id=row["server_id"],
        uid=row["user_id"],
        message=row["message"],
        channel=row["channel"],
        source=CHAT_SOURCE,
        position=row["message_id"],
    )
