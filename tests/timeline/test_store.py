"""The storage contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from murmur.events.v1 import events_pb2
from murmur_core.ids import new_uuid7
from murmur_timeline.storage import (
    AlreadyExists,
    Audience,
    NotFound,
    PermissionDenied,
    Post,
    TimelineStore,
)


def make_post(author: str, body: bytes = b"\x01sealed", **fields: object) -> Post:
    values: dict[str, object] = {
        "id": new_uuid7(),
        "author_id": author,
        "audience": Audience.PUBLIC,
        "ciphertext": body,
        "key_id": "k1",
        "created_at": 0,
        "expires_at": None,
        "reply_to": None,
    }
    values.update(fields)
    return Post(**values)  # type: ignore[arg-type]


async def users(store: TimelineStore, *names: str) -> None:
    for name in names:
        await store.create_user(name, name, f"key-{name}".encode())


async def outbox_kinds(store: TimelineStore) -> list[str]:
    return [e.subject.removeprefix("murmur.events.") for e in await store.unsent_outbox(1000)]


async def test_user_creation_is_idempotent_and_conflicts_are_refused(store: TimelineStore) -> None:
    user, created = await store.create_user("alice", "alice", b"pk")
    assert created and user.public_key == b"pk"
    again, created_again = await store.create_user("alice", "alice", b"pk")
    assert (again, created_again) == (user, False)
    with pytest.raises(AlreadyExists, match="another handle or key"):
        await store.create_user("alice", "alice", b"other")
    with pytest.raises(AlreadyExists, match="taken"):
        await store.create_user("mallory", "alice", b"pk")
    assert await store.get_user("alice") == user
    with pytest.raises(NotFound):
        await store.get_user("mallory")
    assert await outbox_kinds(store) == ["user.created"]


async def test_follow_and_unfollow_report_changes_once(store: TimelineStore) -> None:
    await users(store, "alice", "bob")
    assert await store.follow("bob", "alice") is True
    assert await store.follow("bob", "alice") is False
    assert await store.list_followers("alice", 10, None) == ["bob"]
    assert await store.unfollow("bob", "alice") is True
    assert await store.unfollow("bob", "alice") is False
    assert await store.list_followers("alice", 10, None) == []
    with pytest.raises(NotFound):
        await store.follow("bob", "nobody")
    kinds = await outbox_kinds(store)
    assert kinds.count("follow.created") == 1 and kinds.count("follow.deleted") == 1


async def test_followers_page_by_keyset(store: TimelineStore) -> None:
    names = [f"u{i:02d}" for i in range(7)]
    await users(store, "star", *names)
    for name in names:
        await store.follow(name, "star")
    seen: list[str] = []
    after = None
    while page := await store.list_followers("star", 3, after):
        seen += page
        after = page[-1]
    assert seen == names


async def test_post_create_is_idempotent_on_id_and_content(store: TimelineStore) -> None:
    await users(store, "alice")
    post = make_post("alice", b"\x00\xffbytes")
    stored, created = await store.create_post(post)
    assert created and stored.ciphertext == b"\x00\xffbytes" and stored.created_at > 0
    retried, created_again = await store.create_post(post)
    assert retried == stored and created_again is False
    with pytest.raises(AlreadyExists, match="other content"):
        await store.create_post(make_post("alice", b"different", id=post.id))
    assert (await store.get_post(post.id, "alice")).ciphertext == b"\x00\xffbytes"
    assert (await outbox_kinds(store)).count("post.created") == 1


async def test_concurrent_creates_of_one_id_store_one_post_and_one_event(
    store: TimelineStore,
) -> None:
    await users(store, "alice")
    post = make_post("alice")
    results = await asyncio.gather(*(store.create_post(post) for _ in range(10)))
    assert sum(created for _, created in results) == 1
    assert (await outbox_kinds(store)).count("post.created") == 1


async def test_post_by_unknown_author_writes_nothing(store: TimelineStore) -> None:
    with pytest.raises(NotFound):
        await store.create_post(make_post("ghost"))
    assert await outbox_kinds(store) == []


async def test_followers_audience_is_enforced(store: TimelineStore) -> None:
    await users(store, "alice", "bob", "carol")
    await store.follow("bob", "alice")
    private = make_post("alice", audience=Audience.FOLLOWERS)
    public = make_post("alice")
    await store.create_post(private)
    await store.create_post(public)
    assert (await store.get_post(private.id, "bob")).id == private.id
    assert (await store.get_post(private.id, "alice")).id == private.id
    with pytest.raises(NotFound):
        await store.get_post(private.id, "carol")
    assert (await store.get_post(public.id, "carol")).id == public.id
    stranger_view, stranger_full = await store.user_timeline("alice", "carol", 10, None)
    assert [p.id for p in stranger_view] == [public.id]
    assert stranger_full is False
    follower_view, follower_full = await store.user_timeline("alice", "bob", 10, None)
    assert [p.id for p in follower_view] == [public.id, private.id]
    assert follower_full is True
    both = [private.id, public.id, "missing"]
    assert [p.id for p in await store.batch_get_posts(both, "carol")] == [public.id]
    assert [p.id for p in await store.batch_get_posts(both, "bob")] == [public.id, private.id]
    assert [p.id for p in await store.batch_get_posts(both, "alice")] == [public.id, private.id]
    assert [p.id for p in await store.home_timeline("carol", 10, None)] == []


async def test_home_timeline_is_newest_first_and_pages_without_gaps(store: TimelineStore) -> None:
    await users(store, "alice", "bob", "carol", "dave")
    await store.follow("bob", "alice")
    await store.follow("bob", "carol")
    expected = []
    for i in range(9):
        author = ["alice", "carol", "bob"][i % 3]
        post = make_post(author)
        await store.create_post(post)
        expected.append(post.id)
        await store.create_post(make_post("dave"))  # not followed: never shown
        await asyncio.sleep(0.002)  # distinct millisecond ids
    pages: list[list[str]] = []
    before = None
    while page := await store.home_timeline("bob", 4, before):
        pages.append([p.id for p in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [post_id for page in pages for post_id in page] == sorted(expected, reverse=True)


async def test_delete_is_author_only_idempotent_and_final(store: TimelineStore) -> None:
    await users(store, "alice", "bob")
    await store.follow("bob", "alice")
    post = make_post("alice")
    await store.create_post(post)
    with pytest.raises(PermissionDenied):
        await store.delete_post(post.id, "bob")
    tombstone = await store.delete_post(post.id, "alice")
    assert tombstone.reason == "author"
    assert await store.delete_post(post.id, "alice") == tombstone
    with pytest.raises(NotFound):
        await store.delete_post(post.id, "bob")
    with pytest.raises(NotFound):
        await store.get_post(post.id, "alice")
    assert await store.home_timeline("bob", 10, None) == []
    with pytest.raises(AlreadyExists, match="deleted"):
        await store.create_post(post)
    assert (await outbox_kinds(store)).count("post.deleted") == 1


async def test_expired_posts_are_hidden(store: TimelineStore) -> None:
    await users(store, "alice")
    soon = int(time.time() * 1000) + 150
    post = make_post("alice", expires_at=soon)
    await store.create_post(post)
    assert (await store.get_post(post.id, "alice")).expires_at == soon
    await asyncio.sleep(0.3)
    with pytest.raises(NotFound):
        await store.get_post(post.id, "alice")
    assert await store.user_timeline("alice", "alice", 10, None) == ([], True)
    assert await store.batch_get_posts([post.id], "alice") == []


async def test_outbox_holds_one_decodable_event_per_write_until_marked(
    store: TimelineStore,
) -> None:
    await users(store, "alice")
    post = make_post("alice", b"secret-ciphertext")
    await store.create_post(post)
    pending = await store.unsent_outbox(10)
    assert [e.subject for e in pending] == [
        "murmur.events.user.created",
        "murmur.events.post.created",
    ]
    event = events_pb2.Event.FromString(pending[1].payload)
    assert event.event_id == pending[1].event_id
    assert event.post_created.post_id == post.id
    assert event.post_created.ciphertext_size == len(b"secret-ciphertext")
    assert b"secret-ciphertext" not in pending[1].payload  # events carry no body
    await store.mark_outbox_sent([pending[0].seq])
    assert [e.seq for e in await store.unsent_outbox(10)] == [pending[1].seq]


async def test_write_callback_fires_only_after_commits_with_events(store: TimelineStore) -> None:
    commits: list[int] = []
    store.on_outbox_commit = lambda: commits.append(1)
    await users(store, "alice", "bob")
    await store.follow("bob", "alice")
    await store.follow("bob", "alice")  # no change, no event
    with pytest.raises(NotFound):
        await store.follow("bob", "nobody")
    assert len(commits) == 3


async def test_follower_counts_follow_the_follows(store: TimelineStore) -> None:
    await users(store, "star", "a", "b", "c")
    for fan in ("a", "b", "c"):
        await store.follow(fan, "star")
    await store.follow("a", "star")  # no change
    await store.follow("a", "b")
    await store.unfollow("c", "star")
    assert await store.fanout_mode("star") == (2, False)
    assert await store.fanout_mode("b") == (1, False)
    assert await store.large_followees("a", 1) == ["star"]
    assert await store.large_followees("a", 0) == ["b", "star"]
    assert await store.set_pull_mode("star", True)
    assert not await store.set_pull_mode("star", True)  # already so
    assert await store.fanout_mode("star") == (2, True)
    with pytest.raises(NotFound):
        await store.fanout_mode("nobody")


async def test_expired_posts_become_tombstones_with_events(store: TimelineStore) -> None:
    await users(store, "alice")
    soon = int(time.time() * 1000) + 100
    short = make_post("alice", expires_at=soon)
    lasting = make_post("alice")
    await store.create_post(short)
    await store.create_post(lasting)
    assert await store.expire_posts(10) == []
    await asyncio.sleep(0.2)
    [gone] = await store.expire_posts(10)
    assert (gone.post_id, gone.reason) == (short.id, "expired")
    assert await store.expire_posts(10) == []
    with pytest.raises(AlreadyExists):
        await store.create_post(short)
    assert [p.id for p in (await store.user_timeline("alice", "alice", 10, None))[0]] == [
        lasting.id
    ]
    deleted = [
        events_pb2.Event.FromString(e.payload).post_deleted
        for e in await store.unsent_outbox(100)
        if e.subject.endswith("post.deleted")
    ]
    assert [(d.post_id, d.reason) for d in deleted] == [(short.id, "expired")]


async def test_sent_outbox_rows_are_pruned_in_bounded_batches(store: TimelineStore) -> None:
    await users(store, "a", "b", "c")
    pending = await store.unsent_outbox(10)
    await store.mark_outbox_sent([e.seq for e in pending[:2]])
    later = int(time.time() * 1000) + 1000
    assert await store.prune_outbox(later, 1) == 1
    assert await store.prune_outbox(later, 10) == 1
    assert await store.prune_outbox(later, 10) == 0
    assert [e.seq for e in await store.unsent_outbox(10)] == [pending[2].seq]
