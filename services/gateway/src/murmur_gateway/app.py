"""The FastAPI application, built by a factory so importing does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio import Redis

from murmur_core import nats as murmur_nats
from murmur_core.admin import AdminEndpoints
from murmur_core.http import NATIVE_TELEMETRY_OFF, install_admin_routes, install_observability
from murmur_core.metrics import watch_event_loop_lag
from murmur_core.saturation import watch_redis_pool
from murmur_core.service_info import package_version
from murmur_gateway.backend import open_backend
from murmur_gateway.cache_sync import CacheSync
from murmur_gateway.cursors import CursorSigner
from murmur_gateway.errors import install_error_handlers
from murmur_gateway.hot_path import HotReads
from murmur_gateway.idempotency import IdempotencyKeys
from murmur_gateway.idempotency_store import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
)
from murmur_gateway.invalidations import follow_invalidations
from murmur_gateway.limits import BodySizeLimit
from murmur_gateway.near_cache import NearCache
from murmur_gateway.openapi import build_openapi
from murmur_gateway.purge import NullPurger, Purger, VarnishPurger
from murmur_gateway.ratelimit import MemoryRateLimiter, RateLimiter, SharedRateLimiter
from murmur_gateway.reads import Reads, Reply
from murmur_gateway.routes import blobs, health, posts, sync, timelines, users
from murmur_gateway.settings import GatewaySettings
from murmur_gateway.sync import Sync


class GatewayApp(FastAPI):
    def openapi(self) -> dict[str, Any]:
        return build_openapi(self)


def _shared_state(
    settings: GatewaySettings,
) -> tuple[Redis | None, RateLimiter, IdempotencyStore]:
    """Redis-backed when a Redis is configured (every instance shares the
    buckets and records), in this process otherwise."""
    if not settings.redis_url:
        return None, MemoryRateLimiter(), MemoryIdempotencyStore()
    # Short timeouts: both users of this client let requests through when
    # Redis is slow or gone, and must find out quickly.
    redis = Redis.from_url(settings.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
    watch_redis_pool("gateway", redis)
    return redis, SharedRateLimiter(redis), RedisIdempotencyStore(redis)


def _purger(settings: GatewaySettings) -> Purger:
    urls = settings.cdn_purge_url_list
    if not urls:
        return NullPurger()
    return VarnishPurger(urls, timeout_seconds=settings.cdn_purge_timeout_seconds)


def create_app(settings: GatewaySettings) -> FastAPI:
    verifier = settings.token_verifier()
    secret = settings.cursor_secret
    cursors = CursorSigner(secret.get_secret_value().encode() if secret else None)
    redis, limiter, idempotency = _shared_state(settings)
    purger = _purger(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = open_backend(
            settings.timeline_addr,
            timeout_seconds=settings.grpc_timeout_seconds,
            ready_timeout_seconds=settings.ready_timeout_seconds,
            cache_address=settings.cache_addr,
            cache_timeout_seconds=settings.cache_timeout_seconds,
        )
        near: NearCache[Reply] | None = None
        nats = None
        if settings.cache_addr and settings.nats_url and settings.near_cache_ttl_seconds > 0:
            near = NearCache(
                max_entries=settings.near_cache_max_entries,
                max_bytes=settings.near_cache_max_bytes,
                ttl_seconds=settings.near_cache_ttl_seconds,
            )
            nats = await follow_invalidations(settings.nats_url, near)
        elif settings.nats_url:
            nats = await murmur_nats.connect(settings.nats_url, name="gateway")
        app.state.backend = backend
        app.state.near_cache = near
        app.state.reads = Reads(backend, near, cursors, inline_limit=settings.blob_inline_limit)
        app.state.sync = (
            Sync(nats, backend, cursors, inline_limit=settings.blob_inline_limit)
            if nats is not None
            else None
        )
        app.state.cache_sync = CacheSync(
            backend, near, quiet_seconds=settings.session_quiet_seconds
        )
        lag = asyncio.create_task(watch_event_loop_lag())
        try:
            yield
        finally:
            lag.cancel()
            if nats is not None:
                await nats.close()
            await purger.close()
            await limiter.close()
            if redis is not None:
                await redis.aclose()
            await backend.close()

    app = GatewayApp(
        title="Murmur gateway",
        version=package_version("murmur-gateway"),
        description="Public HTTP API of Murmur. Post bodies are client-side ciphertext.",
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.cursors = cursors
    app.state.limiter = limiter
    app.state.purger = purger
    install_error_handlers(app)
    for module in (health, users, posts, timelines, sync, blobs):
        app.include_router(module.router)
    # Innermost first: idempotency reads bodies the size limit has bounded, and
    # the observability middleware, added last, wraps both so that refused
    # and replayed requests show up in the metrics too.
    app.add_middleware(
        IdempotencyKeys,
        store=idempotency,
        verifier=verifier,
        ttl_seconds=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.hot_path:
        # Inside CORS, so that its answers carry the CORS headers too.
        app.add_middleware(HotReads)
    if settings.cors_origin_list:
        # Outside the size limit so that preflights and refusals alike carry
        # the CORS headers a browser needs to read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
            expose_headers=[
                "ETag",
                "Location",
                "Retry-After",
                "Idempotent-Replayed",
                "Murmur-Stale",
            ],
            max_age=600,
        )
    install_observability(app)
    install_admin_routes(app, AdminEndpoints(settings.admin_token))
    return app
