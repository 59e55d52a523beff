"""The stack with the real nats-server and redis-server."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.api import StorageType

from murmur_devstack import PortInUse, ProcessStartError, RedisPing, Stack
from murmur_devstack.ports import is_listening


async def test_infra_probes_pass(infra: Stack) -> None:
    for process in infra.processes.values():
        assert process.running
        assert await process.probe() is None
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"{infra.nats_monitor_url}/healthz?js-enabled-only=true")
    assert response.json() == {"status": "ok"}
    await RedisPing(infra.port("REDIS_PORT")).check()
    assert infra.redis_url == f"redis://127.0.0.1:{infra.port('REDIS_PORT')}/0"


async def test_jetstream_publish_works(infra: Stack) -> None:
    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        stream = f"T_{secrets.token_hex(4)}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], storage=StorageType.MEMORY)
        ack = await js.publish(f"{stream}.hello", b"payload")
        assert (ack.stream, ack.seq) == (stream, 1)
        await js.delete_stream(stream)
    finally:
        await nc.close()


async def test_nats_kill_and_restart_keeps_port_and_jetstream_data(tmp_path: Path) -> None:
    async with Stack(tmp_path, services=("nats",)) as stack:
        nats_process = stack["nats"]
        port = stack.port("NATS_PORT")
        nc = await nats.connect(stack.nats_url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"], storage=StorageType.FILE)
        await js.publish("keep.one", b"1")
        await nc.close()

        await nats_process.kill()
        assert not nats_process.running
        assert await nats_process.probe() is not None
        assert not is_listening(port)

        await nats_process.start()
        assert stack.port("NATS_PORT") == port
        nc = await nats.connect(stack.nats_url)
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
        await nc.close()


async def test_redis_restart(tmp_path: Path) -> None:
    async with Stack(tmp_path, services=("redis",)) as stack:
        before = stack["redis"].pid
        await stack["redis"].restart()
        assert stack["redis"].pid != before
        await RedisPing(stack.port("REDIS_PORT")).check()


async def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    stack = Stack(tmp_path, services=("nats", "redis"))
    await stack.start()
    pids = [p.pid for p in stack.processes.values()]
    ports = list(stack.wiring.ports.values())
    await stack.stop()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(is_listening(port) for port in ports)
    assert not any(p.running for p in stack.processes.values())


async def test_a_taken_port_fails_fast(tmp_path: Path, infra: Stack) -> None:
    taken = infra.port("REDIS_PORT")
    stack = Stack(tmp_path, services=("redis",), ports={"REDIS_PORT": taken})
    with pytest.raises(PortInUse, match=f"port {taken} \\(REDIS_PORT\\) is already in use"):
        await stack.start()


async def test_a_failing_service_stops_the_ones_started_before_it(tmp_path: Path) -> None:
    stack = Stack(tmp_path, services=("nats", "redis"))
    # A redis that refuses its arguments: the stack must unwind nats too.
    broken = stack["redis"]
    broken.spec = dataclasses.replace(
        broken.spec, argv=(*broken.spec.argv, "--no-such-option", "x")
    )
    with pytest.raises(ProcessStartError, match="redis exited with code 1") as caught:
        await stack.start()
    assert "no-such-option" in str(caught.value)
    assert not stack["nats"].running


def test_selecting_a_service_brings_its_dependencies(tmp_path: Path) -> None:
    stack = Stack(tmp_path, services=("gateway",))
    assert [s.name for s in stack.specs] == ["nats", "timeline", "redis", "cache", "gateway"]
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        Stack(tmp_path, services=("nope",))
