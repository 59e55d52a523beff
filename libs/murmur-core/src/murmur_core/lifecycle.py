"""Process lifecycle: run a service until SIGTERM or SIGINT, then stop it cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from murmur_core.logging import configure_logging
from murmur_core.metrics import expose_service_info, watch_event_loop_lag
from murmur_core.service_info import ServiceInfo
from murmur_core.settings import ServiceSettings
from murmur_core.telemetry import setup_tracing, shutdown_tracing

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class Running(Protocol):
    """A started service: the port it serves on, and how to stop it."""

    port: int

    async def stop(self) -> None: ...


async def wait_for_stop_signal() -> signal.Signals:
    """Block until SIGTERM or SIGINT arrives; returns which one."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Entry point for every service: uvloop when available, one event loop."""
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def freeze_startup_objects() -> int:
    """Move what start-up built (modules, classes, settings, pools: it lives
    as long as the process) out of the garbage collector's sight; returns
    how many objects are frozen. A full collection then has that much less
    to walk, and it stops the event loop while it runs: the notifier's took
    80-240 ms with a thousand sockets open, which was its delivery p99
    (docs/notifier.md)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(
    name: str,
    distribution: str,
    load_settings: Callable[[], SettingsT],
    start: Callable[[SettingsT], Awaitable[Running]],
) -> None:
    """The ``python -m`` entry point of every service: settings from the
    environment, logging and tracing set up, started, stopped on a signal."""

    async def main() -> None:
        settings = load_settings()
        info = ServiceInfo.for_distribution(name, distribution)
        configure_logging(info.name, settings.log_level)
        setup_tracing(info)
        expose_service_info(info.name, info.version)
        log = logging.getLogger(f"murmur.{name}")
        service = await start(settings)
        freeze_startup_objects()
        log.info(f"{name} started", extra={"port": service.port, "version": info.version})
        lag = asyncio.create_task(watch_event_loop_lag())
        received = await wait_for_stop_signal()
        log.info("stopping", extra={"signal": received.name})
        lag.cancel()
        await service.stop()
        shutdown_tracing()

    run(main)
