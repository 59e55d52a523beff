"""TimelineService over gRPC: validate, call the store, map errors to status codes."""

from __future__ import annotations

import time

import grpc

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.grpc_handlers import Context, mapped_errors
from murmur_timeline import page_tokens, validation
from murmur_timeline.events import timestamp
from murmur_timeline.settings import TimelineSettings
from murmur_timeline.storage import (
    AlreadyExists,
    Audience,
    NotFound,
    PermissionDenied,
    Post,
    TimelineStore,
    User,
)

rpc_method = mapped_errors(
    [
        (validation.Invalid, grpc.StatusCode.INVALID_ARGUMENT),
        (page_tokens.InvalidPageToken, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    ]
)


def user_message(user: User) -> res.User:
    return res.User(
        id=user.id,
        handle=user.handle,
        public_key=user.public_key,
        created_at=timestamp(user.created_at),
    )


def post_message(post: Post) -> res.Post:
    message = res.Post(
        id=post.id,
        author_id=post.author_id,
        audience=int(post.audience),  # type: ignore[arg-type]
        ciphertext=post.ciphertext,
        key_id=post.key_id,
        created_at=timestamp(post.created_at),
        reply_to=post.reply_to or "",
    )
    if post.expires_at is not None:
        message.expires_at.CopyFrom(timestamp(post.expires_at))
    return message


class TimelineServicer(rpc_grpc.TimelineServiceServicer):
    def __init__(self, store: TimelineStore, settings: TimelineSettings) -> None:
        self._store = store
        self._settings = settings

    def _page_size(self, limit: int) -> int:
        return validation.page_size(
            limit, self._settings.default_page_size, self._settings.max_page_size
        )

    @staticmethod
    def _before(page_token: str, before_id: str) -> str | None:
        if page_token and before_id:
            raise validation.Invalid("give page_token or before_id, not both")
        if before_id:
            return validation.post_id(before_id, "before_id")
        return page_tokens.decode(page_token)

    def _page(self, posts: list[Post], limit: int, *, full_view: bool = True) -> rpc.TimelinePage:
        next_token = page_tokens.encode(posts[-1].id) if len(posts) == limit else ""
        return rpc.TimelinePage(
            posts=[post_message(p) for p in posts],
            next_page_token=next_token,
            full_view=full_view,
        )

    @rpc_method
    async def CreateUser(
        self, request: rpc.CreateUserRequest, context: Context
    ) -> rpc.CreateUserResponse:
        validation.user_id(request.user_id)
        validation.handle(request.handle, self._settings.max_handle_length)
        if not request.public_key or len(request.public_key) > self._settings.max_public_key_bytes:
            raise validation.Invalid(
                f"public_key must be 1-{self._settings.max_public_key_bytes} bytes"
            )
        user, created = await self._store.create_user(
            request.user_id, request.handle, request.public_key
        )
        return rpc.CreateUserResponse(user=user_message(user), created=created)

    @rpc_method
    async def GetUser(self, request: rpc.GetUserRequest, context: Context) -> rpc.GetUserResponse:
        validation.user_id(request.user_id)
        return rpc.GetUserResponse(user=user_message(await self._store.get_user(request.user_id)))

    def _follow_pair(self, follower_id: str, followee_id: str) -> None:
        validation.user_id(follower_id, "follower_id")
        validation.user_id(followee_id, "followee_id")
        if follower_id == followee_id:
            raise validation.Invalid("a user cannot follow themselves")

    @rpc_method
    async def Follow(self, request: rpc.FollowRequest, context: Context) -> rpc.FollowResponse:
        self._follow_pair(request.follower_id, request.followee_id)
        created = await self._store.follow(request.follower_id, request.followee_id)
        return rpc.FollowResponse(created=created)

    @rpc_method
    async def Unfollow(
        self, request: rpc.UnfollowRequest, context: Context
    ) -> rpc.UnfollowResponse:
        self._follow_pair(request.follower_id, request.followee_id)
        removed = await self._store.unfollow(request.follower_id, request.followee_id)
        return rpc.UnfollowResponse(removed=removed)

    @rpc_method
    async def ListFollowers(
        self, request: rpc.ListFollowersRequest, context: Context
    ) -> rpc.ListFollowersResponse:
        validation.user_id(request.user_id)
        limit = self._page_size(request.limit)
        after = page_tokens.decode(request.page_token)
        ids = await self._store.list_followers(request.user_id, limit, after)
        next_token = page_tokens.encode(ids[-1]) if len(ids) == limit else ""
        return rpc.ListFollowersResponse(follower_ids=ids, next_page_token=next_token)

    @rpc_method
    async def CreatePost(
        self, request: rpc.CreatePostRequest, context: Context
    ) -> rpc.CreatePostResponse:
        settings = self._settings
        now = time.time()
        validation.new_post_id(
            request.post_id,
            max_ahead=settings.post_id_max_ahead_seconds,
            max_behind=settings.post_id_max_behind_seconds,
            now=now,
        )
        validation.user_id(request.author_id, "author_id")
        if request.audience not in (res.AUDIENCE_PUBLIC, res.AUDIENCE_FOLLOWERS):
            raise validation.Invalid("audience must be PUBLIC or FOLLOWERS")
        if not request.ciphertext:
            raise validation.Invalid("ciphertext must not be empty")
        if len(request.ciphertext) > settings.max_ciphertext_bytes:
            raise validation.Invalid(
                f"ciphertext is {len(request.ciphertext)} bytes;"
                f" the limit is {settings.max_ciphertext_bytes}"
            )
        validation.key_id(request.key_id, settings.max_key_id_length)
        if request.reply_to:
            validation.post_id(request.reply_to, "reply_to")
            if request.reply_to == request.post_id:
                raise validation.Invalid("a post cannot reply to itself")
        expires_at = None
        if request.HasField("expires_at"):
            expires_at = validation.expiry(request.expires_at.ToMilliseconds(), now)
        post, created = await self._store.create_post(
            Post(
                id=request.post_id,
                author_id=request.author_id,
                audience=Audience(request.audience),
                ciphertext=request.ciphertext,
                key_id=request.key_id,
                created_at=0,
                expires_at=expires_at,
                reply_to=request.reply_to or None,
            )
        )
        return rpc.CreatePostResponse(post=post_message(post), created=created)

    @rpc_method
    async def GetPost(self, request: rpc.GetPostRequest, context: Context) -> rpc.GetPostResponse:
        validation.post_id(request.post_id)
        validation.user_id(request.viewer_id, "viewer_id")
        post = await self._store.get_post(request.post_id, request.viewer_id)
        return rpc.GetPostResponse(post=post_message(post))

    @rpc_method
    async def BatchGetPosts(
        self, request: rpc.BatchGetPostsRequest, context: Context
    ) -> rpc.BatchGetPostsResponse:
        validation.user_id(request.viewer_id, "viewer_id")
        if len(request.post_ids) > self._settings.max_batch_size:
            raise validation.Invalid(f"at most {self._settings.max_batch_size} post_ids")
        for post_id in request.post_ids:
            validation.post_id(post_id, "post_ids")
        posts = await self._store.batch_get_posts(
            list(dict.fromkeys(request.post_ids)), request.viewer_id
        )
        return rpc.BatchGetPostsResponse(posts=[post_message(p) for p in posts])

    @rpc_method
    async def DeletePost(
        self, request: rpc.DeletePostRequest, context: Context
    ) -> rpc.DeletePostResponse:
        validation.post_id(request.post_id)
        validation.user_id(request.viewer_id, "viewer_id")
        tombstone = await self._store.delete_post(request.post_id, request.viewer_id)
        return rpc.DeletePostResponse(deleted_at=timestamp(tombstone.deleted_at))

    @rpc_method
    async def GetCiphertext(
        self, request: rpc.GetCiphertextRequest, context: Context
    ) -> rpc.GetCiphertextResponse:
        if len(request.sha256) != 32:
            raise validation.Invalid("sha256 must be 32 bytes")
        post_id, ciphertext, expires_at = await self._store.get_ciphertext(request.sha256)
        reply = rpc.GetCiphertextResponse(ciphertext=ciphertext, post_id=post_id)
        if expires_at is not None:
            reply.expires_at.CopyFrom(timestamp(expires_at))
        return reply

    @rpc_method
    async def GetHomeTimeline(
        self, request: rpc.GetHomeTimelineRequest, context: Context
    ) -> rpc.TimelinePage:
        validation.user_id(request.viewer_id, "viewer_id")
        limit = self._page_size(request.limit)
        before = self._before(request.page_token, request.before_id)
        posts = await self._store.home_timeline(request.viewer_id, limit, before)
        page = self._page(posts, limit)
        if before is None:
            cap = self._settings.max_followees_in_page
            followees = await self._store.followees(request.viewer_id, cap + 1)
            if len(followees) <= cap:
                page.followee_ids.extend(followees)
                page.followees_complete = True
            page.pull_author_ids.extend(await self._store.pull_followees(request.viewer_id))
        return page

    @rpc_method
    async def GetUserTimeline(
        self, request: rpc.GetUserTimelineRequest, context: Context
    ) -> rpc.TimelinePage:
        validation.user_id(request.author_id, "author_id")
        validation.user_id(request.viewer_id, "viewer_id")
        limit = self._page_size(request.limit)
        before = self._before(request.page_token, request.before_id)
        posts, full_view = await self._store.user_timeline(
            request.author_id, request.viewer_id, limit, before
        )
        return self._page(posts, limit, full_view=full_view)
