"""The database schema as an ordered list of versioned migrations.

Version 1 creates exactly the tables and columns of d-back's provider guide, so its
``DatabaseProvider`` example runs unchanged; later versions add what live updates need.
Each migration runs in its own transaction together with the row that records it in
``dback_schema_version``, under an advisory lock, so running ``dback postgres migrate`` twice
(or from two machines at once) applies every step exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The channel the triggers notify and the plugin listens on.
CHANNEL = "dback_changes"

#: Any constant will do; it keeps two concurrent ``migrate`` runs from interleaving.
_LOCK_KEY = 0x64626163_6B5F7067


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "servers and users tables as in d-back's provider guide",
        """
        CREATE TABLE IF NOT EXISTS servers (
            server_id  TEXT PRIMARY KEY,
            name       TEXT NOT NULL,
            passworded BOOLEAN NOT NULL DEFAULT FALSE,
            is_default BOOLEAN NOT NULL DEFAULT FALSE,
            enabled    BOOLEAN NOT NULL DEFAULT TRUE
        );
        CREATE TABLE IF NOT EXISTS users (
            user_id    TEXT NOT NULL,
            server_id  TEXT NOT NULL,
            username   TEXT NOT NULL,
            status     TEXT NOT NULL DEFAULT 'offline',
            role_color TEXT,
            PRIMARY KEY (server_id, user_id)
        );
        """,
    ),
    Migration(
        2,
        "constraints: members belong to a listed guild, valid statuses and colours, short ids",
        """
        ALTER TABLE users
            ADD CONSTRAINT users_server_fk FOREIGN KEY (server_id)
                REFERENCES servers (server_id) ON DELETE CASCADE ON UPDATE CASCADE,
            ADD CONSTRAINT users_status_check
                CHECK (status IN ('online', 'idle', 'dnd', 'offline')),
            ADD CONSTRAINT users_role_color_check
                CHECK (role_color IS NULL OR role_color ~ '^#[0-9A-Fa-f]{6}$'),
            ADD CONSTRAINT users_user_id_length CHECK (length(user_id) BETWEEN 1 AND 64);
        ALTER TABLE servers
            ADD CONSTRAINT servers_server_id_length CHECK (length(server_id) BETWEEN 1 AND 64);
        CREATE INDEX IF NOT EXISTS servers_enabled_idx ON servers (server_id) WHERE enabled;
        """,
    ),
    Migration(
        3,
        "servers.client_id: the Discord OAuth client id sent to clients on join",
        """
        ALTER TABLE servers ADD COLUMN IF NOT EXISTS client_id TEXT;
        """,
    ),
    Migration(
        4,
        "messages table: rows inserted here appear as speech bubbles",
        """
        CREATE TABLE IF NOT EXISTS messages (
            message_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            server_id  TEXT NOT NULL,
            user_id    TEXT NOT NULL,
            message    TEXT NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
            channel    TEXT NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            FOREIGN KEY (server_id, user_id)
                REFERENCES users (server_id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
        );
        CREATE INDEX IF NOT EXISTS messages_created_at_idx ON messages (created_at);
        """,
    ),
    Migration(
        5,
        "triggers that NOTIFY " + CHANNEL + " with the keys of every changed row",
        """
        CREATE OR REPLACE FUNCTION dback_notify_users() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('dback_changes', json_build_object(
                    'table', 'users', 'op', TG_OP,
                    'server_id', OLD.server_id, 'user_id', OLD.user_id)::text);
                RETURN OLD;
            END IF;
            IF TG_OP = 'UPDATE' AND (OLD.server_id, OLD.user_id)
                    IS DISTINCT FROM (NEW.server_id, NEW.user_id) THEN
                PERFORM pg_notify('dback_changes', json_build_object(
                    'table', 'users', 'op', 'DELETE',
                    'server_id', OLD.server_id, 'user_id', OLD.user_id)::text);
            END IF;
            PERFORM pg_notify('dback_changes', json_build_object(
                'table', 'users', 'op', TG_OP,
                'server_id', NEW.server_id, 'user_id', NEW.user_id)::text);
            RETURN NEW;
        END $$;

        CREATE OR REPLACE FUNCTION dback_notify_servers() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            row_id TEXT := CASE WHEN TG_OP = 'DELETE' THEN OLD.server_id ELSE NEW.server_id END;
            client_id_changed BOOLEAN := TG_OP = 'UPDATE'
                AND OLD.client_id IS DISTINCT FROM NEW.client_id;
        BEGIN
            PERFORM pg_notify('dback_changes', json_build_object(
                'table', 'servers', 'op', TG_OP, 'server_id', row_id,
                'client_id_changed', client_id_changed)::text);
            RETURN NULL;
        END $$;

        CREATE OR REPLACE FUNCTION dback_notify_messages() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('dback_changes', json_build_object(
                'table', 'messages', 'op', TG_OP, 'message_id', NEW.message_id)::text);
            RETURN NULL;
        END $$;

        DROP TRIGGER IF EXISTS dback_users_notify ON users;
        CREATE TRIGGER dback_users_notify AFTER INSERT OR UPDATE OR DELETE ON users
            FOR EACH ROW EXECUTE FUNCTION dback_notify_users();
        DROP TRIGGER IF EXISTS dback_servers_notify ON servers;
        CREATE TRIGGER dback_servers_notify AFTER INSERT OR UPDATE OR DELETE ON servers
            FOR EACH ROW EXECUTE FUNCTION dback_notify_servers();
        DROP TRIGGER IF EXISTS dback_messages_notify ON messages;
        CREATE TRIGGER dback_messages_notify AFTER INSERT ON messages
            FOR EACH ROW EXECUTE FUNCTION dback_notify_messages();
        """,
    ),
    Migration(
        6,
        "servers.password_hash: a scrypt hash of the guild's password, set with "
        "`dback postgres set-password`",
        """
        ALTER TABLE servers ADD COLUMN IF NOT EXISTS password_hash TEXT
            CONSTRAINT servers_password_hash_format
                CHECK (password_hash IS NULL OR password_hash LIKE 'scrypt$%');
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS dback_schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


async def current_version(connection: Any) -> int:
    """The highest applied migration, 0 for a database dback has never migrated."""
    exists = await connection.fetchval("SELECT to_regclass('dback_schema_version') IS NOT NULL")
    if not exists:
        return 0
    version: int = await connection.fetchval(
        "SELECT coalesce(max(version), 0) FROM dback_schema_version"
    )
    return version


async def migrate(connection: Any) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied (empty: up to date)."""
    applied: list[Migration] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await connection.execute(_VERSION_TABLE)
    for migration in MIGRATIONS:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            done = await connection.fetchval(
                "SELECT 1 FROM dback_schema_version WHERE version = $1", migration.version
            )
            if done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO dback_schema_version (version, description) VALUES ($1, $2)",
                migration.version,
                migration.description,
            )
        log.info("applied migration %d: %s", migration.version, migration.description)
        applied.append(migration)
    return applied
