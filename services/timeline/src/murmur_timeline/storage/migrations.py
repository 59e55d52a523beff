"""Schema migrations, applied in order at start-up inside one transaction each.

The SQL is shared by both databases; the few type names that differ are
written as ``{placeholders}`` and filled per dialect. Append new migrations;
never edit an applied one.
"""

from __future__ import annotations

import time

from murmur_timeline.storage.database import Database, Dialect

TYPES: dict[Dialect, dict[str, str]] = {
    # Ids compare bytewise on both, so keyset pages order the same everywhere.
    "sqlite": {"id": "TEXT", "blob": "BLOB", "serial_pk": "INTEGER PRIMARY KEY"},
    "postgresql": {
        "id": 'TEXT COLLATE "C"',
        "blob": "BYTEA",
        "serial_pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    },
}

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE users (
            id {id} PRIMARY KEY,
            handle TEXT NOT NULL UNIQUE,
            public_key {blob} NOT NULL,
            created_at BIGINT NOT NULL
        )""",
        """CREATE TABLE follows (
            follower_id {id} NOT NULL REFERENCES users (id),
            followee_id {id} NOT NULL REFERENCES users (id),
            created_at BIGINT NOT NULL,
            PRIMARY KEY (follower_id, followee_id)
        )""",
        "CREATE INDEX follows_by_followee ON follows (followee_id, follower_id)",
        """CREATE TABLE posts (
            id {id} PRIMARY KEY,
            author_id {id} NOT NULL REFERENCES users (id),
            audience SMALLINT NOT NULL,
            ciphertext {blob} NOT NULL,
            key_id TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            reply_to TEXT
        )""",
        "CREATE INDEX posts_by_author ON posts (author_id, id)",
        "CREATE INDEX posts_expiring ON posts (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE tombstones (
            post_id {id} PRIMARY KEY,
            author_id {id} NOT NULL,
            deleted_at BIGINT NOT NULL,
            reason TEXT NOT NULL
        )""",
        """CREATE TABLE outbox (
            seq {serial_pk},
            event_id TEXT NOT NULL UNIQUE,
            subject TEXT NOT NULL,
            payload {blob} NOT NULL,
            trace_headers TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            sent_at BIGINT
        )""",
        "CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
    ],
    [
        # Kept in the follow transaction: the fan-out pipeline decides push or
        # pull by it, and read paths find a reader's large followees by it.
        "ALTER TABLE users ADD COLUMN follower_count BIGINT NOT NULL DEFAULT 0",
        "UPDATE users SET follower_count ="
        " (SELECT COUNT(*) FROM follows WHERE follows.followee_id = users.id)",
        "CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL",
    ],
    [
        # Set by the fan-out pipeline for authors it no longer pushes (too many
        # followers): readers' pages merge their posts when read instead.
        "ALTER TABLE users ADD COLUMN fanout_pull SMALLINT NOT NULL DEFAULT 0",
    ],
    [
        # The ciphertext's content address: the gateway serves large ones at
        # /v1/blobs/<sha256> instead of inlining them in lists. Posts stored
        # before this migration have none and are served inline only.
        "ALTER TABLE posts ADD COLUMN ciphertext_sha256 {blob}",
        "CREATE INDEX posts_by_ciphertext ON posts (ciphertext_sha256)"
        " WHERE ciphertext_sha256 IS NOT NULL",
    ],
]


async def migrate(db: Database) -> int:
    """Apply what is missing; returns the schema version now in place."""
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            # Instances starting together must not race to create the same tables.
            await conn.execute("SELECT pg_advisory_xact_lock(7061001)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        row = await conn.fetchrow("SELECT MAX(version) FROM schema_migrations")
        current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement.format(**TYPES[db.dialect]))
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                version,
                int(time.time() * 1000),
            )
            current = version
    return current
