"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Chosen from here up to the kernel's ephemeral range, never inside it.
FIRST_PORT = 10_000
# Fewer ports than this below the range (a host whose ephemeral range starts
# low, e.g. at 1024): the kernel chooses, as bind(0) does.
_MIN_SPAN = 4_096
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_MAX_TRIES = 10_000


def ephemeral_range_start() -> int:
    """Where the kernel starts picking local ports for outgoing connections
    (Linux's default when it cannot be read)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_ports(count: int, *, ephemeral_start: int | None = None) -> list[int]:
    """Ports nothing is bound to right now, all distinct, from below the
    kernel's ephemeral range (``ephemeral_start``: where it starts, read from
    the kernel unless given).

    A port the kernel hands out for ``bind(0)`` comes from the range it also
    gives outgoing connections their local ports from: between choosing such
    a port and a server binding it, any process's new connection (to NATS,
    Redis, PostgreSQL...) could take it, and a compose-run replica once
    failed to start with "Address already in use" that way. Below the range
    only another server can take one first. Every socket stays bound until
    all are chosen, so none is handed out twice. Where the range leaves too
    few ports below it, the kernel chooses (inside the range, with that race).
    """
    end = ephemeral_range_start() if ephemeral_start is None else ephemeral_start
    below = end - FIRST_PORT >= _MIN_SPAN
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(_MAX_TRIES):
            if len(ports) == count:
                return ports
            port = random.randrange(FIRST_PORT, end) if below else 0  # noqa: S311 (not a secret)
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue  # in use, or taken by another caller a moment ago
            ports.append(int(sock.getsockname()[1]))
        if len(ports) == count:
            return ports
    raise OSError(f"no {count} free ports between {FIRST_PORT} and {end}")


def free_port() -> int:
    return free_ports(1)[0]


def is_listening(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
