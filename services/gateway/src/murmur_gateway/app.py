"""The FastAPI application, built by a factory so importing does nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from murmur_core.http import install_observability
from murmur_core.service_info import package_version
from murmur_gateway.backend import open_backend
from murmur_gateway.cache_sync import CacheSync
from murmur_gateway.errors import install_error_handlers
from murmur_gateway.invalidations import follow_invalidations
from murmur_gateway.limits import BodySizeLimit
from murmur_gateway.near_cache import NearCache
from murmur_gateway.openapi import build_openapi
from murmur_gateway.reads import Reads
from murmur_gateway.routes import health, posts, timelines, users
from murmur_gateway.settings import GatewaySettings


class GatewayApp(FastAPI):
    def openapi(self) -> dict[str, Any]:
        return build_openapi(self)


def create_app(settings: GatewaySettings) -> FastAPI:
    verifier = settings.token_verifier()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = open_backend(
            settings.timeline_addr,
            timeout_seconds=settings.grpc_timeout_seconds,
            ready_timeout_seconds=settings.ready_timeout_seconds,
            cache_address=settings.cache_addr,
            cache_timeout_seconds=settings.cache_timeout_seconds,
        )
        near = None
        nats = None
        if settings.cache_addr and settings.nats_url and settings.near_cache_ttl_seconds > 0:
            near = NearCache(
                max_entries=settings.near_cache_max_entries,
                max_bytes=settings.near_cache_max_bytes,
                ttl_seconds=settings.near_cache_ttl_seconds,
            )
            nats = await follow_invalidations(settings.nats_url, near)
        app.state.backend = backend
        app.state.near_cache = near
        app.state.reads = Reads(backend, near)
        app.state.cache_sync = CacheSync(
            backend, near, quiet_seconds=settings.session_quiet_seconds
        )
        try:
            yield
        finally:
            if nats is not None:
                await nats.close()
            await backend.close()

    app = GatewayApp(
        title="Murmur gateway",
        version=package_version("murmur-gateway"),
        description="Public HTTP API of Murmur. Post bodies are client-side ciphertext.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = verifier
    install_error_handlers(app)
    for module in (health, users, posts, timelines):
        app.include_router(module.router)
    # Added before the observability middleware so that the latter wraps it and
    # refused bodies show up in the metrics too.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_observability(app)
    return app
