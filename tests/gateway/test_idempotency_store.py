"""The in-process idempotency store: the same contract as the Redis one."""

from __future__ import annotations

import asyncio

from murmur_gateway.idempotency_store import MemoryIdempotencyStore


async def test_claim_complete_replay_and_owner_checks() -> None:
    store = MemoryIdempotencyStore()
    assert (await store.claim("k", "f1", "a", 1000)).outcome == "new"
    assert (await store.claim("k", "f1", "b", 1000)).outcome == "pending"
    assert (await store.claim("k", "f2", "b", 1000)).outcome == "mismatch"
    await store.complete("k", "b", b"not mine", 1000)  # another owner: ignored
    assert (await store.claim("k", "f1", "b", 1000)).outcome == "pending"
    await store.complete("k", "a", b"stored", 1000)
    done = await store.claim("k", "f1", "c", 1000)
    assert (done.outcome, done.response) == ("done", b"stored")
    await store.release("k", "c")  # not the owner: the record stays
    assert (await store.claim("k", "f1", "c", 1000)).outcome == "done"


async def test_a_lapsed_lock_lets_a_retry_take_over() -> None:
    store = MemoryIdempotencyStore()
    await store.claim("k", "f", "first", 10)
    await asyncio.sleep(0.03)
    assert (await store.claim("k", "f", "second", 1000)).outcome == "new"
    await store.complete("k", "first", b"late", 1000)  # the first lost its claim
    assert (await store.claim("k", "f", "third", 1000)).outcome == "pending"


async def test_it_stays_bounded() -> None:
    store = MemoryIdempotencyStore(max_records=10)
    for n in range(50):
        await store.claim(f"k{n}", "f", "o", 60_000)
    assert len(store._records) <= 10
    assert (await store.claim("k49", "f", "o2", 60_000)).outcome == "pending"
