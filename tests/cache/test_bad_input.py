"""Every RPC refuses malformed requests with INVALID_ARGUMENT, and accepts the
same requests with the bad part fixed (so the refusals are about that part)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from murmur.cache.v1 import cache_service_pb2 as cache
from murmur.timeline.v1 import resources_pb2 as res
from murmur_cache.settings import CacheSettings
from murmur_core.ids import new_uuid7

from .support import HOME, USER, Clients, create_users, fake_post

DEFAULTS = CacheSettings()
MAX_PAGE = DEFAULTS.max_page_size
MAX_BATCH = DEFAULTS.max_batch
FEED_CAP = DEFAULTS.feed_cap
MAX_ENTRY = DEFAULTS.max_entry_bytes
OWNER = "bad-input-owner"
OTHER = "bad-input-other"
POST_ID = new_uuid7()
UUID4 = "0b1e9c52-58a3-4f4c-9d0e-6f1c1c1f4a2b"
NOT_CANONICAL = POST_ID.upper()


def ref(kind: int = HOME, owner: str = OWNER) -> cache.FeedRef:
    return cache.FeedRef(kind=kind, owner_id=owner)  # type: ignore[arg-type]


def page(**fields: Any) -> cache.GetFeedPageRequest:
    base: dict[str, Any] = {"feed": ref(), "viewer_id": OWNER, "limit": 10}
    return cache.GetFeedPageRequest(**{**base, **fields})


def post(**fields: Any) -> res.Post:
    entry = fake_post(OWNER)
    for name, value in fields.items():
        setattr(entry, name, value)
    return entry


def posts_newest_first(count: int) -> list[res.Post]:
    entries = [fake_post(OWNER) for _ in range(count)]
    return sorted(entries, key=lambda p: p.id, reverse=True)


def fill(**fields: Any) -> cache.FillFeedRequest:
    base: dict[str, Any] = {"feed": ref(), "lease": "not-held", "version": 0, "posts": []}
    return cache.FillFeedRequest(**{**base, **fields})


def too_big() -> res.Post:
    # ciphertext alone at the limit: the whole entry is over it.
    return post(ciphertext=b"x" * MAX_ENTRY)


@pytest.fixture(scope="module", autouse=True)
async def users(api: Clients) -> None:
    await create_users(api.timeline, OWNER, OTHER)


BAD: list[tuple[str, str, Message]] = [
    # GetFeedPage
    ("page-kind-0", "GetFeedPage", page(feed=ref(kind=0))),
    ("page-kind-9", "GetFeedPage", page(feed=ref(kind=9))),
    ("page-no-owner", "GetFeedPage", page(feed=ref(owner=""))),
    ("page-owner-chars", "GetFeedPage", page(feed=ref(owner="a b"), viewer_id="a b")),
    ("page-owner-too-long", "GetFeedPage", page(feed=ref(owner="u" * 65), viewer_id="u" * 65)),
    ("page-no-viewer", "GetFeedPage", page(viewer_id="")),
    ("page-negative-limit", "GetFeedPage", page(limit=-1)),
    ("page-min-limit", "GetFeedPage", page(limit=-(2**31))),
    ("page-limit-over-max", "GetFeedPage", page(limit=MAX_PAGE + 1)),
    ("page-max-int-limit", "GetFeedPage", page(limit=2**31 - 1)),
    ("page-before-garbage", "GetFeedPage", page(before_id="not-a-post-id")),
    ("page-before-uuid4", "GetFeedPage", page(before_id=UUID4)),
    ("page-before-uppercase", "GetFeedPage", page(before_id=NOT_CANONICAL)),
    ("page-home-of-another", "GetFeedPage", page(viewer_id=OTHER)),
    ("page-user-kind-bad-viewer", "GetFeedPage", page(feed=ref(kind=USER), viewer_id="")),
    # GetPosts
    ("posts-none", "GetPosts", cache.GetPostsRequest(viewer_id=OWNER)),
    ("posts-empty-id", "GetPosts", cache.GetPostsRequest(post_ids=[""], viewer_id=OWNER)),
    ("posts-garbage", "GetPosts", cache.GetPostsRequest(post_ids=["p1"], viewer_id=OWNER)),
    ("posts-uuid4", "GetPosts", cache.GetPostsRequest(post_ids=[UUID4], viewer_id=OWNER)),
    (
        "posts-one-bad-of-two",
        "GetPosts",
        cache.GetPostsRequest(post_ids=[POST_ID, NOT_CANONICAL], viewer_id=OWNER),
    ),
    (
        "posts-too-many",
        "GetPosts",
        cache.GetPostsRequest(post_ids=[POST_ID] * (MAX_PAGE * 10 + 1), viewer_id=OWNER),
    ),
    ("posts-no-viewer", "GetPosts", cache.GetPostsRequest(post_ids=[POST_ID])),
    # PutPosts
    ("put-none", "PutPosts", cache.PutPostsRequest()),
    ("put-no-id", "PutPosts", cache.PutPostsRequest(posts=[post(id="")])),
    ("put-bad-id", "PutPosts", cache.PutPostsRequest(posts=[post(id=UUID4)])),
    ("put-no-author", "PutPosts", cache.PutPostsRequest(posts=[post(author_id="")])),
    ("put-bad-author", "PutPosts", cache.PutPostsRequest(posts=[post(author_id="a/b")])),
    ("put-no-audience", "PutPosts", cache.PutPostsRequest(posts=[post(audience=0)])),
    ("put-audience-9", "PutPosts", cache.PutPostsRequest(posts=[post(audience=9)])),
    ("put-no-ciphertext", "PutPosts", cache.PutPostsRequest(posts=[post(ciphertext=b"")])),
    ("put-bad-reply-to", "PutPosts", cache.PutPostsRequest(posts=[post(reply_to="p0")])),
    ("fill-bad-reply-to", "FillFeed", fill(posts=[post(reply_to=NOT_CANONICAL)])),
    ("put-oversized", "PutPosts", cache.PutPostsRequest(posts=[fake_post(OWNER), too_big()])),
    (
        "put-too-many",
        "PutPosts",
        cache.PutPostsRequest(posts=[fake_post(OWNER) for _ in range(MAX_BATCH + 1)]),
    ),
    # AcquireFeedLease
    ("lease-kind-0", "AcquireFeedLease", cache.AcquireFeedLeaseRequest(feed=ref(kind=0))),
    ("lease-kind-9", "AcquireFeedLease", cache.AcquireFeedLeaseRequest(feed=ref(kind=9))),
    ("lease-no-owner", "AcquireFeedLease", cache.AcquireFeedLeaseRequest(feed=ref(owner=""))),
    ("lease-no-feed", "AcquireFeedLease", cache.AcquireFeedLeaseRequest()),
    # FillFeed
    ("fill-kind-0", "FillFeed", fill(feed=ref(kind=0))),
    ("fill-kind-9", "FillFeed", fill(feed=ref(kind=9))),
    ("fill-no-owner", "FillFeed", fill(feed=ref(owner=""))),
    ("fill-no-lease", "FillFeed", fill(lease="")),
    ("fill-oldest-first", "FillFeed", fill(posts=posts_newest_first(3)[::-1])),
    ("fill-duplicates", "FillFeed", fill(posts=[posts_newest_first(1)[0]] * 2)),
    ("fill-bad-post", "FillFeed", fill(posts=[post(id="x")])),
    ("fill-oversized", "FillFeed", fill(posts=[too_big()])),
    ("fill-over-cap", "FillFeed", fill(posts=posts_newest_first(FEED_CAP + 1))),
    # AppendToFeeds
    (
        "append-no-owners",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(post_id=POST_ID),
    ),
    (
        "append-bad-owner",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER, ""], post_id=POST_ID),
    ),
    (
        # Joined by newlines, these two would read as three well-formed ids.
        "append-owner-with-newline",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER, "a\nb"], post_id=POST_ID),
    ),
    (
        "append-owner-with-trailing-newline",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER + "\n"], post_id=POST_ID),
    ),
    ("append-no-post-id", "AppendToFeeds", cache.AppendToFeedsRequest(owner_ids=[OWNER])),
    (
        "append-bad-post-id",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER], post_id=UUID4),
    ),
    (
        "append-entry-other-id",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER], post_id=POST_ID, post=fake_post(OWNER)),
    ),
    (
        "append-oversized-entry",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(
            owner_ids=[OWNER], post_id=POST_ID, post=post(id=POST_ID, ciphertext=b"x" * MAX_ENTRY)
        ),
    ),
    (
        "append-too-many-owners",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(
            owner_ids=[f"u{i}" for i in range(MAX_BATCH + 1)], post_id=POST_ID
        ),
    ),
    (
        "append-negative-activity-window",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(
            owner_ids=[OWNER], post_id=POST_ID, only_active_within_seconds=-1
        ),
    ),
    (
        "append-activity-window-past-retention",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(
            owner_ids=[OWNER],
            post_id=POST_ID,
            only_active_within_seconds=DEFAULTS.activity_retention_seconds + 1,
        ),
    ),
    # AppendPostsToFeeds
    ("append-posts-none", "AppendPostsToFeeds", cache.AppendPostsToFeedsRequest()),
    (
        "append-posts-no-owners",
        "AppendPostsToFeeds",
        cache.AppendPostsToFeedsRequest(appends=[cache.PostAppend(post_id=POST_ID)]),
    ),
    (
        "append-posts-bad-owner",
        "AppendPostsToFeeds",
        cache.AppendPostsToFeedsRequest(
            appends=[cache.PostAppend(post_id=POST_ID, owner_ids=[OWNER, "a b"])]
        ),
    ),
    (
        "append-posts-bad-post-id",
        "AppendPostsToFeeds",
        cache.AppendPostsToFeedsRequest(
            appends=[cache.PostAppend(post_id=UUID4, owner_ids=[OWNER])]
        ),
    ),
    (
        # Over the limit only together: the limit is on the whole call.
        "append-posts-too-many-owners",
        "AppendPostsToFeeds",
        cache.AppendPostsToFeedsRequest(
            appends=[
                cache.PostAppend(post_id=POST_ID, owner_ids=[f"u{i}" for i in range(MAX_BATCH)]),
                cache.PostAppend(post_id=POST_ID, owner_ids=[OWNER]),
            ]
        ),
    ),
    (
        "append-posts-activity-window-past-retention",
        "AppendPostsToFeeds",
        cache.AppendPostsToFeedsRequest(
            appends=[cache.PostAppend(post_id=POST_ID, owner_ids=[OWNER])],
            only_active_within_seconds=DEFAULTS.activity_retention_seconds + 1,
        ),
    ),
    # RemoveFromFeeds
    (
        "remove-no-owners",
        "RemoveFromFeeds",
        cache.RemoveFromFeedsRequest(post_ids=[POST_ID]),
    ),
    ("remove-no-posts", "RemoveFromFeeds", cache.RemoveFromFeedsRequest(owner_ids=[OWNER])),
    (
        "remove-bad-post",
        "RemoveFromFeeds",
        cache.RemoveFromFeedsRequest(owner_ids=[OWNER], post_ids=["nope"]),
    ),
    (
        "remove-too-many-posts",
        "RemoveFromFeeds",
        cache.RemoveFromFeedsRequest(owner_ids=[OWNER], post_ids=[POST_ID] * (FEED_CAP + 1)),
    ),
    (
        "remove-too-many-owners",
        "RemoveFromFeeds",
        cache.RemoveFromFeedsRequest(
            owner_ids=[f"u{i}" for i in range(MAX_BATCH + 1)], post_ids=[POST_ID]
        ),
    ),
    # Invalidate
    ("invalidate-nothing", "Invalidate", cache.InvalidateRequest()),
    ("invalidate-kind-0", "Invalidate", cache.InvalidateRequest(feeds=[ref(kind=0)])),
    ("invalidate-kind-9", "Invalidate", cache.InvalidateRequest(feeds=[ref(kind=9)])),
    ("invalidate-no-owner", "Invalidate", cache.InvalidateRequest(feeds=[ref(owner="")])),
    ("invalidate-bad-post", "Invalidate", cache.InvalidateRequest(deleted_post_ids=[UUID4])),
    ("invalidate-empty-user", "Invalidate", cache.InvalidateRequest(user_ids=[""])),
    (
        "invalidate-too-many-posts",
        "Invalidate",
        cache.InvalidateRequest(deleted_post_ids=[POST_ID] * (MAX_BATCH + 1)),
    ),
    (
        "invalidate-too-many-users",
        "Invalidate",
        cache.InvalidateRequest(user_ids=[f"u{i}" for i in range(MAX_BATCH + 1)]),
    ),
    (
        "invalidate-too-many-feeds",
        "Invalidate",
        cache.InvalidateRequest(feeds=[ref(owner=f"u{i}") for i in range(MAX_BATCH + 1)]),
    ),
    # WarmSession
    ("warm-no-user", "WarmSession", cache.WarmSessionRequest()),
    ("warm-bad-user", "WarmSession", cache.WarmSessionRequest(user_id="a.b")),
    ("warm-long-user", "WarmSession", cache.WarmSessionRequest(user_id="u" * 65)),
]


@pytest.mark.parametrize(
    ("method", "request_"), [(m, r) for _, m, r in BAD], ids=[n for n, _, _ in BAD]
)
async def test_invalid_requests_are_refused(api: Clients, method: str, request_: Message) -> None:
    call = getattr(api.cache, method)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request_, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert refused.value.details()


GOOD: list[tuple[str, str, Message]] = [
    ("page-limit-0-means-default", "GetFeedPage", page(limit=0)),
    ("page-limit-max", "GetFeedPage", page(limit=MAX_PAGE)),
    ("page-before", "GetFeedPage", page(before_id=POST_ID)),
    ("page-user-feed-other-viewer", "GetFeedPage", page(feed=ref(kind=USER), viewer_id=OTHER)),
    (
        "posts-max",
        "GetPosts",
        cache.GetPostsRequest(post_ids=[POST_ID] * (MAX_PAGE * 10), viewer_id=OWNER),
    ),
    (
        "put-entry-at-limit",
        "PutPosts",
        cache.PutPostsRequest(posts=[post(ciphertext=b"x" * (MAX_ENTRY - 200))]),
    ),
    ("put-reply", "PutPosts", cache.PutPostsRequest(posts=[post(reply_to=POST_ID)])),
    ("lease", "AcquireFeedLease", cache.AcquireFeedLeaseRequest(feed=ref(owner="bad-input-l"))),
    ("fill-newest-first", "FillFeed", fill(posts=posts_newest_first(3))),
    ("fill-at-cap", "FillFeed", fill(posts=posts_newest_first(FEED_CAP))),
    (
        "append-with-entry",
        "AppendToFeeds",
        cache.AppendToFeedsRequest(owner_ids=[OWNER], post_id=POST_ID, post=post(id=POST_ID)),
    ),
    (
        "remove",
        "RemoveFromFeeds",
        cache.RemoveFromFeedsRequest(owner_ids=[OWNER], post_ids=[POST_ID]),
    ),
    ("invalidate-feed", "Invalidate", cache.InvalidateRequest(feeds=[ref(kind=USER)])),
    ("invalidate-user", "Invalidate", cache.InvalidateRequest(user_ids=[OTHER])),
    ("warm", "WarmSession", cache.WarmSessionRequest(user_id=OWNER)),
]


@pytest.mark.parametrize(
    ("method", "request_"), [(m, r) for _, m, r in GOOD], ids=[n for n, _, _ in GOOD]
)
async def test_the_fixed_requests_are_accepted(
    api: Clients, method: str, request_: Message
) -> None:
    call = getattr(api.cache, method)
    reply = await call(request_, timeout=10)
    assert isinstance(reply, Message)
