"""``python -m murmur_timeline``: run the timeline gRPC service until SIGTERM."""

from __future__ import annotations

import logging

from murmur_core import lifecycle
from murmur_core.logging import configure_logging
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing, shutdown_tracing
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings

log = logging.getLogger("murmur_timeline")


async def serve() -> None:
    settings = TimelineSettings()
    info = ServiceInfo.for_distribution("timeline", "murmur-timeline")
    configure_logging(info.name, settings.log_level)
    setup_tracing(info)
    server = await TimelineServer.start(settings)
    log.info("timeline started", extra={"port": server.port, "version": info.version})
    signal = await lifecycle.wait_for_stop_signal()
    log.info("stopping", extra={"signal": signal.name})
    await server.stop()
    shutdown_tracing()


def main() -> None:
    lifecycle.run(serve)


if __name__ == "__main__":
    main()
