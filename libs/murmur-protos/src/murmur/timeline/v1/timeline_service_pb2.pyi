import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from murmur.timeline.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateUserRequest(_message.Message):
    __slots__ = ("user_id", "handle", "public_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    handle: str
    public_key: bytes
    def __init__(self, user_id: _Optional[str] = ..., handle: _Optional[str] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user", "created")
    USER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    user: _resources_pb2.User
    created: bool
    def __init__(self, user: _Optional[_Union[_resources_pb2.User, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: _resources_pb2.User
    def __init__(self, user: _Optional[_Union[_resources_pb2.User, _Mapping]] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class UnfollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class UnfollowResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class ListFollowersRequest(_message.Message):
    __slots__ = ("user_id", "limit", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFollowersResponse(_message.Message):
    __slots__ = ("follower_ids", "next_page_token")
    FOLLOWER_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    follower_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, follower_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreatePostRequest(_message.Message):
    __slots__ = ("post_id", "author_id", "audience", "ciphertext", "key_id", "expires_at", "reply_to")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    author_id: str
    audience: _resources_pb2.Audience
    ciphertext: bytes
    key_id: str
    expires_at: _timestamp_pb2.Timestamp
    reply_to: str
    def __init__(self, post_id: _Optional[str] = ..., author_id: _Optional[str] = ..., audience: _Optional[_Union[_resources_pb2.Audience, str]] = ..., ciphertext: _Optional[bytes] = ..., key_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[str] = ...) -> None: ...

class CreatePostResponse(_message.Message):
    __slots__ = ("post", "created")
    POST_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    post: _resources_pb2.Post
    created: bool
    def __init__(self, post: _Optional[_Union[_resources_pb2.Post, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetPostRequest(_message.Message):
    __slots__ = ("post_id", "viewer_id")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    viewer_id: str
    def __init__(self, post_id: _Optional[str] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class GetPostResponse(_message.Message):
    __slots__ = ("post",)
    POST_FIELD_NUMBER: _ClassVar[int]
    post: _resources_pb2.Post
    def __init__(self, post: _Optional[_Union[_resources_pb2.Post, _Mapping]] = ...) -> None: ...

class BatchGetPostsRequest(_message.Message):
    __slots__ = ("post_ids", "viewer_id")
    POST_IDS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    post_ids: _containers.RepeatedScalarFieldContainer[str]
    viewer_id: str
    def __init__(self, post_ids: _Optional[_Iterable[str]] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class BatchGetPostsResponse(_message.Message):
    __slots__ = ("posts",)
    POSTS_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    def __init__(self, posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ...) -> None: ...

class DeletePostRequest(_message.Message):
    __slots__ = ("post_id", "viewer_id")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    viewer_id: str
    def __init__(self, post_id: _Optional[str] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class DeletePostResponse(_message.Message):
    __slots__ = ("deleted_at",)
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCiphertextRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    def __init__(self, sha256: _Optional[bytes] = ...) -> None: ...

class GetCiphertextResponse(_message.Message):
    __slots__ = ("ciphertext", "post_id", "expires_at")
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    post_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, ciphertext: _Optional[bytes] = ..., post_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetHomeTimelineRequest(_message.Message):
    __slots__ = ("viewer_id", "limit", "page_token", "before_id")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    limit: int
    page_token: str
    before_id: str
    def __init__(self, viewer_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., before_id: _Optional[str] = ...) -> None: ...

class GetUserTimelineRequest(_message.Message):
    __slots__ = ("author_id", "viewer_id", "limit", "page_token", "before_id")
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    author_id: str
    viewer_id: str
    limit: int
    page_token: str
    before_id: str
    def __init__(self, author_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., before_id: _Optional[str] = ...) -> None: ...

class TimelinePage(_message.Message):
    __slots__ = ("posts", "next_page_token", "full_view", "followee_ids", "followees_complete", "pull_author_ids")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FULL_VIEW_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEES_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PULL_AUTHOR_IDS_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    next_page_token: str
    full_view: bool
    followee_ids: _containers.RepeatedScalarFieldContainer[str]
    followees_complete: bool
    pull_author_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., full_view: _Optional[bool] = ..., followee_ids: _Optional[_Iterable[str]] = ..., followees_complete: _Optional[bool] = ..., pull_author_ids: _Optional[_Iterable[str]] = ...) -> None: ...
