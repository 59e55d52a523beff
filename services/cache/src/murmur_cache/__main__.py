"""``python -m murmur_cache``: run the cache gRPC service until SIGTERM."""

from __future__ import annotations

import logging

from murmur_cache.server import CacheServer
from murmur_cache.settings import CacheSettings
from murmur_core import lifecycle
from murmur_core.logging import configure_logging
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing, shutdown_tracing

log = logging.getLogger("murmur_cache")


async def serve() -> None:
    settings = CacheSettings()
    info = ServiceInfo.for_distribution("cache", "murmur-cache")
    configure_logging(info.name, settings.log_level)
    setup_tracing(info)
    server = await CacheServer.start(settings)
    log.info("cache started", extra={"port": server.port, "version": info.version})
    signal = await lifecycle.wait_for_stop_signal()
    log.info("stopping", extra={"signal": signal.name})
    await server.stop()
    shutdown_tracing()


def main() -> None:
    lifecycle.run(serve)


if __name__ == "__main__":
    main()
