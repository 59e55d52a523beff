"""The timeline's data access: every query and every transaction lives here.

Writes that others must learn about add their event to the outbox in the same
transaction, so an event exists exactly when its write does.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from murmur_core.nats import inject_trace_context
from murmur_timeline import events
from murmur_timeline.events import PendingEvent
from murmur_timeline.storage.database import Connection, Database, Row
from murmur_timeline.storage.migrations import migrate
from murmur_timeline.storage.models import (
    AlreadyExists,
    Audience,
    NotFound,
    OutboxEvent,
    PermissionDenied,
    Post,
    Tombstone,
    User,
)

POST_COLUMNS = "id, author_id, audience, ciphertext, key_id, created_at, expires_at, reply_to"
# A post is live until deleted (row gone) or past expires_at ($n is "now").
LIVE = "(expires_at IS NULL OR expires_at > ${n})"


def now_ms() -> int:
    return int(time.time() * 1000)


def _post(row: Row) -> Post:
    return Post(
        id=row[0],
        author_id=row[1],
        audience=Audience(row[2]),
        ciphertext=bytes(row[3]),
        key_id=row[4],
        created_at=int(row[5]),
        expires_at=None if row[6] is None else int(row[6]),
        reply_to=row[7],
    )


def _user(row: Row) -> User:
    return User(id=row[0], handle=row[1], public_key=bytes(row[2]), created_at=int(row[3]))


class _Outbox:
    """Adds events to the outbox inside the current write transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.written = 0

    async def add(self, event: PendingEvent, created_at: int) -> None:
        # The writer's trace context goes with the event, so the relay's publish
        # and every consumer join the trace of the request that caused it.
        await self._conn.execute(
            "INSERT INTO outbox (event_id, subject, payload, trace_headers, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            event.event_id,
            event.subject,
            event.payload,
            json.dumps(inject_trace_context()),
            created_at,
        )
        self.written += 1


