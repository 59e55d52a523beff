"""Operator debug endpoints every service serves beside its /metrics:

- ``GET /debug/profile?seconds=S&format=html|speedscope``: a CPU profile of
  the process's event loop (``murmur_core.profiling``);
- ``GET /debug/queries``: the database statements' statistics, slowest in
  total first (empty in a service without a database).

Both need ``Authorization: Bearer <admin token>``; with no token configured
they answer 404, as if absent. This module holds the whole behaviour; the
front-ends (the WSGI metrics listener, ``murmur_core.metrics``, and the HTTP
services' routes, ``murmur_core.http``) only translate requests to
``AdminEndpoints.handle`` and its AdminReply back.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from murmur_core.profiling import (
    MAX_PROFILE_SECONDS,
    PROFILE_FORMATS,
    ProfileBusy,
    profile_event_loop,
)

PROFILE_PATH = "/debug/profile"
QUERIES_PATH = "/debug/queries"
ADMIN_PATHS = (PROFILE_PATH, QUERIES_PATH)
TOP_STATEMENTS = 50
# What /debug/queries reports as the threshold of a service without a database.
DEFAULT_SLOW_QUERY_SECONDS = 0.05
# The longest any admin request may take: a profile plus its rendering.
MAX_REPLY_SECONDS = MAX_PROFILE_SECONDS + 30.0

JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"
HTML_TYPE = "text/html; charset=utf-8"
# Profiles and statistics are of one moment and one instance: no cache keeps them.
_NO_STORE = (("Cache-Control", "no-store"),)


@dataclass(frozen=True, slots=True)
class StatementSummary:
    """One normalised statement's totals since the process started."""

    statement: str
    calls: int
    total_seconds: float
    max_seconds: float
    slow_calls: int


class QuerySource(Protocol):
    """Where a service with a database keeps its statement statistics."""

    @property
    def slow_seconds(self) -> float: ...

    def snapshot(self) -> list[StatementSummary]: ...


@dataclass(frozen=True, slots=True)
class AdminReply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = _NO_STORE


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> AdminReply:
    """An RFC 9457 problem document, the shape of every error Murmur answers."""
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    return AdminReply(status, PROBLEM_TYPE, json.dumps(body).encode(), (*_NO_STORE, *headers))


def queries_report(source: QuerySource | None) -> dict[str, Any]:
    """The /debug/queries document: the top statements by total time."""
    if source is None:
        return {"statements": [], "slow_threshold_seconds": DEFAULT_SLOW_QUERY_SECONDS}
    rows = sorted(source.snapshot(), key=lambda s: s.total_seconds, reverse=True)
    return {
        "statements": [
            {
                "statement": row.statement,
                "calls": row.calls,
                "total_seconds": row.total_seconds,
                "mean_seconds": row.total_seconds / row.calls if row.calls else 0.0,
                "max_seconds": row.max_seconds,
                "slow_calls": row.slow_calls,
            }
            for row in rows[:TOP_STATEMENTS]
        ],
        "slow_threshold_seconds": source.slow_seconds,
    }


class AdminEndpoints:
    """The debug endpoints of one service, guarded by its admin token."""

    def __init__(self, token: SecretStr | None, queries: QuerySource | None = None) -> None:
        secret = token.get_secret_value() if token is not None else ""
        # An empty variable (``TIMELINE_ADMIN_TOKEN=``) leaves them off too.
        self._token = secret.encode() if secret else None
        self._queries = queries

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def refusal(self, authorization: str | None) -> AdminReply | None:
        """The answer to a caller who may not use these endpoints, or None.

        Cheap and synchronous, so a front-end running outside the event loop
        refuses without a hop onto it.
        """
        if self._token is None:
            return problem(
                404,
                "not-found",
                "Not found",
                "Debug endpoints are off: this service has no admin token configured.",
            )
        scheme, _, presented = (authorization or "").partition(" ")
        # compare_digest: the time taken says nothing about how much matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), self._token
        ):
            return problem(
                401,
                "unauthenticated",
                "Unauthenticated",
                "A valid admin token is required (Authorization: Bearer <token>).",
                (("WWW-Authenticate", "Bearer"),),
            )
        return None

    async def handle(
        self, path: str, params: Mapping[str, str], authorization: str | None
    ) -> AdminReply:
        """Answer ``GET path?params``. Must run on the loop to be profiled."""
        refused = self.refusal(authorization)
        if refused is not None:
            return refused
        if path == PROFILE_PATH:
            return await self._profile(params)
        if path == QUERIES_PATH:
            return AdminReply(200, JSON_TYPE, json.dumps(queries_report(self._queries)).encode())
        return problem(404, "not-found", "Not found", f"No debug endpoint at {path}.")

    async def _profile(self, params: Mapping[str, str]) -> AdminReply:
        try:
            seconds = float(params["seconds"])
        except (KeyError, ValueError):
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_PROFILE_SECONDS):
            return _invalid(
                f"seconds must be a number above 0 and at most {MAX_PROFILE_SECONDS:g}."
            )
        fmt = params.get("format", "html")
        if fmt not in PROFILE_FORMATS:
            return _invalid(f"format must be one of: {', '.join(PROFILE_FORMATS)}.")
        try:
            body = await profile_event_loop(seconds, fmt)
        except ProfileBusy:
            return problem(
                409,
                "profile-running",
                "Profile running",
                "Another profile of this process is running.",
            )
        return AdminReply(200, HTML_TYPE if fmt == "html" else JSON_TYPE, body)


def _invalid(detail: str) -> AdminReply:
    return problem(400, "invalid-parameter", "Invalid parameter", detail)
