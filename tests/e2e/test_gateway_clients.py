"""Real HTTP clients against the real gateway process: what they send, what
the gateway negotiates for them, and whether they can read what comes back.

- curl (``--compressed``, which advertises every coding its libcurl decodes:
  ``deflate, gzip, br, zstd`` for Debian's 7.88) and curl with explicit
  q-values; a conditional request answered 304.
- httpx asking for protobuf and msgpack.
- Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core from
  tools/node, see tools/node/browser_fetch.mjs) running ``fetch()`` in a page
  served by the gateway, so the requests are same-origin.

What Chromium 156 sends as ``Accept-Encoding`` (measured when this was
written): ``gzip, deflate, br, zstd`` over plain HTTP to 127.0.0.1 or
localhost (potentially trustworthy origins) and over HTTPS, but only
``gzip, deflate`` over plain HTTP to any other host name. So no TLS is needed
here, and with the browser's own header the gateway picks zstd (ties go to
zstd). Chromium 156 has no switch to stop offering zstd: the
``ZstdContentEncoding`` feature is gone (only a use-counter of that name is
left in the binary), so ``--disable-features=ZstdContentEncoding`` changes
nothing. The br case therefore replaces the browser's header with
``gzip, deflate, br`` (what a browser without zstd sends) through the
DevTools protocol's extra headers; the network stack keeps a header it was
given and decodes whatever it advertised, so the body is still decoded by the
browser. A third launch reaches the gateway under a non-loopback host name
(``--host-resolver-rules``) to see plain HTTP get gzip.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from murmur.api.v1 import api_pb2 as api
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack
from murmur_gateway.negotiation import choose_encoding

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "tools" / "node"
BROWSER_SCRIPT = NODE_DIR / "browser_fetch.mjs"
CHROMIUM = Path("/usr/bin/chromium")
CODINGS = ("zstd", "br", "gzip")
# One browser launch with a few fetches takes 1-3 s; the margin is for a
# loaded CI machine, and the script gives up on its own after twice its
# per-step timeout.
BROWSER_TIMEOUT_SECONDS = 120.0
CURL_TIMEOUT_SECONDS = 30.0
# Posts big enough that a page is well past the gateway's 512-byte threshold
# for compressing, small enough to stay inline (blob_inline_limit, 2 KB).
CIPHERTEXT_BYTES = 600


@dataclass(frozen=True)
class Feed:
    """``author`` posted ``public`` posts and one followers-only post;
    ``reader`` follows ``author``. Ids newest first."""

    author: str
    reader: str
    public: list[str]
    followers_only: str
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as client:
        yield client


async def _register(client: httpx.AsyncClient, user: str, token: str) -> None:
    reply = await client.post(
        "/v1/users",
        headers={"Authorization": f"Bearer {token}"},
        # Handles are 1-32 of a-z, 0-9, _ (user ids also allow "-").
        json={
            "handle": user.replace("-", "_")[:32],
            "public_key": base64.b64encode(b"pk-" + user.encode()).decode(),
        },
    )
    assert reply.status_code == 201, reply.text


async def _post(client: httpx.AsyncClient, token: str, audience: str) -> str:
    post_id = new_uuid7()
    reply = await client.post(
        "/v1/posts",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "id": post_id,
            "audience": audience,
            "ciphertext": base64.b64encode(secrets.token_bytes(CIPHERTEXT_BYTES)).decode(),
            "key_id": "k1",
        },
    )
    assert reply.status_code == 201, reply.text
    return post_id


@pytest.fixture(scope="module")
async def feed(gateway: httpx.AsyncClient, token_for: Callable[[str], str]) -> Feed:
    # Names of their own: the session's stack is shared with other modules.
    suffix = secrets.token_hex(4)
    author, reader = f"ca-{suffix}", f"cr-{suffix}"
    tokens = {author: token_for(author), reader: token_for(reader)}
    for user in (author, reader):
        await _register(gateway, user, tokens[user])
    followed = await gateway.post(
        f"/v1/users/{author}/follow", headers={"Authorization": f"Bearer {tokens[reader]}"}
    )
    assert followed.status_code == 200, followed.text
    public = [await _post(gateway, tokens[author], "public") for _ in range(3)]
    followers_only = await _post(gateway, tokens[author], "followers")
    public.append(await _post(gateway, tokens[author], "public"))
    made = Feed(author, reader, public[::-1], followers_only, tokens)
    # The reader's home page is assembled from the follow graph and the cache;
    # wait until it shows every post, so every client below reads one page.
    expected = {*public, followers_only}
    async with asyncio.timeout(10):
        while True:
            home = await gateway.get("/v1/timelines/home", headers=made.auth(reader))
            assert home.status_code == 200, home.text
            if {item["id"] for item in home.json()["items"]} == expected:
                return made
            await asyncio.sleep(0.1)


async def identity_read(
    gateway: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The reference answer: uncompressed JSON."""
    reply = await gateway.get(path, headers={**(headers or {}), "Accept-Encoding": "identity"})
    assert reply.status_code == 200, reply.text
    assert "content-encoding" not in reply.headers
    return reply


