"""``python -m murmur_timeline.pipeline``: run the feed pipeline until SIGTERM."""

from __future__ import annotations

import logging

from murmur_core import lifecycle
from murmur_core.logging import configure_logging
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing, shutdown_tracing
from murmur_timeline.pipeline.app import Pipeline
from murmur_timeline.pipeline.settings import PipelineSettings

log = logging.getLogger("murmur_timeline.pipeline")


async def serve() -> None:
    settings = PipelineSettings()
    info = ServiceInfo.for_distribution("pipeline", "murmur-timeline")
    configure_logging(info.name, settings.log_level)
    setup_tracing(info)
    pipeline = await Pipeline.start(settings)
    log.info("pipeline started", extra={"health_port": pipeline.port, "version": info.version})
    signal = await lifecycle.wait_for_stop_signal()
    log.info("stopping", extra={"signal": signal.name})
    await pipeline.stop()
    shutdown_tracing()


def main() -> None:
    lifecycle.run(serve)


if __name__ == "__main__":
    main()
