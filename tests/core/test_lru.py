"""L1: LRU order, entry and byte bounds, TTL with a stale window, invalidation."""

from __future__ import annotations

import pytest

from murmur_core.lru import L1Cache, L1Entry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def evictions() -> list[int]:
    return []


def make(
    clock: FakeClock,
    evictions: list[int] | None = None,
    *,
    max_entries: int = 100,
    max_bytes: int = 10_000,
) -> L1Cache[str]:
    return L1Cache(
        max_entries=max_entries,
        max_bytes=max_bytes,
        clock=clock,
        on_evict=None if evictions is None else evictions.append,
    )


def keys_present(cache: L1Cache[str], *keys: str) -> list[str]:
    return [key for key in keys if cache.get(key) is not None]


def test_put_then_get_returns_the_entry(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "alpha", size=5, ttl=10, stale_ttl=3, version=7)
    entry = cache.get("a")
    assert entry == L1Entry("alpha", 5, 1010.0, 1013.0, 7)
    assert len(cache) == 1
    assert cache.bytes_used == 5
    assert cache.get("missing") is None


def test_entries_cannot_be_changed_behind_the_cache(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "alpha", size=5, ttl=10)
    entry = cache.get("a")
    assert entry is not None
    with pytest.raises(AttributeError):
        entry.size = 0  # type: ignore[misc]
    assert cache.bytes_used == 5


def test_lru_order_follows_use(clock: FakeClock, evictions: list[int]) -> None:
    cache = make(clock, evictions, max_entries=3)
    for key in "abc":
        cache.put(key, key, size=1, ttl=60)
    assert cache.get("a") is not None  # "b" is now least recently used
    cache.put("d", "d", size=1, ttl=60)
    assert keys_present(cache, "a", "b", "c", "d") == ["a", "c", "d"]
    assert evictions == [1]


def test_replacing_a_key_counts_as_use(clock: FakeClock) -> None:
    cache = make(clock, max_entries=2)
    cache.put("a", "1", size=1, ttl=60)
    cache.put("b", "1", size=1, ttl=60)
    cache.put("a", "2", size=1, ttl=60)
    cache.put("c", "1", size=1, ttl=60)
    assert keys_present(cache, "a", "b", "c") == ["a", "c"]
    entry = cache.get("a")
    assert entry is not None and entry.value == "2"


def test_entry_bound(clock: FakeClock, evictions: list[int]) -> None:
    cache = make(clock, evictions, max_entries=5)
    for i in range(12):
        cache.put(f"k{i}", "v", size=1, ttl=60)
    assert len(cache) == 5
    assert cache.bytes_used == 5
    assert keys_present(cache, *(f"k{i}" for i in range(12))) == [f"k{i}" for i in range(7, 12)]
    assert sum(evictions) == 7


def test_byte_bound_evicts_as_many_as_needed(clock: FakeClock, evictions: list[int]) -> None:
    cache = make(clock, evictions, max_bytes=100)
    for key in "abcd":
        cache.put(key, key, size=25, ttl=60)
    assert cache.bytes_used == 100
    assert evictions == []
    cache.put("big", "B", size=60, ttl=60)
    assert keys_present(cache, "a", "b", "c", "d", "big") == ["d", "big"]
    assert cache.bytes_used == 85
    assert evictions == [3]


def test_replacing_with_a_bigger_value_respects_the_byte_bound(
    clock: FakeClock, evictions: list[int]
) -> None:
    cache = make(clock, evictions, max_bytes=100)
    cache.put("a", "small", size=30, ttl=60)
    cache.put("b", "small", size=30, ttl=60)
    cache.put("c", "small", size=30, ttl=60)
    cache.put("b", "bigger", size=60, ttl=60)
    assert cache.bytes_used == 90
    assert len(cache) == 2
    assert keys_present(cache, "a", "b", "c") == ["b", "c"]
    assert evictions == [1]


def test_replacing_with_a_smaller_value_frees_bytes(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "big", size=500, ttl=60)
    cache.put("a", "small", size=20, ttl=60)
    assert cache.bytes_used == 20
    assert len(cache) == 1


def test_value_exactly_max_bytes_is_stored(clock: FakeClock) -> None:
    cache = make(clock, max_bytes=100)
    cache.put("a", "x", size=10, ttl=60)
    cache.put("whole", "w", size=100, ttl=60)
    assert keys_present(cache, "a", "whole") == ["whole"]
    assert cache.bytes_used == 100


def test_oversized_value_is_not_stored_and_drops_the_old_one(
    clock: FakeClock, evictions: list[int]
) -> None:
    cache = make(clock, evictions, max_bytes=100)
    cache.put("other", "o", size=50, ttl=60)
    cache.put("a", "old", size=10, ttl=60)
    cache.put("a", "huge", size=101, ttl=60)
    assert cache.get("a") is None
    assert cache.get("other") is not None
    assert cache.bytes_used == 50
    assert len(cache) == 1
    assert evictions == []


