"""The cache's Redis connection packs commands with hiredis: byte for byte
what redis-py's own asyncio packer writes, the same error for what is not a
Redis value, and a real Redis runs a script with hundreds of keys and
arguments through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Connection, Redis
from redis.exceptions import DataError

from murmur_cache.redis_connection import HiredisPackingConnection
from murmur_devstack import Stack

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "key", "value"),
    ("SET", "clé", "é" * 3, "PX", 1500),
    ("EVALSHA", "0" * 40, 3, "a", b"b", bytearray(b"c"), memoryview(b"d"), 1.5, 0.1 + 0.2, -7),
    ("CONFIG GET", "maxmemory"),  # a command name of two words
    (b"CLIENT LIST",),
    ("SET", "big", b"x" * 100_000),  # past redis-py's 6,000-byte chunking
    ("MSET", *(f"k{i}" for i in range(2_000))),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_packs_the_bytes_redis_py_packs(args: tuple[Any, ...]) -> None:
    ours = b"".join(HiredisPackingConnection().pack_command(*args))
    theirs = b"".join(bytes(part) for part in Connection().pack_command(*args))
    assert ours == theirs


@pytest.mark.parametrize("bad", [True, None, object()])
def test_what_redis_cannot_take_is_a_data_error(bad: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", bad)


@pytest.fixture
async def redis(infra: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url, connection_class=HiredisPackingConnection)
    yield client
    await client.aclose()


async def test_a_script_with_many_keys_runs_through_it(redis: Redis) -> None:
    pool_class = redis.connection_pool.connection_class
    assert pool_class is HiredisPackingConnection
    keys = [f"{{packing}}:k{i}" for i in range(768)]
    script = redis.register_script(
        "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i]) end return #KEYS"
    )
    assert await script(keys=keys, args=[f"v{i}é" for i in range(768)]) == 768
    assert await redis.get(keys[767]) == "v767é".encode()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*keys)
        pipe.get(keys[0])
        deleted, gone = await pipe.execute()
    assert (deleted, gone) == (768, None)
