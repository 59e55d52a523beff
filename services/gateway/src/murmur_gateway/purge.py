"""Dropping the shared HTTP cache's copies after a write.

Public responses carry ``Surrogate-Key`` tags (``user:<id>:public``,
``post:<id>``); after a write the gateway names the affected tags and the
purger tells every Varnish in front of it to drop the objects carrying any of
them (``deploy/varnish/default.vcl``: ``PURGE /`` with an ``xkey-purge``
header, vmod_xkey).

A purge is best effort: it never fails the write that caused it. A copy that
survives a failed purge is dropped anyway when its ``s-maxage`` runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

import httpx
from prometheus_client import Counter

log = logging.getLogger(__name__)

CDN_PURGES = Counter(
    "murmur_gateway_cdn_purges_total",
    "Purge requests sent to the shared HTTP cache, by result (ok or error).",
    ["result"],
)

PURGE_HEADER = "xkey-purge"
# Varnish refuses a request header line over http_req_hdr_len (8 KB by
# default): longer tag lists go out in several requests.
MAX_HEADER_VALUE_BYTES = 4096


class Purger(Protocol):
    async def purge(self, tags: Sequence[str]) -> None:
        """Drop every cached object carrying one of ``tags``; never raises."""
        ...

    async def close(self) -> None: ...


class NullPurger:
    """For deployments without a shared cache in front of the gateway."""

    async def purge(self, tags: Sequence[str]) -> None:
        return None

    async def close(self) -> None:
        return None


def chunk_tags(tags: Sequence[str], max_bytes: int = MAX_HEADER_VALUE_BYTES) -> Iterator[str]:
    """Header values of space-separated tags, each at most ``max_bytes`` long
    (a single longer tag goes alone). Empty and repeated tags are left out."""
    chunk: list[str] = []
    size = 0
    for tag in dict.fromkeys(t for t in tags if t):
        length = len(tag.encode())
        if chunk and size + 1 + length > max_bytes:
            yield " ".join(chunk)
            chunk, size = [], 0
        size += length + (1 if chunk else 0)
        chunk.append(tag)
    if chunk:
        yield " ".join(chunk)


class VarnishPurger:
    """Sends ``PURGE`` with an ``xkey-purge`` header to every URL, concurrently.

    ``urls`` are the Varnish instances (``http://varnish:80``), each used as is
    for the request target (no path means ``/``).
    """

    def __init__(self, urls: Sequence[str], timeout_seconds: float) -> None:
        self._urls = tuple(urls)
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def purge(self, tags: Sequence[str]) -> None:
        values = list(chunk_tags(tags))
        if not values or not self._urls:
            return
        await asyncio.gather(*(self._send(url, value) for url in self._urls for value in values))

    async def _send(self, url: str, value: str) -> None:
        n_tags = value.count(" ") + 1
        try:
            response = await self._client.request("PURGE", url, headers={PURGE_HEADER: value})
        except httpx.HTTPError as exc:
            CDN_PURGES.labels("error").inc()
            log.warning(
                "cdn purge failed",
                extra={"url": url, "tags": n_tags, "error": repr(exc)},
            )
            return
        if response.status_code != httpx.codes.OK:
            CDN_PURGES.labels("error").inc()
            log.warning(
                "cdn purge refused",
                extra={"url": url, "tags": n_tags, "status": response.status_code},
            )
            return
        CDN_PURGES.labels("ok").inc()

    async def close(self) -> None:
        await self._client.aclose()
