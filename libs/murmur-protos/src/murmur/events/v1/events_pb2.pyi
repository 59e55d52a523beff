import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from murmur.timeline.v1 import resources_pb2 as _resources_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("event_id", "occurred_at", "user_created", "post_created", "post_deleted", "follow_created", "follow_deleted")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_CREATED_FIELD_NUMBER: _ClassVar[int]
    POST_CREATED_FIELD_NUMBER: _ClassVar[int]
    POST_DELETED_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_CREATED_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    user_created: UserCreated
    post_created: PostCreated
    post_deleted: PostDeleted
    follow_created: FollowCreated
    follow_deleted: FollowDeleted
    def __init__(self, event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_created: _Optional[_Union[UserCreated, _Mapping]] = ..., post_created: _Optional[_Union[PostCreated, _Mapping]] = ..., post_deleted: _Optional[_Union[PostDeleted, _Mapping]] = ..., follow_created: _Optional[_Union[FollowCreated, _Mapping]] = ..., follow_deleted: _Optional[_Union[FollowDeleted, _Mapping]] = ...) -> None: ...

class UserCreated(_message.Message):
    __slots__ = ("user_id", "handle")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    handle: str
    def __init__(self, user_id: _Optional[str] = ..., handle: _Optional[str] = ...) -> None: ...

class PostCreated(_message.Message):
    __slots__ = ("post_id", "author_id", "audience", "key_id", "ciphertext_size", "created_at", "expires_at", "reply_to")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    author_id: str
    audience: _resources_pb2.Audience
    key_id: str
    ciphertext_size: int
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    reply_to: str
    def __init__(self, post_id: _Optional[str] = ..., author_id: _Optional[str] = ..., audience: _Optional[_Union[_resources_pb2.Audience, str]] = ..., key_id: _Optional[str] = ..., ciphertext_size: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_to: _Optional[str] = ...) -> None: ...

class PostDeleted(_message.Message):
    __slots__ = ("post_id", "author_id", "deleted_at", "reason")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    author_id: str
    deleted_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, post_id: _Optional[str] = ..., author_id: _Optional[str] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class FollowCreated(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class FollowDeleted(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ...) -> None: ...

class UserEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "occurred_at", "post_created", "post_deleted", "follow_created", "follow_deleted")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    POST_CREATED_FIELD_NUMBER: _ClassVar[int]
    POST_DELETED_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_CREATED_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    occurred_at: _timestamp_pb2.Timestamp
    post_created: PostCreated
    post_deleted: PostDeleted
    follow_created: FollowCreated
    follow_deleted: FollowDeleted
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., post_created: _Optional[_Union[PostCreated, _Mapping]] = ..., post_deleted: _Optional[_Union[PostDeleted, _Mapping]] = ..., follow_created: _Optional[_Union[FollowCreated, _Mapping]] = ..., follow_deleted: _Optional[_Union[FollowDeleted, _Mapping]] = ...) -> None: ...