class TimelineStore:
    def __init__(self, db: Database, *, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.clock = clock  # ms; what created_at and sent_at are measured by
        # Called after a commit that added outbox rows (the relay wakes on it).
        self.on_outbox_commit: Callable[[], None] | None = None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[Connection, _Outbox]]:
        async with self.db.transaction() as conn:
            outbox = _Outbox(conn)
            yield conn, outbox
        if outbox.written and self.on_outbox_commit is not None:
            self.on_outbox_commit()

    async def migrate(self) -> int:
        return await migrate(self.db)

    # Users

    async def create_user(self, user_id: str, handle: str, public_key: bytes) -> tuple[User, bool]:
        user = User(user_id, handle, public_key, self.clock())
        async with self._write() as (conn, outbox):
            inserted = await conn.fetchrow(
                "INSERT INTO users (id, handle, public_key, created_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING RETURNING id",
                user.id,
                user.handle,
                user.public_key,
                user.created_at,
            )
            if inserted is not None:
                await outbox.add(events.user_created(user), user.created_at)
                return user, True
            row = await conn.fetchrow(
                "SELECT id, handle, public_key, created_at FROM users WHERE id = $1", user_id
            )
        if row is None:
            raise AlreadyExists(f"handle {handle!r} is taken")
        existing = _user(row)
        if existing.handle != handle or existing.public_key != public_key:
            raise AlreadyExists(f"user {user_id} exists with another handle or key")
        return existing, False

    async def get_user(self, user_id: str) -> User:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT id, handle, public_key, created_at FROM users WHERE id = $1", user_id
            )
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return _user(row)

    async def _require_users(self, conn: Connection, user_ids: Sequence[str]) -> None:
        for user_id in dict.fromkeys(user_ids):
            if await conn.fetchrow("SELECT 1 FROM users WHERE id = $1", user_id) is None:
                raise NotFound(f"user {user_id} not found")

    # Follows

    async def follow(self, follower_id: str, followee_id: str) -> bool:
        now = self.clock()
        async with self._write() as (conn, outbox):
            await self._require_users(conn, [follower_id, followee_id])
            inserted = await conn.fetchrow(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING follower_id",
                follower_id,
                followee_id,
                now,
            )
            if inserted is None:
                return False
            await conn.execute(
                "UPDATE users SET follower_count = follower_count + 1 WHERE id = $1", followee_id
            )
            event = events.follow_changed(follower_id, followee_id, created=True, now_ms=now)
            await outbox.add(event, now)
            return True

    async def unfollow(self, follower_id: str, followee_id: str) -> bool:
        now = self.clock()
        async with self._write() as (conn, outbox):
            await self._require_users(conn, [follower_id, followee_id])
            removed = await conn.fetchrow(
                "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2"
                " RETURNING follower_id",
                follower_id,
                followee_id,
            )
            if removed is None:
                return False
            await conn.execute(
                "UPDATE users SET follower_count = follower_count - 1 WHERE id = $1", followee_id
            )
            event = events.follow_changed(follower_id, followee_id, created=False, now_ms=now)
            await outbox.add(event, now)
            return True

    async def list_followers(self, user_id: str, limit: int, after: str | None) -> list[str]:
        async with self.db.read() as conn:
            await self._require_users(conn, [user_id])
            rows = await conn.fetch(
                "SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id > $2"
                " ORDER BY follower_id LIMIT $3",
                user_id,
                after or "",
                limit,
            )
        return [row[0] for row in rows]

    async def follower_pages(self, user_id: str, page_size: int) -> AsyncIterator[list[str]]:
        """Every follower of the user, a page (one query) at a time."""
        after = None
        while True:
            page = await self.list_followers(user_id, page_size, after)
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1]

    async def fanout_mode(self, user_id: str) -> tuple[int, bool]:
        """The user's follower count, and whether their posts are recorded as
        pulled (merged on read) rather than pushed."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT follower_count, fanout_pull FROM users WHERE id = $1", user_id
            )
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return int(row[0]), bool(row[1])

    async def fanout_modes(self, user_ids: Sequence[str]) -> dict[str, tuple[int, bool]]:
        """``fanout_mode`` of several users in one query; unknown ones are absent."""
        if not user_ids:
            return {}
        placeholders = ", ".join(f"${i}" for i in range(1, len(user_ids) + 1))
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT id, follower_count, fanout_pull FROM users WHERE id IN ({placeholders})",
                *user_ids,
            )
        return {row[0]: (int(row[1]), bool(row[2])) for row in rows}

    async def followers_of(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every follower of each of these users, in one query: for authors
        known to have few (their follower count), where paging would cost a
        query per author. Users with none are absent."""
        if not user_ids:
            return {}
        placeholders = ", ".join(f"${i}" for i in range(1, len(user_ids) + 1))
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT followee_id, follower_id FROM follows"
                f" WHERE followee_id IN ({placeholders})",
                *user_ids,
            )
        followers: dict[str, list[str]] = {}
        for row in rows:
            followers.setdefault(row[0], []).append(row[1])
        return followers

    async def followees(self, user_id: str, limit: int) -> list[str]:
        """Up to ``limit`` users ``user_id`` follows, by id."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT followee_id FROM follows WHERE follower_id = $1"
                " ORDER BY followee_id LIMIT $2",
                user_id,
                limit,
            )
        return [row[0] for row in rows]

    async def set_pull_mode(self, author_id: str, pull: bool) -> bool:
        """Record whether the author's posts are pulled (merged on read) rather
        than pushed; True if this changed it."""
        async with self.db.transaction() as conn:
            changed = await conn.fetchrow(
                "UPDATE users SET fanout_pull = $1 WHERE id = $2 AND fanout_pull <> $1"
                " RETURNING id",
                1 if pull else 0,
                author_id,
            )
        return changed is not None

    async def pull_followees(self, user_id: str) -> list[str]:
        """Whom ``user_id`` follows whose posts are merged on read."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT u.id FROM follows f JOIN users u ON u.id = f.followee_id"
                " WHERE f.follower_id = $1 AND u.fanout_pull = 1 ORDER BY u.id",
                user_id,
            )
        return [row[0] for row in rows]

    async def large_followees(self, user_id: str, threshold: int) -> list[str]:
        """Whom ``user_id`` follows that have more than ``threshold`` followers
        (their posts are merged into feeds at read time, not pushed)."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT u.id FROM follows f JOIN users u ON u.id = f.followee_id"
                " WHERE f.follower_id = $1 AND u.follower_count > $2 ORDER BY u.id",
                user_id,
                threshold,
            )
        return [row[0] for row in rows]

    async def _follows(self, conn: Connection, follower_id: str, followee_id: str) -> bool:
        row = await conn.fetchrow(
            "SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2",
            follower_id,
            followee_id,
        )
        return row is not None

    # Posts

    async def create_post(self, post: Post) -> tuple[Post, bool]:
        """Store ``post`` (its created_at is replaced by now). An identical retry of
        a stored post returns it with ``False``; other content under its id conflicts."""
        post = Post(
            id=post.id,
            author_id=post.author_id,
            audience=post.audience,
            ciphertext=post.ciphertext,
            key_id=post.key_id,
            created_at=self.clock(),
            expires_at=post.expires_at,
            reply_to=post.reply_to,
        )
        async with self._write() as (conn, outbox):
            await self._require_users(conn, [post.author_id])
            if await conn.fetchrow("SELECT 1 FROM tombstones WHERE post_id = $1", post.id):
                raise AlreadyExists(f"post {post.id} was deleted; ids are never reused")
            inserted = await conn.fetchrow(
                f"INSERT INTO posts ({POST_COLUMNS}, ciphertext_sha256)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT DO NOTHING RETURNING id",
                post.id,
                post.author_id,
                int(post.audience),
                post.ciphertext,
                post.key_id,
                post.created_at,
                post.expires_at,
                post.reply_to,
                hashlib.sha256(post.ciphertext).digest(),
            )
            if inserted is not None:
                await outbox.add(events.post_created(post), post.created_at)
                return post, True
            row = await conn.fetchrow(f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1", post.id)
        if row is None:  # deleted between our insert and read: the id is spent
            raise AlreadyExists(f"post {post.id} was deleted; ids are never reused")
        stored = _post(row)
        if not stored.same_content(post):
            raise AlreadyExists(f"post {post.id} exists with other content")
        return stored, False

    async def get_post(self, post_id: str, viewer_id: str) -> Post:
        """The post if ``viewer_id`` may see it; NotFound otherwise, so that a
        followers-only post's existence is not revealed to others."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {POST_COLUMNS} FROM posts WHERE id = $1 AND {LIVE.format(n=2)}",
                post_id,
                self.clock(),
            )
            if row is None:
                raise NotFound(f"post {post_id} not found")
            post = _post(row)
            if (
                post.audience == Audience.FOLLOWERS
                and viewer_id != post.author_id
                and not await self._follows(conn, viewer_id, post.author_id)
            ):
                raise NotFound(f"post {post_id} not found")
        return post

    async def get_ciphertext(self, sha256: bytes) -> tuple[str, bytes, int | None]:
        """A live post's ciphertext by its content address, with the post's id
        and expiry (epoch ms, as stored).
        Knowing the address is the capability: it is only ever handed to those
        who could read the post, and the bytes are sealed."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT id, ciphertext, expires_at FROM posts WHERE ciphertext_sha256 = $1"
                f" AND {LIVE.format(n=2)} LIMIT 1",
                sha256,
                self.clock(),
            )
        if row is None:
            raise NotFound("no live post has this ciphertext")
        expires_at = None if row[2] is None else int(row[2])
        return str(row[0]), bytes(row[1]), expires_at

    async def delete_post(
        self, post_id: str, viewer_id: str, *, reason: str = "author"
    ) -> Tombstone:
        """Replace the post by a tombstone. Deleting an already deleted post of
        one's own answers its tombstone again, so retries are harmless."""
        now = self.clock()
        async with self._write() as (conn, outbox):
            row = await conn.fetchrow("SELECT author_id FROM posts WHERE id = $1", post_id)
            if row is None:
                gone = await conn.fetchrow(
                    "SELECT post_id, author_id, deleted_at, reason FROM tombstones"
                    " WHERE post_id = $1",
                    post_id,
                )
                if gone is not None and gone[1] == viewer_id:
                    return Tombstone(gone[0], gone[1], int(gone[2]), gone[3])
                raise NotFound(f"post {post_id} not found")
            if row[0] != viewer_id:
                raise PermissionDenied("only the author may delete a post")
            tombstone = Tombstone(post_id, row[0], now, reason)
            await conn.execute("DELETE FROM posts WHERE id = $1", post_id)
            await conn.execute(
                "INSERT INTO tombstones (post_id, author_id, deleted_at, reason)"
                " VALUES ($1, $2, $3, $4)",
                tombstone.post_id,
                tombstone.author_id,
                tombstone.deleted_at,
                tombstone.reason,
            )
            await outbox.add(events.post_deleted(tombstone), now)
        return tombstone

    async def home_timeline(self, viewer_id: str, limit: int, before: str | None) -> list[Post]:
        """Posts of the viewer and of everyone they follow, newest first. Following
        an author admits their followers-only posts, so no audience filter applies."""
        async with self.db.read() as conn:
            await self._require_users(conn, [viewer_id])
            rows = await conn.fetch(
                f"SELECT {POST_COLUMNS} FROM posts WHERE author_id IN ("
                "  SELECT followee_id FROM follows WHERE follower_id = $1 UNION SELECT $1"
                f") AND id < $2 AND {LIVE.format(n=3)} ORDER BY id DESC LIMIT $4",
                viewer_id,
                before or "~",
                self.clock(),
                limit,
            )
        return [_post(row) for row in rows]

    async def batch_get_posts(self, post_ids: Sequence[str], viewer_id: str) -> list[Post]:
        """The live posts among ``post_ids`` that ``viewer_id`` may see, newest first."""
        if not post_ids:
            return []
        placeholders = ", ".join(f"${i}" for i in range(2, len(post_ids) + 2))
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT {POST_COLUMNS} FROM posts WHERE {LIVE.format(n=1)}"
                f" AND id IN ({placeholders}) ORDER BY id DESC",
                self.clock(),
                *post_ids,
            )
            posts = [_post(row) for row in rows]
            restricted = {
                p.author_id
                for p in posts
                if p.audience == Audience.FOLLOWERS and p.author_id != viewer_id
            }
            followed = {a for a in restricted if await self._follows(conn, viewer_id, a)}
        return [
            p
            for p in posts
            if p.audience != Audience.FOLLOWERS
            or p.author_id == viewer_id
            or p.author_id in followed
        ]

    async def user_timeline(
        self, author_id: str, viewer_id: str, limit: int, before: str | None
    ) -> tuple[list[Post], bool]:
        """The author's posts as the viewer may see them, and whether that view
        includes followers-only posts."""
        async with self.db.read() as conn:
            await self._require_users(conn, [author_id])
            sees_all = viewer_id == author_id or await self._follows(conn, viewer_id, author_id)
            audiences = (1, 2) if sees_all else (1, 1)
            rows = await conn.fetch(
                f"SELECT {POST_COLUMNS} FROM posts WHERE author_id = $1 AND id < $2"
                f" AND audience IN ($3, $4) AND {LIVE.format(n=5)} ORDER BY id DESC LIMIT $6",
                author_id,
                before or "~",
                *audiences,
                self.clock(),
                limit,
            )
        return [_post(row) for row in rows], sees_all

    # Cleanup

    async def expire_posts(self, limit: int) -> list[Tombstone]:
        """Turn up to ``limit`` posts past their ``expires_at`` into tombstones,
        each with its post.deleted event (reason "expired")."""
        now = self.clock()
        expired: list[Tombstone] = []
        async with self._write() as (conn, outbox):
            rows = await conn.fetch(
                "SELECT id, author_id FROM posts WHERE expires_at IS NOT NULL"
                " AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                now,
                limit,
            )
            for post_id, author_id in rows:
                tombstone = Tombstone(post_id, author_id, now, "expired")
                await conn.execute("DELETE FROM posts WHERE id = $1", post_id)
                await conn.execute(
                    "INSERT INTO tombstones (post_id, author_id, deleted_at, reason)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    post_id,
                    author_id,
                    now,
                    "expired",
                )
                await outbox.add(events.post_deleted(tombstone), now)
                expired.append(tombstone)
        return expired

    async def prune_outbox(self, sent_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` outbox rows sent before the given time."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT seq FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1"
                " ORDER BY sent_at LIMIT $2",
                sent_before_ms,
                limit,
            )
            if not rows:
                return 0
            seqs = [int(r[0]) for r in rows]
            placeholders = ", ".join(f"${i}" for i in range(1, len(seqs) + 1))
            await conn.execute(f"DELETE FROM outbox WHERE seq IN ({placeholders})", *seqs)
        return len(seqs)

    # Outbox

    async def unsent_outbox(self, limit: int) -> list[OutboxEvent]:
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT seq, event_id, subject, payload, trace_headers, created_at FROM outbox"
                " WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
                limit,
            )
        return [
            OutboxEvent(int(r[0]), r[1], r[2], bytes(r[3]), json.loads(r[4]), int(r[5]))
            for r in rows
        ]

    async def mark_outbox_sent(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        # Exact seqs, never a range: with PostgreSQL a lower seq can commit later.
        placeholders = ", ".join(f"${i}" for i in range(2, len(seqs) + 2))
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE outbox SET sent_at = $1 WHERE seq IN ({placeholders})",
                self.clock(),
                *seqs,
            )
