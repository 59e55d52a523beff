"""Per-statement statistics of the timeline's database: calls, time, slow calls.

Recorded for every statement (``TracedConnection``), read by operators at
``/debug/queries`` (``murmur_core.admin``). On every query's hot path, so a
record is a cached normalisation and a few field updates.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from prometheus_client import Counter, Histogram

from murmur_core.admin import DEFAULT_SLOW_QUERY_SECONDS, StatementSummary
from murmur_core.metrics import LATENCY_BUCKETS

# Where statements beyond the cap are counted: memory stays bounded whatever
# SQL a bug or a future code path builds.
OTHER_STATEMENTS = "(other)"
MAX_STATEMENTS = 500

# No statement label: a label per statement text would be unbounded.
SLOW_QUERIES = Counter(
    "murmur_db_slow_queries_total",
    "Database statements that took at least the slow-query threshold.",
)

# The SQL hop of a request, for the dashboard's bottleneck view; by the
# statement's first keyword (select, insert, ...), a bounded set.
QUERY_SECONDS = Histogram(
    "murmur_db_query_duration_seconds",
    "Time of one database statement, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
OPERATIONS = ("select", "insert", "update", "delete")

log = logging.getLogger(__name__)

_STRING = re.compile(r"'(?:[^']|'')*'")
# Not the digits of a placeholder ($1), an identifier (t1) or a decimal's tail.
_NUMBER = re.compile(r"(?<![\w$.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")
_SPACE = re.compile(r"\s+")
# IN lists built from a variable number of values (batch reads, outbox
# batches) would make a statement of each length.
_VALUE = r"(?:\?|\$\d+)"
_IN_LIST = re.compile(rf"\bIN \( ?{_VALUE}(?: ?, ?{_VALUE})* ?\)", re.IGNORECASE)


@lru_cache(maxsize=2048)
def normalise(sql: str) -> str:
    """One text per statement: whitespace collapsed, literals as ``?`` (our
    statements bind parameters, but one built with literals still groups),
    and lists of values after IN as ``IN (...)``. Cached: the store sends the
    same few texts over and over."""
    text = _STRING.sub("?", sql)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip()
    return _IN_LIST.sub("IN (...)", text)


@lru_cache(maxsize=2048)
def _operation(statement: str) -> str:
    first = statement.split(" ", 1)[0].lower()
    return first if first in OPERATIONS else "other"


class _Totals:
    __slots__ = ("calls", "max_seconds", "slow_calls", "total_seconds")

    def __init__(self) -> None:
        self.calls = 0
        self.total_seconds = 0.0
        self.max_seconds = 0.0
        self.slow_calls = 0


class QueryStats:
    """Totals per normalised statement since start-up. Used from the event
    loop's thread only, so it needs no lock."""

    def __init__(
        self,
        slow_seconds: float = DEFAULT_SLOW_QUERY_SECONDS,
        max_statements: int = MAX_STATEMENTS,
    ) -> None:
        self._slow_seconds = slow_seconds
        self._max_statements = max_statements
        self._totals: dict[str, _Totals] = {}

    @property
    def slow_seconds(self) -> float:
        return self._slow_seconds

    def record(self, sql: str, seconds: float) -> None:
        statement = normalise(sql)
        QUERY_SECONDS.labels(_operation(statement)).observe(seconds)
        totals = self._totals.get(statement)
        if totals is None:
            if len(self._totals) >= self._max_statements:
                statement = OTHER_STATEMENTS
                totals = self._totals.get(statement)
            if totals is None:
                totals = self._totals[statement] = _Totals()
        totals.calls += 1
        totals.total_seconds += seconds
        if seconds > totals.max_seconds:
            totals.max_seconds = seconds
        if seconds >= self._slow_seconds:
            totals.slow_calls += 1
            SLOW_QUERIES.inc()
            # The normalised text only: parameters hold ciphertext and ids.
            log.warning(
                "slow query",
                extra={
                    "statement": statement,
                    "duration_seconds": round(seconds, 6),
                    "threshold_seconds": self._slow_seconds,
                },
            )

    def snapshot(self) -> list[StatementSummary]:
        return [
            StatementSummary(
                statement=statement,
                calls=t.calls,
                total_seconds=t.total_seconds,
                max_seconds=t.max_seconds,
                slow_calls=t.slow_calls,
            )
            for statement, t in self._totals.items()
        ]
