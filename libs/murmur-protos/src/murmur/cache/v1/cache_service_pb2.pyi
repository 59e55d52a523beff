from murmur.timeline.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEED_KIND_UNSPECIFIED: _ClassVar[FeedKind]
    FEED_KIND_HOME: _ClassVar[FeedKind]
    FEED_KIND_USER: _ClassVar[FeedKind]

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_L1: _ClassVar[Source]
    SOURCE_REDIS: _ClassVar[Source]
    SOURCE_TIMELINE: _ClassVar[Source]
FEED_KIND_UNSPECIFIED: FeedKind
FEED_KIND_HOME: FeedKind
FEED_KIND_USER: FeedKind
SOURCE_UNSPECIFIED: Source
SOURCE_L1: Source
SOURCE_REDIS: Source
SOURCE_TIMELINE: Source

class FeedRef(_message.Message):
    __slots__ = ("kind", "owner_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    kind: FeedKind
    owner_id: str
    def __init__(self, kind: _Optional[_Union[FeedKind, str]] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetFeedPageRequest(_message.Message):
    __slots__ = ("feed", "viewer_id", "limit", "before_id")
    FEED_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    feed: FeedRef
    viewer_id: str
    limit: int
    before_id: str
    def __init__(self, feed: _Optional[_Union[FeedRef, _Mapping]] = ..., viewer_id: _Optional[str] = ..., limit: _Optional[int] = ..., before_id: _Optional[str] = ...) -> None: ...

class GetFeedPageResponse(_message.Message):
    __slots__ = ("posts", "has_more", "source", "stale", "beyond_window", "version")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    BEYOND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    has_more: bool
    source: Source
    stale: bool
    beyond_window: bool
    version: int
    def __init__(self, posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ..., has_more: _Optional[bool] = ..., source: _Optional[_Union[Source, str]] = ..., stale: _Optional[bool] = ..., beyond_window: _Optional[bool] = ..., version: _Optional[int] = ...) -> None: ...

class GetPostsRequest(_message.Message):
    __slots__ = ("post_ids", "viewer_id")
    POST_IDS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    post_ids: _containers.RepeatedScalarFieldContainer[str]
    viewer_id: str
    def __init__(self, post_ids: _Optional[_Iterable[str]] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class GetPostsResponse(_message.Message):
    __slots__ = ("posts", "source", "stale")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    source: Source
    stale: bool
    def __init__(self, posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ..., source: _Optional[_Union[Source, str]] = ..., stale: _Optional[bool] = ...) -> None: ...

class PutPostsRequest(_message.Message):
    __slots__ = ("posts",)
    POSTS_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    def __init__(self, posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ...) -> None: ...

class PutPostsResponse(_message.Message):
    __slots__ = ("stored", "refused_ids")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_IDS_FIELD_NUMBER: _ClassVar[int]
    stored: int
    refused_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stored: _Optional[int] = ..., refused_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AcquireFeedLeaseRequest(_message.Message):
    __slots__ = ("feed", "full_view")
    FEED_FIELD_NUMBER: _ClassVar[int]
    FULL_VIEW_FIELD_NUMBER: _ClassVar[int]
    feed: FeedRef
    full_view: bool
    def __init__(self, feed: _Optional[_Union[FeedRef, _Mapping]] = ..., full_view: _Optional[bool] = ...) -> None: ...

class AcquireFeedLeaseResponse(_message.Message):
    __slots__ = ("lease", "version")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    lease: str
    version: int
    def __init__(self, lease: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class FillFeedRequest(_message.Message):
    __slots__ = ("feed", "full_view", "lease", "version", "posts", "complete")
    FEED_FIELD_NUMBER: _ClassVar[int]
    FULL_VIEW_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POSTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    feed: FeedRef
    full_view: bool
    lease: str
    version: int
    posts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Post]
    complete: bool
    def __init__(self, feed: _Optional[_Union[FeedRef, _Mapping]] = ..., full_view: _Optional[bool] = ..., lease: _Optional[str] = ..., version: _Optional[int] = ..., posts: _Optional[_Iterable[_Union[_resources_pb2.Post, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class FillFeedResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class AppendToFeedsRequest(_message.Message):
    __slots__ = ("owner_ids", "post_id", "post", "more_post_ids", "only_active_within_seconds")
    OWNER_IDS_FIELD_NUMBER: _ClassVar[int]
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    POST_FIELD_NUMBER: _ClassVar[int]
    MORE_POST_IDS_FIELD_NUMBER: _ClassVar[int]
    ONLY_ACTIVE_WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    owner_ids: _containers.RepeatedScalarFieldContainer[str]
    post_id: str
    post: _resources_pb2.Post
    more_post_ids: _containers.RepeatedScalarFieldContainer[str]
    only_active_within_seconds: float
    def __init__(self, owner_ids: _Optional[_Iterable[str]] = ..., post_id: _Optional[str] = ..., post: _Optional[_Union[_resources_pb2.Post, _Mapping]] = ..., more_post_ids: _Optional[_Iterable[str]] = ..., only_active_within_seconds: _Optional[float] = ...) -> None: ...

class AppendToFeedsResponse(_message.Message):
    __slots__ = ("appended", "active_owner_ids")
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_OWNER_IDS_FIELD_NUMBER: _ClassVar[int]
    appended: int
    active_owner_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, appended: _Optional[int] = ..., active_owner_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PostAppend(_message.Message):
    __slots__ = ("post_id", "owner_ids")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_IDS_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    owner_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, post_id: _Optional[str] = ..., owner_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AppendPostsToFeedsRequest(_message.Message):
    __slots__ = ("appends", "only_active_within_seconds")
    APPENDS_FIELD_NUMBER: _ClassVar[int]
    ONLY_ACTIVE_WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    appends: _containers.RepeatedCompositeFieldContainer[PostAppend]
    only_active_within_seconds: float
    def __init__(self, appends: _Optional[_Iterable[_Union[PostAppend, _Mapping]]] = ..., only_active_within_seconds: _Optional[float] = ...) -> None: ...

class OwnerIds(_message.Message):
    __slots__ = ("owner_ids",)
    OWNER_IDS_FIELD_NUMBER: _ClassVar[int]
    owner_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, owner_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AppendPostsToFeedsResponse(_message.Message):
    __slots__ = ("appended", "active")
    APPENDED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    appended: int
    active: _containers.RepeatedCompositeFieldContainer[OwnerIds]
    def __init__(self, appended: _Optional[int] = ..., active: _Optional[_Iterable[_Union[OwnerIds, _Mapping]]] = ...) -> None: ...

class RemoveFromFeedsRequest(_message.Message):
    __slots__ = ("owner_ids", "post_ids")
    OWNER_IDS_FIELD_NUMBER: _ClassVar[int]
    POST_IDS_FIELD_NUMBER: _ClassVar[int]
    owner_ids: _containers.RepeatedScalarFieldContainer[str]
    post_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, owner_ids: _Optional[_Iterable[str]] = ..., post_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveFromFeedsResponse(_message.Message):
    __slots__ = ("touched",)
    TOUCHED_FIELD_NUMBER: _ClassVar[int]
    touched: int
    def __init__(self, touched: _Optional[int] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("feeds", "deleted_post_ids", "user_ids")
    FEEDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_POST_IDS_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    feeds: _containers.RepeatedCompositeFieldContainer[FeedRef]
    deleted_post_ids: _containers.RepeatedScalarFieldContainer[str]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, feeds: _Optional[_Iterable[_Union[FeedRef, _Mapping]]] = ..., deleted_post_ids: _Optional[_Iterable[str]] = ..., user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class WarmSessionRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class WarmSessionResponse(_message.Message):
    __slots__ = ("loaded",)
    LOADED_FIELD_NUMBER: _ClassVar[int]
    loaded: bool
    def __init__(self, loaded: _Optional[bool] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LayerStats(_message.Message):
    __slots__ = ("hits", "misses")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    hits: int
    misses: int
    def __init__(self, hits: _Optional[int] = ..., misses: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("l1", "redis", "rebuilds", "stale_served", "l1_entries", "l1_bytes", "lease_waits", "redis_available")
    L1_FIELD_NUMBER: _ClassVar[int]
    REDIS_FIELD_NUMBER: _ClassVar[int]
    REBUILDS_FIELD_NUMBER: _ClassVar[int]
    STALE_SERVED_FIELD_NUMBER: _ClassVar[int]
    L1_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    L1_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEASE_WAITS_FIELD_NUMBER: _ClassVar[int]
    REDIS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    l1: LayerStats
    redis: LayerStats
    rebuilds: int
    stale_served: int
    l1_entries: int
    l1_bytes: int
    lease_waits: int
    redis_available: bool
    def __init__(self, l1: _Optional[_Union[LayerStats, _Mapping]] = ..., redis: _Optional[_Union[LayerStats, _Mapping]] = ..., rebuilds: _Optional[int] = ..., stale_served: _Optional[int] = ..., l1_entries: _Optional[int] = ..., l1_bytes: _Optional[int] = ..., lease_waits: _Optional[int] = ..., redis_available: _Optional[bool] = ...) -> None: ...

class FilterActiveRequest(_message.Message):
    __slots__ = ("user_ids", "within_seconds")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    within_seconds: float
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., within_seconds: _Optional[float] = ...) -> None: ...

class FilterActiveResponse(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...
