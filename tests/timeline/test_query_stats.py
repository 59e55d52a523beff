"""The statement statistics behind /debug/queries: one text per statement,
bounded memory, slow calls counted and logged without their parameters."""

from __future__ import annotations

import logging

import pytest

from murmur_core.admin import TOP_STATEMENTS, queries_report
from murmur_timeline.storage.query_stats import (
    OTHER_STATEMENTS,
    SLOW_QUERIES,
    QueryStats,
    normalise,
)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT  id,\n       handle\n  FROM users\tWHERE id = $1 ",
            "SELECT id, handle FROM users WHERE id = $1",
        ),
        (
            "SELECT * FROM users WHERE handle = 'o''brien' AND n > 42 AND x < -3.5e2",
            "SELECT * FROM users WHERE handle = ? AND n > ? AND x < -?",
        ),
        # Digits of placeholders and identifiers are not literals.
        ("SELECT t1.c2 FROM t1 WHERE t1.c2 = $12", "SELECT t1.c2 FROM t1 WHERE t1.c2 = $12"),
        ("SELECT pg_advisory_xact_lock(7061001)", "SELECT pg_advisory_xact_lock(?)"),
        ("DELETE FROM outbox WHERE seq IN ($1, $2, $3)", "DELETE FROM outbox WHERE seq IN (...)"),
        (
            "SELECT id FROM posts WHERE id in ( 1,2 , 'x' )",
            "SELECT id FROM posts WHERE id IN (...)",
        ),
        # A subquery after IN is a statement's shape, not a list of values.
        (
            "SELECT id FROM posts WHERE author_id IN (SELECT followee_id FROM follows)",
            "SELECT id FROM posts WHERE author_id IN (SELECT followee_id FROM follows)",
        ),
    ],
)
def test_normalise(sql: str, expected: str) -> None:
    assert normalise(sql) == expected


def test_batches_of_any_size_are_one_statement() -> None:
    def batch(n: int) -> str:
        placeholders = ", ".join(f"${i}" for i in range(2, n + 2))
        return f"SELECT id FROM posts WHERE expires_at > $1 AND id IN ({placeholders}) ORDER BY id"

    assert {normalise(batch(n)) for n in (1, 2, 17, 1000)} == {
        "SELECT id FROM posts WHERE expires_at > $1 AND id IN (...) ORDER BY id"
    }


def test_totals_per_statement() -> None:
    stats = QueryStats(slow_seconds=1.0)
    stats.record("SELECT 1 FROM users WHERE id = $1", 0.002)
    stats.record("SELECT 1\nFROM users WHERE id = $1", 0.004)
    stats.record("SELECT 1 FROM posts", 0.001)
    (users,) = [s for s in stats.snapshot() if "users" in s.statement]
    assert users.statement == "SELECT ? FROM users WHERE id = $1"
    assert users.calls == 2
    assert users.total_seconds == pytest.approx(0.006)
    assert users.max_seconds == pytest.approx(0.004)
    assert users.slow_calls == 0


def test_statements_beyond_the_cap_count_as_other() -> None:
    stats = QueryStats(max_statements=3)
    for table in ("a", "b", "c", "d", "e"):
        stats.record(f"SELECT x FROM {table}", 0.001)
    stats.record("SELECT x FROM a", 0.001)  # known statements still count as themselves
    calls = {s.statement: s.calls for s in stats.snapshot()}
    assert calls == {
        "SELECT x FROM a": 2,
        "SELECT x FROM b": 1,
        "SELECT x FROM c": 1,
        OTHER_STATEMENTS: 2,
    }


def test_slow_calls_are_counted_and_logged_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = QueryStats(slow_seconds=0.05)
    counted = SLOW_QUERIES._value.get()
    sql = "SELECT id FROM users WHERE handle = 'alice-handle' AND id = $1"
    with caplog.at_level(logging.WARNING, logger="murmur_timeline.storage.query_stats"):
        stats.record(sql, 0.01)
        stats.record(sql, 0.05)  # at the threshold is slow
        stats.record(sql, 0.2)
    (row,) = stats.snapshot()
    assert (row.calls, row.slow_calls) == (3, 2)
    assert row.max_seconds == pytest.approx(0.2)
    assert SLOW_QUERIES._value.get() - counted == 2
    slow = [r for r in caplog.records if r.getMessage() == "slow query"]
    assert [r.levelno for r in slow] == [logging.WARNING] * 2
    assert [r.__dict__["duration_seconds"] for r in slow] == [0.05, 0.2]
    assert slow[0].__dict__["statement"] == "SELECT id FROM users WHERE handle = ? AND id = $1"
    assert not any("alice-handle" in str(r.__dict__) for r in caplog.records)


def test_report_is_the_top_statements_by_total_time() -> None:
    stats = QueryStats(slow_seconds=0.5)
    for n in range(TOP_STATEMENTS + 10):
        for _ in range(n % 3 + 1):
            stats.record(f"SELECT c{n} FROM t", 0.001 * n)
    report = queries_report(stats)
    rows = report["statements"]
    assert report["slow_threshold_seconds"] == 0.5
    assert len(rows) == TOP_STATEMENTS
    totals = [r["total_seconds"] for r in rows]
    assert totals == sorted(totals, reverse=True)
    last = TOP_STATEMENTS + 9
    assert rows[0]["statement"] == f"SELECT c{last} FROM t"
    assert rows[0]["calls"] == last % 3 + 1
    assert rows[0]["mean_seconds"] == pytest.approx(0.001 * last)
    assert rows[0]["max_seconds"] == pytest.approx(0.001 * last)
    assert set(rows[0]) == {
        "statement",
        "calls",
        "total_seconds",
        "mean_seconds",
        "max_seconds",
        "slow_calls",
    }


def test_report_without_a_database() -> None:
    assert queries_report(None) == {"statements": [], "slow_threshold_seconds": 0.05}
