"""What the metrics service watches: one service instance at one URL (its
/metrics, its gRPC health, its /readyz), and the replicas behind a name.

Behind compose's DNS a service name resolves to every replica
(`--scale cache=2`): each address is an instance of its own, watched on its
own, and the set is resolved again every round, so replicas that come and
go show up and drop out."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

Resolve = Callable[[str], Awaitable[list[str]]]


@dataclass(frozen=True)
class Target:
    service: str
    url: str

    @property
    def instance(self) -> str:
        return urlsplit(self.url).netloc


async def resolve_ipv4(host: str) -> list[str]:
    """Every IPv4 address of ``host`` (compose networks are IPv4)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, None, family=socket.AF_INET, type=socket.SOCK_STREAM
    )
    return sorted({str(info[4][0]) for info in infos})


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Replicas:
    """The configured targets, a name expanded to each address it resolves to."""

    def __init__(self, configured: Sequence[Target], resolve: Resolve = resolve_ipv4) -> None:
        self.configured = list(configured)
        self._resolve = resolve

    async def current(self) -> list[Target]:
        expanded = await asyncio.gather(*(self._expand(t) for t in self.configured))
        return [target for group in expanded for target in group]

    async def _expand(self, target: Target) -> list[Target]:
        parts = urlsplit(target.url)
        host = parts.hostname
        if host is None or _is_address(host):
            return [target]
        try:
            addresses = await self._resolve(host)
        except OSError:
            # Not resolvable now: probed by name, it shows as unreachable.
            return [target]
        if not addresses:
            return [target]
        port = f":{parts.port}" if parts.port is not None else ""
        return [
            Target(target.service, urlunsplit(parts._replace(netloc=f"{address}{port}")))
            for address in addresses
        ]
