"""Path parameters shared by the route modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from murmur_core.auth import USER_ID_PATTERN

# Canonical lowercase UUIDv7, the only spelling of a post id.
POST_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

UserIdPath = Annotated[
    str, Path(pattern=USER_ID_PATTERN.pattern, description="1-64 of A-Z a-z 0-9 _ -")
]
PostIdPath = Annotated[str, Path(pattern=POST_ID_PATTERN, description="UUIDv7, lowercase")]