def test_fresh_then_stale_then_gone(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("feed", "ids", size=10, ttl=5, stale_ttl=2)

    # Steps are binary fractions so the boundaries are hit exactly.
    clock.now += 4.75
    entry = cache.get("feed")
    assert entry is not None and entry.is_fresh(clock.now)

    clock.now += 0.25  # exactly fresh_until: no longer fresh, still servable
    entry = cache.get("feed")
    assert entry is not None and not entry.is_fresh(clock.now)

    clock.now += 1.75
    entry = cache.get("feed")
    assert entry is not None and not entry.is_fresh(clock.now)

    clock.now += 0.25  # exactly stale_until: gone, and removed
    assert cache.get("feed") is None
    assert len(cache) == 0
    assert cache.bytes_used == 0


def test_ttl_without_stale_window_expires_at_ttl(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("post", "body", size=10, ttl=3)
    clock.now += 2.75
    assert cache.get("post") is not None
    clock.now += 0.25
    assert cache.get("post") is None
    assert cache.bytes_used == 0


def test_zero_ttl_with_stale_window_is_stored_as_stale(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("feed", "ids", size=1, ttl=0, stale_ttl=5)
    entry = cache.get("feed")
    assert entry is not None and not entry.is_fresh(clock.now)


def test_already_dead_value_is_not_stored(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "old", size=1, ttl=60)
    cache.put("a", "dead", size=1, ttl=0)
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.bytes_used == 0


def test_replacing_resets_the_ttl(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "1", size=1, ttl=5)
    clock.now += 4
    cache.put("a", "2", size=1, ttl=5)
    clock.now += 4
    entry = cache.get("a")
    assert entry is not None and entry.value == "2" and entry.is_fresh(clock.now)


def test_expired_entries_evicted_for_room_are_not_counted(
    clock: FakeClock, evictions: list[int]
) -> None:
    cache = make(clock, evictions, max_entries=2)
    cache.put("dead", "x", size=1, ttl=1)
    cache.put("live", "x", size=1, ttl=60)
    clock.now += 2
    cache.put("new", "x", size=1, ttl=60)
    assert len(cache) == 2
    assert keys_present(cache, "dead", "live", "new") == ["live", "new"]
    assert evictions == []
    cache.put("newer", "x", size=1, ttl=60)
    assert evictions == [1]


def test_delete(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("a", "x", size=7, ttl=60)
    cache.put("b", "x", size=3, ttl=60)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert cache.get("a") is None
    assert cache.bytes_used == 3
    assert len(cache) == 1


def test_delete_prefix(clock: FakeClock) -> None:
    cache = make(clock)
    cache.put("feed:alice", "x", size=10, ttl=60)
    cache.put("feed:alicia", "x", size=20, ttl=60)
    cache.put("feed:bob", "x", size=40, ttl=60)
    cache.put("post:alice", "x", size=80, ttl=60)
    assert cache.delete_prefix("feed:ali") == 2
    assert keys_present(cache, "feed:alice", "feed:alicia", "feed:bob", "post:alice") == [
        "feed:bob",
        "post:alice",
    ]
    assert cache.bytes_used == 120
    assert cache.delete_prefix("nothing:") == 0
    assert cache.bytes_used == 120


def test_clear(clock: FakeClock, evictions: list[int]) -> None:
    cache = make(clock, evictions)
    for i in range(4):
        cache.put(str(i), "x", size=10, ttl=60)
    assert cache.clear() == 4
    assert len(cache) == 0
    assert cache.bytes_used == 0
    assert cache.get("0") is None
    assert cache.clear() == 0
    assert evictions == []


def test_on_evict_is_optional(clock: FakeClock) -> None:
    cache = make(clock, None, max_entries=1)
    cache.put("a", "x", size=1, ttl=60)
    cache.put("b", "x", size=1, ttl=60)
    assert keys_present(cache, "a", "b") == ["b"]


def test_defaults_to_the_monotonic_clock() -> None:
    cache: L1Cache[bytes] = L1Cache(max_entries=10, max_bytes=100)
    cache.put("a", b"x", size=1, ttl=60)
    entry = cache.get("a")
    assert entry is not None and entry.value == b"x" and entry.version == 0


@pytest.mark.parametrize(
    ("size", "ttl", "stale_ttl"), [(-1, 1.0, 0.0), (1, -1.0, 0.0), (1, 1.0, -0.5)]
)
def test_put_rejects_negative_arguments(
    clock: FakeClock, size: int, ttl: float, stale_ttl: float
) -> None:
    cache = make(clock)
    with pytest.raises(ValueError, match="must not be negative"):
        cache.put("a", "x", size=size, ttl=ttl, stale_ttl=stale_ttl)
    assert len(cache) == 0


@pytest.mark.parametrize(("max_entries", "max_bytes"), [(0, 100), (10, 0), (-1, -1)])
def test_bounds_must_be_positive(max_entries: int, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        L1Cache[str](max_entries=max_entries, max_bytes=max_bytes)
