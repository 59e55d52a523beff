"""``python -m murmur_gateway``: serve the gateway with uvicorn until SIGTERM."""

from __future__ import annotations

import math

import uvicorn

from murmur_core.logging import configure_logging
from murmur_core.metrics import expose_service_info
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing, shutdown_tracing
from murmur_gateway.app import create_app
from murmur_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    info = ServiceInfo.for_distribution("gateway", "murmur-gateway")
    configure_logging(info.name, settings.log_level)
    setup_tracing(info)
    expose_service_info(info.name, info.version)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            # Logging is already configured; uvicorn's own config would undo it.
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        )
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
