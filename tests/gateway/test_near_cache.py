"""The gateway's near cache: tags, the drop race, and closing with the stream."""

from __future__ import annotations

from murmur_gateway.near_cache import NearCache


def near() -> NearCache[bytes]:
    cache: NearCache[bytes] = NearCache(max_entries=100, max_bytes=1 << 20, ttl_seconds=60)
    cache.reopen()
    return cache


def test_dropping_a_tag_drops_every_entry_carrying_it() -> None:
    cache = near()
    since = cache.generation()
    cache.put("a", b"A", ["home:u", "post:1"], since=since)
    cache.put("b", b"B", ["home:v", "post:1"], since=since)
    cache.put("c", b"C", ["home:w"], since=since)
    assert cache.drop_tags(["post:1"]) == 2
    assert cache.get("a") is None
    assert cache.get("b") is None
    cached = cache.get("c")
    assert cached is not None
    assert cached.value == b"C"


def test_a_page_fetched_before_a_drop_is_not_stored_after_it() -> None:
    cache = near()
    since = cache.generation()  # a read starts fetching
    cache.drop_tags(["post:1"])  # a delete lands meanwhile
    cache.put("a", b"old page", ["home:u", "post:1"], since=since)
    assert cache.get("a") is None
    cache.put("b", b"unrelated", ["home:v", "post:2"], since=since)
    assert cache.get("b") is not None  # other tags were not dropped


def test_stale_pages_and_a_closed_cache_keep_nothing() -> None:
    cache = near()
    cache.put("a", b"A", ["home:u"], since=cache.generation(), stale=True)
    assert cache.get("a") is None
    since = cache.generation()
    cache.put("b", b"B", ["home:u"], since=since)
    cache.close()
    assert cache.get("b") is None
    cache.put("c", b"C", ["home:u"], since=cache.generation())
    assert cache.get("c") is None
    cache.reopen()
    cache.put("d", b"D", ["home:u"], since=since)  # began before the stream was lost
    assert cache.get("d") is None
    cache.put("e", b"E", ["home:u"], since=cache.generation())
    assert cache.get("e") is not None


def test_forgotten_drops_refuse_fetches_older_than_them() -> None:
    cache: NearCache[bytes] = NearCache(
        max_entries=1, max_bytes=1 << 20, ttl_seconds=60
    )  # remembers 8 tags
    cache.reopen()
    since = cache.generation()
    cache.drop_tags([f"post:{i}" for i in range(20)])
    cache.put("a", b"A", ["home:u"], since=since)
    assert cache.get("a") is None
