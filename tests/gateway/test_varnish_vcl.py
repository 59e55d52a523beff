"""``deploy/varnish/default.vcl`` in a real varnishd, in front of a tiny backend
that counts its hits per path and answers with the headers each test sets.

Every test uses paths and tags of its own, so the one Varnish of this module
never holds an object another test could see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from murmur_devstack.ports import free_port
from murmur_devstack.varnish import Varnish, run_varnish, vcl_for_backend
from murmur_gateway.purge import MAX_HEADER_VALUE_BYTES, VarnishPurger, chunk_tags

DEFAULT_VCL = Path(__file__).resolve().parents[2] / "deploy" / "varnish" / "default.vcl"

PUBLIC = "public, max-age=30, s-maxage=300, stale-while-revalidate=30, stale-if-error=86400"
IMMUTABLE = "public, max-age=31536000, immutable"
# Expires after 1 s; stale-while-revalidate 1 s, stale-if-error 60 s.
SHORT = "public, max-age=1, s-maxage=1, stale-while-revalidate=1, stale-if-error=60"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # Repeated header lines, added after ``headers``.
    lines: list[tuple[str, str]] = field(default_factory=list)


class Backend:
    """Answers ``<path> #<n>`` (n: this path's hit count) with the path's reply."""

    def __init__(self) -> None:
        self.port = 0
        self.replies: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self.seen: dict[str, list[dict[str, str]]] = {}
        self.app = Starlette(routes=[Route("/{path:path}", self._serve, methods=["GET"])])

    def reply(self, path: str, cache_control: str | None = None, **headers: str) -> None:
        values = {k.replace("_", "-"): v for k, v in headers.items()}
        if cache_control is not None:
            values["Cache-Control"] = cache_control
        self.replies[path] = Reply(headers=values)

    async def _serve(self, request: Request) -> Response:
        path = request.url.path
        if path == "/readyz":  # Varnish's health probe
            return PlainTextResponse("ready")
        self.hits[path] += 1
        self.seen.setdefault(path, []).append(dict(request.headers))
        reply = self.replies.get(path, Reply())
        response = PlainTextResponse(
            f"{path} #{self.hits[path]}", status_code=reply.status, headers=reply.headers
        )
        response.raw_headers.extend((k.lower().encode(), v.encode()) for k, v in reply.lines)
        return response


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn in the test's loop, leaving the process's signals alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[Backend]:
    served = Backend()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    served.port = sock.getsockname()[1]
    config = uvicorn.Config(served.app, lifespan="off", log_level="warning", ws="none")
    server = _EmbeddedUvicorn(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the test backend stopped at start")
            await asyncio.sleep(0.01)
        yield served
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture(scope="module")
async def varnish(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Varnish]:
    async with run_varnish(
        "127.0.0.1", backend.port, tmp_path_factory.mktemp("varnish"), vcl_source=DEFAULT_VCL
    ) as v:
        yield v


@pytest.fixture
async def client(varnish: Varnish) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=varnish.url, timeout=10) as c:
        yield c


def new_path(kind: str = "users") -> str:
    return f"/v1/{kind}/{uuid.uuid4()}/timeline"


def new_tag(name: str) -> str:
    return f"{name}:{uuid.uuid4()}"


def purges(result: str) -> float:
    return REGISTRY.get_sample_value("murmur_gateway_cdn_purges_total", {"result": result}) or 0.0


