import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from murmur.timeline.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Post(_message.Message):
    __slots__ = ("id", "author_id", "audience", "ciphertext", "key_id", "created_at", "expires_at", "reply_to", "ciphertext_url", "ciphertext_size")
    ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_URL_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    author_id: str
    audience: _resources_pb2.Audience
    ciphertext: bytes
    key_id: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    reply_to: str
    ciphertext_url: str
    ciphertext_size: int
    def __init__(self, id: _Optional[str] = ..., author_id: _Optional[str] = ..., audience: _Optional[_Union[_resources_pb2.Audience, str]] = ..., ciphertext: _Optional[bytes] = ..., key_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[str] = ..., ciphertext_url: _Optional[str] = ..., ciphertext_size: _Optional[int] = ...) -> None: ...

class PostPage(_message.Message):
    __slots__ = ("items", "next_cursor", "has_more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Post]
    next_cursor: str
    has_more: bool
    def __init__(self, items: _Optional[_Iterable[_Union[Post, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., has_more: _Optional[bool] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "handle", "public_key", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    handle: str
    public_key: bytes
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., handle: _Optional[str] = ..., public_key: _Optional[bytes] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FollowerPage(_message.Message):
    __slots__ = ("items", "next_cursor", "has_more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    next_cursor: str
    has_more: bool
    def __init__(self, items: _Optional[_Iterable[str]] = ..., next_cursor: _Optional[str] = ..., has_more: _Optional[bool] = ...) -> None: ...

class Tombstone(_message.Message):
    __slots__ = ("id", "deleted_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FollowChange(_message.Message):
    __slots__ = ("user_id", "following", "changed_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWING_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    following: bool
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., following: _Optional[bool] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SyncPage(_message.Message):
    __slots__ = ("posts", "deleted", "follows", "next_token", "has_more")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    FOLLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[Post]
    deleted: _containers.RepeatedCompositeFieldContainer[Tombstone]
    follows: _containers.RepeatedCompositeFieldContainer[FollowChange]
    next_token: str
    has_more: bool
    def __init__(self, posts: _Optional[_Iterable[_Union[Post, _Mapping]]] = ..., deleted: _Optional[_Iterable[_Union[Tombstone, _Mapping]]] = ..., follows: _Optional[_Iterable[_Union[FollowChange, _Mapping]]] = ..., next_token: _Optional[str] = ..., has_more: _Optional[bool] = ...) -> None: ...