def vary_names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


# --- curl ------------------------------------------------------------------


@dataclass(frozen=True)
class CurlResult:
    status: int
    headers: dict[str, str]  # the final response's, names lower-cased
    body: bytes  # after curl decoded it
    sent: dict[str, str]  # request headers, from -v


async def curl(url: str, *args: str, workdir: Path) -> CurlResult:
    """One ``curl -v -sS`` run, headers dumped with -D, body to a file."""
    curl_path = shutil.which("curl")
    if curl_path is None:
        pytest.fail("curl is not installed (`make install` installs it)")
    name = secrets.token_hex(4)
    headers_file, body_file = workdir / f"{name}.headers", workdir / f"{name}.body"
    proc = await asyncio.create_subprocess_exec(
        curl_path,
        "-v",
        "-sS",
        "--max-time",
        str(int(CURL_TIMEOUT_SECONDS)),
        "-D",
        str(headers_file),
        "-o",
        str(body_file),
        "-w",
        "%{http_code}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CURL_TIMEOUT_SECONDS + 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"curl {url} did not finish in {CURL_TIMEOUT_SECONDS:.0f}s")
    stderr = err.decode(errors="replace")
    assert proc.returncode == 0, f"curl exited {proc.returncode}:\n{stderr}"
    # -v prints request headers as "> Name: value" on stderr.
    sent = {}
    for line in stderr.splitlines():
        if line.startswith("> ") and ":" in line:
            key, _, value = line[2:].partition(":")
            sent[key.strip().lower()] = value.strip()
    # -D holds every response of the run; the last block is the final one.
    blocks = [b for b in headers_file.read_text().replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers = {}
    for line in blocks[-1].splitlines()[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    # curl writes no -o file at all for an empty body (a 304).
    body = body_file.read_bytes() if body_file.exists() else b""
    return CurlResult(int(out.decode()), headers, body, sent)


async def test_curl_compressed_gets_the_best_coding_it_offers(
    stack: Stack, gateway: httpx.AsyncClient, feed: Feed, tmp_path: Path
) -> None:
    auth = feed.auth(feed.reader)
    reference = await identity_read(gateway, "/v1/timelines/home", auth)

    result = await curl(
        f"{stack.gateway_url}/v1/timelines/home",
        "--compressed",
        "-H",
        f"Authorization: {auth['Authorization']}",
        workdir=tmp_path,
    )

    assert result.status == 200
    offered = result.sent["accept-encoding"]
    coding = result.headers.get("content-encoding")
    assert coding in CODINGS, f"curl offered {offered!r}, the gateway sent {coding!r}"
    # The gateway's own rule (highest q, ties to zstd, br, gzip) on what this
    # curl offered: zstd for Debian 12's curl, which decodes all three.
    assert coding == choose_encoding(offered)
    assert json.loads(result.body) == reference.json()
    assert vary_names(result.headers["vary"]) == {"accept-encoding", "accept"}
    # One weak ETag for every coding of the same content.
    assert result.headers["etag"] == reference.headers["etag"]
    assert result.headers["cache-control"] == "private, no-cache"


async def test_curl_q_values_choose_the_coding(
    stack: Stack, gateway: httpx.AsyncClient, feed: Feed, tmp_path: Path
) -> None:
    auth = feed.auth(feed.reader)
    reference = await identity_read(gateway, "/v1/timelines/home", auth)

    # gzip excluded, br acceptable, zstd not named (and no "*"): br.
    result = await curl(
        f"{stack.gateway_url}/v1/timelines/home",
        "--compressed",
        "-H",
        "Accept-Encoding: gzip;q=0, br;q=0.5",
        "-H",
        f"Authorization: {auth['Authorization']}",
        workdir=tmp_path,
    )

    assert result.sent["accept-encoding"] == "gzip;q=0, br;q=0.5"
    assert result.status == 200
    assert result.headers["content-encoding"] == "br"
    assert json.loads(result.body) == reference.json()
    assert "accept-encoding" in vary_names(result.headers["vary"])


async def test_curl_conditional_request_is_answered_304(
    stack: Stack, gateway: httpx.AsyncClient, feed: Feed, tmp_path: Path
) -> None:
    auth = feed.auth(feed.reader)
    first = await curl(
        f"{stack.gateway_url}/v1/timelines/home",
        "--compressed",
        "-H",
        f"Authorization: {auth['Authorization']}",
        workdir=tmp_path,
    )
    etag = first.headers["etag"]
    assert etag.startswith('W/"')

    again = await curl(
        f"{stack.gateway_url}/v1/timelines/home",
        "--compressed",
        "-H",
        f"Authorization: {auth['Authorization']}",
        "-H",
        f"If-None-Match: {etag}",
        workdir=tmp_path,
    )

    assert again.status == 304
    assert again.body == b""
    # RFC 9110 §15.4.5: what a 200 would have carried, minus the body.
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "private, no-cache"
    assert vary_names(again.headers["vary"]) == {"accept-encoding", "accept"}
    assert "content-encoding" not in again.headers


# --- httpx: protobuf and msgpack ----------------------------------------------


async def test_httpx_protobuf_page(gateway: httpx.AsyncClient, feed: Feed) -> None:
    auth = feed.auth(feed.reader)
    reference = (await identity_read(gateway, "/v1/timelines/home", auth)).json()

    reply = await gateway.get(
        "/v1/timelines/home", headers={**auth, "Accept": "application/protobuf"}
    )

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/protobuf"
    page = api.PostPage.FromString(reply.content)  # httpx has undone the coding
    assert [post.id for post in page.items] == [item["id"] for item in reference["items"]]
    assert [post.ciphertext for post in page.items] == [
        base64.b64decode(item["ciphertext"]) for item in reference["items"]
    ]
    assert page.has_more == reference["has_more"]


async def test_httpx_msgpack_page(gateway: httpx.AsyncClient, feed: Feed) -> None:
    auth = feed.auth(feed.reader)
    reference = (await identity_read(gateway, "/v1/timelines/home", auth)).json()

    reply = await gateway.get(
        "/v1/timelines/home", headers={**auth, "Accept": "application/msgpack"}
    )

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/msgpack"
    page: dict[str, Any] = msgpack.unpackb(reply.content)
    assert [item["id"] for item in page["items"]] == [item["id"] for item in reference["items"]]
    # Binary fields are raw bin in msgpack, base64 in JSON.
    assert [item["ciphertext"] for item in page["items"]] == [
        base64.b64decode(item["ciphertext"]) for item in reference["items"]
    ]


# --- headless Chromium --------------------------------------------------------


async def _stop_node(proc: asyncio.subprocess.Process) -> None:
    # SIGTERM first: Playwright's handler closes the browser it launched (in a
    # process group of its own, out of reach of a kill of this one).
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def browser_fetch(
    page: str,
    fetches: list[dict[str, Any]],
    workdir: Path,
    *,
    accept_encoding: str | None = None,
    args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Runs tools/node/browser_fetch.mjs (see there for the spec and the
    answer) in a fresh profile; fails the test with Node's stderr if it fails."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (20 or newer) is needed to drive Chromium")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            f"{NODE_DIR}/node_modules lacks playwright-core: run `npm ci --prefix {NODE_DIR}`"
        )
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package chromium (`make install`)")
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / f"profile-{secrets.token_hex(4)}"
    profile.mkdir()
    spec = {
        "executable": str(CHROMIUM),
        "userDataDir": str(profile),
        "page": page,
        "acceptEncoding": accept_encoding,
        "args": list(args),
        "fetches": fetches,
        "timeoutMs": 30_000,
    }
    stderr_path = workdir / f"{profile.name}.stderr"
    with stderr_path.open("wb") as stderr_file:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(BROWSER_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_file,
            start_new_session=True,
        )
    try:
        out, _ = await asyncio.wait_for(
            proc.communicate(json.dumps(spec).encode()), BROWSER_TIMEOUT_SECONDS
        )
    except TimeoutError:
        await _stop_node(proc)
        pytest.fail(
            f"browser_fetch.mjs did not finish in {BROWSER_TIMEOUT_SECONDS:.0f}s; stderr:\n"
            + stderr_path.read_text(errors="replace")
        )
    stderr = stderr_path.read_text(errors="replace")
    if proc.returncode != 0:
        pytest.fail(f"browser_fetch.mjs exited {proc.returncode}; stderr:\n{stderr}")
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        pytest.fail(f"browser_fetch.mjs printed no JSON: {out[:2000]!r}; stderr:\n{stderr}")
    return answer


def public_path(feed: Feed) -> str:
    return f"/v1/users/{feed.author}/posts"


def browser_fetches(feed: Feed) -> list[dict[str, Any]]:
    """The same two reads for every launch: anonymous public posts, then the
    reader's home timeline with a bearer token set by the page."""
    return [
        {"path": public_path(feed)},
        {"path": "/v1/timelines/home", "headers": feed.auth(feed.reader)},
    ]


@dataclass(frozen=True)
class BrowserRun:
    answer: dict[str, Any]
    # The identity JSON httpx got for each fetch, in the same order.
    references: list[httpx.Response]


async def _browser_run(
    gateway: httpx.AsyncClient,
    feed: Feed,
    workdir: Path,
    page: str,
    **options: Any,
) -> BrowserRun:
    answer = await browser_fetch(page, browser_fetches(feed), workdir, **options)
    references = [
        await identity_read(gateway, public_path(feed)),
        await identity_read(gateway, "/v1/timelines/home", feed.auth(feed.reader)),
    ]
    return BrowserRun(answer, references)


@pytest.fixture(scope="module")
async def native_browser(
    stack: Stack,
    gateway: httpx.AsyncClient,
    feed: Feed,
    tmp_path_factory: pytest.TempPathFactory,
) -> BrowserRun:
    """Chromium with its own Accept-Encoding, on http://127.0.0.1."""
    return await _browser_run(
        gateway, feed, tmp_path_factory.mktemp("chromium-native"), f"{stack.gateway_url}/healthz"
    )


@pytest.fixture(scope="module")
async def br_browser(
    stack: Stack,
    gateway: httpx.AsyncClient,
    feed: Feed,
    tmp_path_factory: pytest.TempPathFactory,
) -> BrowserRun:
    """Chromium offering ``gzip, deflate, br``, as a browser without zstd does."""
    return await _browser_run(
        gateway,
        feed,
        tmp_path_factory.mktemp("chromium-br"),
        f"{stack.gateway_url}/healthz",
        accept_encoding="gzip, deflate, br",
    )


def check_decoded(run: BrowserRun, expected_coding: str) -> None:
    """Every fetch of ``run`` came compressed with ``expected_coding`` and the
    page got the JSON httpx got uncompressed."""
    fetches = run.answer["fetches"]
    assert len(fetches) == len(run.references)
    for fetched, reference in zip(fetches, run.references, strict=True):
        where = fetched["path"]
        assert fetched.get("error") is None, f"{where}: {fetched['error']}"
        assert fetched["status"] == 200, f"{where}: {fetched['text']}"
        wire = fetched["wire"]
        assert wire["headers"].get("content-encoding") == expected_coding, where
        # Same-origin: the page sees the header too.
        assert fetched["headers"].get("content-encoding") == expected_coding, where
        assert vary_names(fetched["headers"]["vary"]) == {"accept-encoding", "accept"}, where
        # The browser decoded the body: the page got the same JSON, and fewer
        # bytes crossed the wire than it read.
        assert fetched["json"] == reference.json(), where
        timing = fetched["timing"]
        assert timing["decodedBodySize"] == len(reference.content), where
        assert 0 < timing["encodedBodySize"] < timing["decodedBodySize"], where
        assert fetched["headers"]["etag"] == reference.headers["etag"], where


async def test_chromium_offers_zstd_and_br_over_http_to_loopback(
    native_browser: BrowserRun,
) -> None:
    sent = [f["sent"]["accept-encoding"] for f in native_browser.answer["fetches"]]
    # Chromium 156's own header; br and zstd are offered to 127.0.0.1 without TLS.
    for header in sent:
        offered = {element.split(";")[0].strip() for element in header.split(",")}
        assert {"gzip", "br", "zstd"} <= offered, header


async def test_chromium_negotiates_zstd_by_default_and_decodes_it(
    native_browser: BrowserRun,
) -> None:
    # Equal weights: the gateway's order puts zstd first.
    for fetched in native_browser.answer["fetches"]:
        assert choose_encoding(fetched["sent"]["accept-encoding"]) == "zstd"
    check_decoded(native_browser, "zstd")


async def test_chromium_negotiates_br_and_decodes_it(br_browser: BrowserRun) -> None:
    for fetched in br_browser.answer["fetches"]:
        # What reached the gateway, as the network stack sent it.
        assert fetched["sent"]["accept-encoding"] == "gzip, deflate, br"
    check_decoded(br_browser, "br")


async def test_chromium_public_read_is_anonymous_and_public(
    br_browser: BrowserRun, feed: Feed
) -> None:
    public, home = br_browser.answer["fetches"]
    assert "authorization" not in public["sent"]
    # Without a token: the public posts only, cacheable by anyone.
    assert [item["id"] for item in public["json"]["items"]] == feed.public
    assert public["headers"]["cache-control"].startswith("public, ")
    # With the token the page set: the reader's own view, followers-only included.
    assert home["sent"]["authorization"] == feed.auth(feed.reader)["Authorization"]
    assert feed.followers_only in {item["id"] for item in home["json"]["items"]}
    assert home["headers"]["cache-control"] == "private, no-cache"


async def test_chromium_over_plain_http_to_a_host_name_gets_gzip(
    stack: Stack,
    gateway: httpx.AsyncClient,
    feed: Feed,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A name that is not loopback to the browser (it still resolves to
    # 127.0.0.1, through the browser's own resolver rules): not a trustworthy
    # origin, so Chromium offers neither br nor zstd over plain HTTP.
    port = stack.port("GATEWAY_PORT")
    run = await _browser_run(
        gateway,
        feed,
        tmp_path_factory.mktemp("chromium-hostname"),
        f"http://murmur.test:{port}/healthz",
        args=("--host-resolver-rules=MAP murmur.test 127.0.0.1",),
    )
    for fetched in run.answer["fetches"]:
        assert fetched["sent"]["accept-encoding"] == "gzip, deflate"
    check_decoded(run, "gzip")


async def test_chromium_revalidates_a_private_page_with_its_etag(
    stack: Stack, gateway: httpx.AsyncClient, feed: Feed, tmp_path: Path
) -> None:
    # The browser's own HTTP cache: "private, no-cache" lets it keep the page
    # and makes it ask again with If-None-Match before each use.
    auth = feed.auth(feed.reader)
    reference = await identity_read(gateway, "/v1/timelines/home", auth)
    home = {"path": "/v1/timelines/home", "headers": auth, "cache": "default"}

    answer = await browser_fetch(f"{stack.gateway_url}/healthz", [home, home], tmp_path)

    first, second = answer["fetches"]
    assert first["wire"]["bodySize"] > 0
    assert second["sent"]["if-none-match"] == first["headers"]["etag"] == reference.headers["etag"]
    # A 304 on the wire (Playwright reports the status of the cached response
    # it completed: 200): no body crossed, headers only.
    assert second["wire"]["bodySize"] == 0
    assert second["timing"]["transferSize"] < second["timing"]["encodedBodySize"]
    assert vary_names(second["wire"]["headers"]["vary"]) == {"accept-encoding", "accept"}
    # The page still gets the whole page, decoded from the stored copy.
    assert second["status"] == 200
    assert second["json"] == first["json"] == reference.json()