async def test_public_response_is_served_from_the_cache(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = new_path()
    backend.reply(path, PUBLIC, Surrogate_Key="user:1:public post:2", Vary="Accept-Encoding")

    first = await client.get(path)
    second = await client.get(path)

    assert first.status_code == second.status_code == 200
    assert backend.hits[path] == 1
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.text == first.text == f"{path} #1"
    # Browsers get the gateway's Cache-Control unchanged, never the tags.
    assert second.headers["cache-control"] == PUBLIC
    for response in (first, second):
        for internal in ("surrogate-key", "xkey", "x-murmur-swr", "x-murmur-stale"):
            assert internal not in response.headers


async def test_immutable_blob_is_cached(client: httpx.AsyncClient, backend: Backend) -> None:
    path = f"/v1/blobs/{uuid.uuid4().hex}{uuid.uuid4().hex}"
    backend.reply(path, IMMUTABLE)

    await client.get(path)
    again = await client.get(path)

    assert backend.hits[path] == 1
    assert again.headers["x-cache"] == "HIT"


async def warm(client: httpx.AsyncClient, backend: Backend, **tags_by_path: str) -> None:
    for path, tags in tags_by_path.items():
        backend.reply(path, PUBLIC, Surrogate_Key=tags)
        await client.get(path)
        assert (await client.get(path)).headers["x-cache"] == "HIT"


async def test_purge_drops_only_objects_with_the_tag(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    tag_a, tag_b = new_tag("tagA"), new_tag("tagB")
    only_a, both, only_b = new_path(), new_path(), new_path()
    await warm(
        client,
        backend,
        **{only_a: tag_a, both: f"{tag_b} {tag_a}", only_b: tag_b},
    )

    purged = await client.request("PURGE", "/", headers={"xkey-purge": tag_a})

    assert purged.status_code == 200
    assert purged.text.strip() == purged.headers["xkey-purged"] == "2"
    for path in (only_a, both, only_b):
        await client.get(path)
    assert (backend.hits[only_a], backend.hits[both], backend.hits[only_b]) == (2, 2, 1)


async def test_purge_with_several_tags(client: httpx.AsyncClient, backend: Backend) -> None:
    tag_a, tag_b, tag_c = new_tag("a"), new_tag("b"), new_tag("c")
    path_a, path_b = new_path(), new_path()
    await warm(client, backend, **{path_a: tag_a, path_b: tag_b})

    purged = await client.request("PURGE", "/", headers={"xkey-purge": f"{tag_a} {tag_b} {tag_c}"})

    assert purged.text.strip() == "2"
    assert (await client.get(path_a)).headers["x-cache"] == "MISS"
    assert (await client.get(path_b)).headers["x-cache"] == "MISS"


async def test_every_surrogate_key_line_is_a_tag(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    tag_a, tag_b = new_tag("a"), new_tag("b")
    path = new_path()
    backend.reply(path, PUBLIC)
    backend.replies[path].lines = [("Surrogate-Key", tag_a), ("Surrogate-Key", tag_b)]
    await client.get(path)
    cached = await client.get(path)
    assert cached.headers["x-cache"] == "HIT"
    assert "surrogate-key" not in cached.headers

    purged = await client.request("PURGE", "/", headers={"xkey-purge": tag_b})

    assert purged.text.strip() == "1"
    assert (await client.get(path)).headers["x-cache"] == "MISS"


async def test_varnish_purger_purges(
    client: httpx.AsyncClient, backend: Backend, varnish: Varnish
) -> None:
    tag_a, tag_b = new_tag("tagA"), new_tag("tagB")
    path_a, path_b = new_path(), new_path()
    await warm(client, backend, **{path_a: tag_a, path_b: tag_b})
    # Enough tags for several requests: the one that matters comes last.
    tags = [new_tag("user") for _ in range(300)] + [tag_a]
    chunks = len(list(chunk_tags(tags)))
    assert chunks > 1
    ok_before, error_before = purges("ok"), purges("error")

    purger = VarnishPurger([varnish.url], timeout_seconds=5)
    try:
        await purger.purge(tags)
    finally:
        await purger.close()

    assert purges("ok") - ok_before == chunks
    assert purges("error") == error_before
    assert (await client.get(path_a)).headers["x-cache"] == "MISS"
    assert (await client.get(path_b)).headers["x-cache"] == "HIT"
    assert (backend.hits[path_a], backend.hits[path_b]) == (2, 1)


async def test_varnish_purger_survives_a_dead_cache(caplog: pytest.LogCaptureFixture) -> None:
    error_before, ok_before = purges("error"), purges("ok")
    purger = VarnishPurger([f"http://127.0.0.1:{free_port()}"], timeout_seconds=2)
    try:
        with caplog.at_level(logging.WARNING, logger="murmur_gateway.purge"):
            await purger.purge(["user:1:public", "post:2"])
    finally:
        await purger.close()

    assert purges("error") - error_before == 1
    assert purges("ok") == ok_before
    assert any(r.name == "murmur_gateway.purge" for r in caplog.records)


def test_chunk_tags() -> None:
    assert list(chunk_tags([])) == []
    assert list(chunk_tags(["a", "", "b", "a"])) == ["a b"]
    assert list(chunk_tags(["aaa", "bbb", "ccc"], max_bytes=7)) == ["aaa bbb", "ccc"]
    assert list(chunk_tags(["toolong", "x"], max_bytes=3)) == ["toolong", "x"]
    tags = [new_tag("user") for _ in range(500)]
    chunks = list(chunk_tags(tags))
    assert all(len(c.encode()) <= MAX_HEADER_VALUE_BYTES for c in chunks)
    assert [t for c in chunks for t in c.split(" ")] == tags


async def test_requests_with_authorization_are_never_cached(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = new_path()
    backend.reply(path, PUBLIC, Surrogate_Key=new_tag("user"))
    auth = {"Authorization": "Bearer token-of-alice"}

    for _ in range(2):
        assert (await client.get(path, headers=auth)).headers["x-cache"] == "MISS"
    assert backend.hits[path] == 2
    # Nor did they leave a copy for anonymous readers...
    assert (await client.get(path)).headers["x-cache"] == "MISS"
    assert backend.hits[path] == 3
    # ...and a cached anonymous copy is not what an authenticated reader gets.
    assert (await client.get(path)).headers["x-cache"] == "HIT"
    authed = await client.get(path, headers=auth)
    assert authed.headers["x-cache"] == "MISS"
    assert authed.text == f"{path} #4"
    assert backend.seen[path][-1]["authorization"] == "Bearer token-of-alice"


async def test_requests_with_a_cookie_are_never_cached(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = new_path()
    backend.reply(path, PUBLIC)

    for _ in range(2):
        await client.get(path, headers={"Cookie": "session=1"})

    assert backend.hits[path] == 2


@pytest.mark.parametrize(
    ("cache_control", "extra"),
    [
        pytest.param("private, max-age=300", {}, id="private"),
        pytest.param("private", {}, id="private-only"),
        pytest.param("no-store", {}, id="no-store"),
        pytest.param("public, no-cache, s-maxage=300", {}, id="no-cache"),
        pytest.param(PUBLIC, {"Set_Cookie": "a=b"}, id="set-cookie"),
        pytest.param(PUBLIC, {"Vary": "*"}, id="vary-star"),
        pytest.param(None, {}, id="no-cache-control"),
        pytest.param("public", {}, id="no-freshness"),
    ],
)
async def test_uncacheable_responses_are_never_stored(
    client: httpx.AsyncClient, backend: Backend, cache_control: str | None, extra: dict[str, str]
) -> None:
    path = new_path()
    backend.reply(path, cache_control, Surrogate_Key=new_tag("user"), **extra)

    for _ in range(3):
        response = await client.get(path)
        assert response.headers["x-cache"] == "MISS"
        assert "surrogate-key" not in response.headers

    assert backend.hits[path] == 3


async def test_other_methods_pass(client: httpx.AsyncClient, backend: Backend) -> None:
    path = new_path()
    backend.reply(path, PUBLIC)
    for method in ("POST", "DELETE"):
        # The backend only routes GET: 405 from it, through Varnish, uncached.
        assert (await client.request(method, path)).status_code == 405


async def test_vary_keeps_one_variant_per_raw_accept_encoding(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = new_path()
    backend.reply(path, PUBLIC, Vary="Accept-Encoding, Accept")
    encodings = ["br", "gzip", "zstd, br;q=0.9, gzip;q=0.1"]

    for _ in range(2):
        for encoding in encodings:
            await client.get(path, headers={"Accept-Encoding": encoding})

    assert backend.hits[path] == len(encodings)
    # Exactly what the client sent: Varnish neither rewrote it to gzip nor
    # compressed anything itself (http_gzip_support=off).
    assert [seen["accept-encoding"] for seen in backend.seen[path]] == encodings
    response = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert response.headers["x-cache"] == "HIT"
    assert "content-encoding" not in response.headers
    # Accept is part of the variant too.
    await client.get(path, headers={"Accept-Encoding": "gzip", "Accept": "application/x-msgpack"})
    assert backend.hits[path] == len(encodings) + 1


async def test_purge_needs_the_xkey_purge_header(client: httpx.AsyncClient) -> None:
    response = await client.request("PURGE", "/")

    assert response.status_code == 400
    assert "xkey-purge" in response.text


async def test_purge_from_outside_the_acl_is_forbidden(
    varnish: Varnish, client: httpx.AsyncClient, backend: Backend
) -> None:
    tag = new_tag("user")
    path = new_path()
    await warm(client, backend, **{path: tag})
    # 127.0.0.2 is loopback too, but only 127.0.0.1 is in the ACL.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, base_url=varnish.url) as outsider:
        response = await outsider.request("PURGE", "/", headers={"xkey-purge": tag})

    assert response.status_code == 403
    assert (await client.get(path)).headers["x-cache"] == "HIT"


async def test_unknown_methods_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.request("BAN", "/")).status_code == 405


async def expire(client: httpx.AsyncClient, backend: Backend) -> str:
    """A path cached with SHORT, now past its TTL and its swr window."""
    path = new_path()
    backend.reply(path, SHORT, Surrogate_Key=new_tag("user"))
    assert (await client.get(path)).text == f"{path} #1"
    await asyncio.sleep(2.5)
    return path


async def test_past_stale_while_revalidate_a_healthy_backend_is_asked(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = await expire(client, backend)

    response = await client.get(path)

    # Not the stale copy, though stale-if-error would allow it.
    assert response.text == f"{path} #2"
    assert backend.hits[path] == 2
    assert (await client.get(path)).headers["x-cache"] == "HIT"


async def test_stale_if_error_when_the_refresh_fails(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = await expire(client, backend)
    backend.replies[path].status = 500

    response = await client.get(path)

    assert response.status_code == 200
    assert response.text == f"{path} #1"
    assert backend.hits[path] >= 2


async def test_stale_if_error_while_the_backend_is_sick(
    client: httpx.AsyncClient, backend: Backend, varnish: Varnish
) -> None:
    path = await expire(client, backend)
    await varnish.adm("backend.set_health", "gateway", "sick")
    try:
        response = await client.get(path)
        missing = await client.get(new_path())
    finally:
        await varnish.adm("backend.set_health", "gateway", "auto")

    assert response.status_code == 200
    assert response.text == f"{path} #1"
    assert backend.hits[path] == 1
    assert missing.status_code == 503


async def test_within_stale_while_revalidate_the_stale_copy_is_served(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    path = new_path()
    backend.reply(path, "public, s-maxage=1, stale-while-revalidate=30")
    await client.get(path)
    await asyncio.sleep(1.5)

    response = await client.get(path)

    assert response.text == f"{path} #1"
    assert response.headers["x-cache"] == "HIT"
    # The background refresh follows (stored once its body is in: poll).
    for _ in range(100):
        fresh = await client.get(path)
        if fresh.text != f"{path} #1":
            break
        await asyncio.sleep(0.05)
    assert fresh.text == f"{path} #2"
    assert fresh.headers["x-cache"] == "HIT"
    assert backend.hits[path] == 2


def test_vcl_backend_lines_are_rewritten() -> None:
    source = DEFAULT_VCL.read_text()
    out = vcl_for_backend(source, "10.1.2.3", 1234)
    assert '.host = "10.1.2.3";  # MURMUR-BACKEND-HOST' in out
    assert '.port = "1234";  # MURMUR-BACKEND-PORT' in out
    assert '"gateway";  # MURMUR-BACKEND-HOST' in source
