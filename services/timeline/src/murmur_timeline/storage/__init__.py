"""Timeline storage: one SQL store over two real databases (SQLite, PostgreSQL)."""

from murmur_timeline.storage.database import Database, open_database
from murmur_timeline.storage.models import (
    AlreadyExists,
    Audience,
    NotFound,
    OutboxEvent,
    PermissionDenied,
    Post,
    StorageError,
    Tombstone,
    User,
)
from murmur_timeline.storage.query_stats import QueryStats
from murmur_timeline.storage.store import TimelineStore

__all__ = [
    "AlreadyExists",
    "Audience",
    "Database",
    "NotFound",
    "OutboxEvent",
    "PermissionDenied",
    "Post",
    "QueryStats",
    "StorageError",
    "TimelineStore",
    "Tombstone",
    "User",
    "open_database",
]
