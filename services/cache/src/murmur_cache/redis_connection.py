"""The cache's Redis connections: redis-py's asyncio connection with
commands packed by hiredis, in C.

redis-py's synchronous connection packs with hiredis when it is installed;
its asyncio one (8.1) packs every argument in Python. A fan-out page is one
script call naming three keys and an argument per follower, about 800
arguments for 256 followers, and packing them was 30 % of the cache's CPU
under fan-out (`py-spy` of AppendToFeeds pages). hiredis is already what
parses the replies (``redis[hiredis]``). Same bytes on the wire, the same
``DataError`` for what Redis cannot take (tests/cache/test_redis_connection.py).
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Connection
from redis.exceptions import DataError


class HiredisPackingConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name with spaces ("CONFIG GET") is
        # several arguments.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            packed = hiredis.pack_command(args)
        except TypeError:
            # hiredis takes str, int, float and bytes only; redis-py also
            # takes bytearray and memoryview. Rare here: converted on retry,
            # not checked argument by argument on every command.
            converted = tuple(
                bytes(arg) if isinstance(arg, bytearray | memoryview) else arg for arg in args
            )
            try:
                packed = hiredis.pack_command(converted)  # type: ignore[arg-type]
            except TypeError as exc:  # a bool, None, an object: not a Redis value
                raise DataError(str(exc)) from exc
        return [packed]
