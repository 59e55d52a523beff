"""Presence: users connected here are active readers, so the pipeline fans
out to them. The cache records them (and warms their first page) through
its WarmSession RPC when their first connection opens, and again while they
stay connected."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import grpc

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur_core.grpc_client import open_channel
from murmur_notifier.router import Router
from murmur_notifier.settings import NotifierSettings

if TYPE_CHECKING:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceAsyncStub as CacheStub
else:
    from murmur.cache.v1.cache_service_pb2_grpc import CacheServiceStub as CacheStub

log = logging.getLogger(__name__)


class Presence:
    """Connected users are active readers: the cache records them (and warms
    their first page) when they connect, and again while they stay."""

    def __init__(self, settings: NotifierSettings, router: Router) -> None:
        self._settings = settings
        self._router = router
        self._channel = open_channel(settings.cache_addr)
        self._cache = CacheStub(self._channel)
        self._tasks: set[asyncio.Task[None]] = set()
        # A reconnect storm (a drain elsewhere, a NATS reconnect here) must
        # not become thousands of concurrent warm-ups at the cache.
        self._in_flight = asyncio.Semaphore(settings.presence_concurrency)

    def joined(self, user_id: str) -> None:
        task = asyncio.create_task(self._record(user_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, user_id: str) -> None:
        try:
            async with self._in_flight:
                await self._cache.WarmSession(
                    cache_rpc.WarmSessionRequest(user_id=user_id),
                    timeout=self._settings.cache_timeout_seconds,
                )
        except grpc.aio.AioRpcError as exc:
            # NOT_FOUND: a valid token for a user not registered (yet); nothing
            # to record, and no fault of ours.
            level = logging.DEBUG if exc.code() == grpc.StatusCode.NOT_FOUND else logging.WARNING
            log.log(level, "presence not recorded", extra={"code": exc.code().name})

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.presence_every_seconds)
            for user_id in self._router.users():
                await self._record(user_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._channel.close()
