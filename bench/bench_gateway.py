"""Gateway benchmark: bytes on the wire and server CPU per request of a 20-item
home page in every representation, and the throughput of a cached home page
next to a bare FastAPI endpoint serving the same bytes, measured in one run.

Stack. ``murmur_devstack.Stack`` starts NATS, Redis, the timeline, the cache,
the pipeline and the gateway on free ports, with a signing key of the run's
own. The gateway's rate limits are raised for the whole run (user and address
1,000/s, burst 10,000,000: every request is still checked against the local
buckets and settled with Redis every 50 ms, it just never refuses); everything
else is the gateway's defaults.

World. One reader follows 20 authors (ids like ``usr_3f9a...``, handles like
``maya_chen``); the authors and the reader post 26 posts through the gateway
(1 KB of ``os.urandom`` ciphertext each, key ids like ``device-3f9a...``, a
third followers-only, some replies, some expiring in 1-7 days, ids UUIDv7
spread over the last 12 hours), so the reader's home page (``limit=20``) holds
the 20 newest, with more behind it.

Bytes. For each media type (JSON, msgpack, protobuf) x content coding (none,
gzip, br, zstd) x field set (full; list view ``fields=items(id,author_id,
audience,key_id,created_at,expires_at,reply_to,ciphertext_size),next_cursor,
has_more``, which leaves the ciphertext out), the home page is fetched over a
raw HTTP/1.1 connection and the body is counted as it came off the socket
(compressed), the status line and headers apart. Every body is decoded with
libraries of the benchmark's own (json, msgpack, protobuf; zstandard, brotli,
zlib) and checked: the same 20 ids, newest first, each full-view ciphertext
byte for byte what was posted, no ciphertext in list views.

* list view reduction = 1 - (smallest list-view body) / (full JSON, uncompressed);
  target >= 0.80.
* full view overhead = (smallest full-view body) / (20 x (1,024 + 150)) - 1, i.e.
  against the raw ciphertext plus 150 bytes per item; target <= 0.10.

CPU. The gateway's CPU time per request (scheduler ns counters of its
threads, ``/proc/<pid>/task/*/schedstat``) over N requests of each cell, 4 in
flight, on keep-alive connections:

* cached: the gateway as configured, whose near cache keeps each rendered
  variant for about 1 s (``GATEWAY_NEAR_CACHE_TTL_SECONDS``): mostly the cached
  path (authentication, the rate-limit check, a near-cache hit), re-rendered
  about once a second.
* rendered: a second gateway process with the near cache off (TTL 0): every
  request reads the page from the cache service over gRPC, builds the
  document, selects fields, encodes and compresses.
* encode: the gateway's own document building and ``render()`` (field
  selection, encoding, compression) timed in this process on the same posts:
  what the media type and coding themselves cost, without the rest.

Throughput. ``wrk --latency`` (1 thread, 16 connections) against the cached
home page (full JSON, identity: no ``Accept-Encoding``, as wrk sends) through
the gateway, then against a bare FastAPI app in its own process under uvicorn
with the gateway's server options (uvloop, httptools, one worker, no access
log) whose one route returns the gateway's captured body and headers as
pre-serialised bytes (no authentication, no rate limit, no cache). Each runs
alone, after an unmeasured warm-up. throughput_ratio = gateway req/s / bare
req/s (target >= 0.50); p99_ms is the gateway's. Then a shorter run against a
third gateway process with rate limits off (rate 0) shows what rate limiting
costs. The CPU of the servers, Redis and wrk itself (``getrusage`` of the
reaped child) is reported per request: everything shares the same cores.

``--quick`` runs in under a minute; the default takes about two. The last
line printed is the summary: ``bench=gateway list_view_reduction=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import random
import re
import resource
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import benchlib
import brotli  # type: ignore[import-untyped]
import httptools
import httpx
import msgpack
import zstandard
from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse

from murmur.api.v1 import api_pb2 as api
from murmur.timeline.v1 import resources_pb2 as res
from murmur_devstack import DevKeys, ManagedProcess, Stack, free_ports, http_readyz
from murmur_devstack.process import ProcessSpec
from murmur_gateway.documents import page_doc, post_doc
from murmur_gateway.fields import ALL, compile_fields
from murmur_gateway.representation import Variant, render

LIMIT = 20
CIPHERTEXT_BYTES = 1024
PER_ITEM_ALLOWANCE = 150  # bytes of metadata per item the full-view target allows
TARGET_LIST_REDUCTION = 0.80
TARGET_FULL_OVERHEAD = 0.10
TARGET_THROUGHPUT_RATIO = 0.50
LIST_FIELDS = (
    "items(id,author_id,audience,key_id,created_at,expires_at,reply_to,ciphertext_size),"
    "next_cursor,has_more"
)
MEDIA_TYPES = {
    "json": "application/json",
    "msgpack": "application/msgpack",
    "protobuf": "application/protobuf",
}
CODINGS = ("identity", "gzip", "br", "zstd")
VIEWS = ("full", "list")
HOME_PATH = f"/v1/timelines/home?limit={LIMIT}"
# Limits that never refuse, so the measured path keeps the limiter's work.
RAISED_RATE = 1000
RAISED_BURST = 10_000_000
RAISED_LIMITS = {
    "GATEWAY_RATE_LIMIT_USER_PER_SECOND": str(RAISED_RATE),
    "GATEWAY_RATE_LIMIT_USER_BURST": str(RAISED_BURST),
    "GATEWAY_RATE_LIMIT_ADDRESS_PER_SECOND": str(RAISED_RATE),
    "GATEWAY_RATE_LIMIT_ADDRESS_BURST": str(RAISED_BURST),
}
NO_LIMITS = {
    "GATEWAY_RATE_LIMIT_USER_PER_SECOND": "0",
    "GATEWAY_RATE_LIMIT_ADDRESS_PER_SECOND": "0",
}
NO_NEAR_CACHE = {"GATEWAY_NEAR_CACHE_TTL_SECONDS": "0"}
BENCH_FILE = Path(__file__).resolve()
REPO_ROOT = BENCH_FILE.parent.parent
# While waiting for quiet: the stack counts as idle below this share of a core.
IDLE_CORES = 0.1
# Response headers the bare endpoint repeats (the server adds its own date and length).
COPIED_HEADERS = ("etag", "vary", "cache-control")

HANDLES = (
    "maya_chen", "oskar_lind", "priya_raman", "tomas_novak", "amara_okafor", "lea_dubois",
    "kenji_sato", "sofia_rossi", "liam_byrne", "noor_haddad", "ines_ferreira", "jonas_weber",
    "aisha_bello", "mateo_garcia", "hana_kim", "elif_yilmaz", "david_cohen", "zoe_martin",
    "arjun_mehta", "freya_olsen", "samir_nasser",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    cached_requests: int  # per cell
    rendered_requests: int  # per cell
    encode_iterations: int  # per batch, 5 batches per cell
    wrk_warmup_seconds: int
    wrk_seconds: int
    wrk_no_limits_seconds: int
    concurrency: int = 4
    wrk_connections: int = 16
    seed: int = 20261122
    is_quick: bool = False

    @classmethod
    def quick(cls) -> Config:
        return cls(
            cached_requests=150,
            rendered_requests=80,
            encode_iterations=20,
            wrk_warmup_seconds=1,
            wrk_seconds=3,
            wrk_no_limits_seconds=2,
            is_quick=True,
        )

    @classmethod
    def full(cls) -> Config:
        return cls(
            cached_requests=1000,
            rendered_requests=400,
            encode_iterations=100,
            wrk_warmup_seconds=2,
            wrk_seconds=10,
            wrk_no_limits_seconds=5,
        )


# The world: a reader, the authors they follow, their posts


@dataclass(frozen=True)
class SeedPost:
    id: str
    author: str
    audience: str
    ciphertext: bytes
    key_id: str
    reply_to: str | None
    expires_at: str | None

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "audience": self.audience,
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
            "key_id": self.key_id,
        }
        if self.reply_to is not None:
            doc["reply_to"] = self.reply_to
        if self.expires_at is not None:
            doc["expires_at"] = self.expires_at
        return doc


@dataclass(frozen=True)
class World:
    reader: str
    authors: list[str]
    handles: dict[str, str]
    posts: list[SeedPost]  # oldest first

    @property
    def users(self) -> list[str]:
        return [self.reader, *self.authors]

    def expected_page(self) -> list[SeedPost]:
        return sorted(self.posts, key=lambda p: p.id, reverse=True)[:LIMIT]


def uuid7_at(unix_ms: int, rng: random.Random) -> str:
    """A canonical UUIDv7 whose time is ``unix_ms`` (RFC 9562 §5.7)."""
    value = (unix_ms & (2**48 - 1)) << 80
    value |= 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def make_world(seed: int) -> World:
    rng = random.Random(seed)
    users = [f"usr_{rng.randbytes(10).hex()}" for _ in HANDLES]
    reader, authors = users[0], users[1:]
    handles = dict(zip(users, HANDLES, strict=True))
    # One or two devices each, every device with a key of its own.
    devices = {
        u: [f"device-{rng.randbytes(8).hex()}" for _ in range(rng.choice((1, 1, 2)))] for u in users
    }
    now_ms = int(time.time() * 1000)
    # 26 posts over the last 12 hours: every author at least once, two by the
    # reader (their own posts are on their home page too), a few authors twice.
    posters = [*authors, reader, reader, *rng.sample(authors, 4)]
    stamps = sorted(now_ms - rng.randint(60_000, 12 * 3600 * 1000) for _ in posters)
    rng.shuffle(posters)
    posts: list[SeedPost] = []
    for author, stamp in zip(posters, stamps, strict=True):
        reply_to = rng.choice(posts).id if posts and rng.random() < 0.3 else None
        expires = None
        if rng.random() < 0.25:
            seconds = (now_ms + rng.randint(1, 7) * 86_400_000) / 1000
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
        posts.append(
            SeedPost(
                id=uuid7_at(stamp, rng),
                author=author,
                audience="followers" if rng.random() < 0.33 else "public",
                ciphertext=os.urandom(CIPHERTEXT_BYTES),
                key_id=rng.choice(devices[author]),
                reply_to=reply_to,
                expires_at=expires,
            )
        )
    return World(reader, authors, handles, posts)


async def seed(
    http: benchlib.LeanHttp, world: World, headers: Mapping[str, dict[str, str]]
) -> None:
    """Users, follows and posts through the gateway's public API."""

    async def call(method: str, path: str, user: str, body: dict[str, Any] | None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        status, reply = await http.request(method, path, headers[user], payload)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path} as {user}: {status} {reply[:300]!r}")

    await asyncio.gather(
        *(
            call(
                "POST",
                "/v1/users",
                u,
                {
                    "handle": world.handles[u],
                    "public_key": base64.b64encode(os.urandom(32)).decode(),
                },
            )
            for u in world.users
        )
    )
    await asyncio.gather(
        *(call("POST", f"/v1/users/{a}/follow", world.reader, None) for a in world.authors)
    )
    for post in world.posts:  # in id order, as clients post
        await call("POST", "/v1/posts", post.author, post.body())


# One cell of the table: a representation of the home page


@dataclass(frozen=True)
class Cell:
    view: str  # "full" or "list"
    media: str  # "json", "msgpack" or "protobuf"
    coding: str  # "identity", "gzip", "br" or "zstd"

    @property
    def name(self) -> str:
        return f"{self.view}_{self.media}_{self.coding}"

    @property
    def path(self) -> str:
        return HOME_PATH if self.view == "full" else f"{HOME_PATH}&fields={LIST_FIELDS}"

    def headers(self, auth: Mapping[str, str]) -> dict[str, str]:
        return {**auth, "Accept": MEDIA_TYPES[self.media], "Accept-Encoding": self.coding}

    def variant(self) -> Variant:
        projection = ALL if self.view == "full" else compile_fields(LIST_FIELDS)
        return Variant(MEDIA_TYPES[self.media], projection, self.coding)


CELLS = [Cell(v, m, c) for v in VIEWS for m in MEDIA_TYPES for c in CODINGS]
BASELINE = Cell("full", "json", "identity")


@dataclass
class CellResult:
    cell: Cell
    body_bytes: int = 0
    header_bytes: int = 0
    sent_coding: str = ""
    problems: list[str] = field(default_factory=list)
    cpu_cached_us: float = math.nan
    cpu_rendered_us: float = math.nan
    encode_us: float = math.nan
    errors: int = 0  # non-200 answers in the CPU runs


# A raw HTTP/1.1 exchange: the bytes exactly as they came off the socket


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    wire_bytes: int  # status line, headers and body as received


class _Collector:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.done = True


async def fetch_raw(base_url: str, path: str, headers: Mapping[str, str]) -> RawReply:
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode() + b"\r\n")
        collector = _Collector()
        parser = httptools.HttpResponseParser(collector)
        received = 0
        async with asyncio.timeout(20):
            while not collector.done:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection mid-reply")
                received += len(data)
                parser.feed_data(data)
        return RawReply(
            parser.get_status_code(), collector.headers, bytes(collector.body), received
        )
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def decompress(body: bytes, coding: str) -> bytes:
    """The benchmark's own decoders, not the gateway's."""
    if coding == "identity":
        return body
    if coding == "gzip":
        return zlib.decompress(body, wbits=31)
    if coding == "br":
        data: bytes = brotli.decompress(body)
        return data
    if coding == "zstd":
        stream = zstandard.ZstdDecompressor().decompressobj()
        return stream.decompress(body)
    raise ValueError(f"unknown content coding {coding!r}")


@dataclass
class Item:
    id: str
    author_id: str
    ciphertext: bytes | None
    ciphertext_size: int
    key_id: str


def decode_page(media: str, data: bytes) -> tuple[list[Item], bool, bool]:
    """(items, has_more, next_cursor given)."""
    if media == "protobuf":
        page = api.PostPage.FromString(data)
        items = [
            Item(i.id, i.author_id, i.ciphertext or None, i.ciphertext_size, i.key_id)
            for i in page.items
        ]
        return items, page.has_more, bool(page.next_cursor)
    doc: dict[str, Any] = json.loads(data) if media == "json" else msgpack.unpackb(data, raw=False)

    def blob(value: Any) -> bytes | None:
        if value is None:
            return None
        return base64.b64decode(value) if media == "json" else bytes(value)

    items = [
        Item(
            d["id"],
            d.get("author_id", ""),
            blob(d.get("ciphertext")),
            int(d.get("ciphertext_size", -1)),
            d.get("key_id", ""),
        )
        for d in doc["items"]
    ]
    return items, bool(doc.get("has_more")), bool(doc.get("next_cursor"))


def check_reply(cell: Cell, reply: RawReply, world: World) -> list[str]:
    """What is wrong with one cell's answer (nothing: an empty list)."""
    if reply.status != 200:
        return [f"status {reply.status}: {reply.body[:200]!r}"]
    problems: list[str] = []
    media_type = reply.headers.get("content-type", "").split(";")[0].strip()
    if media_type != MEDIA_TYPES[cell.media]:
        problems.append(f"content-type {media_type!r}")
    coding = reply.headers.get("content-encoding", "identity")
    if coding != cell.coding:
        problems.append(f"content-encoding {coding!r}, asked for {cell.coding!r}")
    try:
        items, has_more, cursor = decode_page(cell.media, decompress(reply.body, coding))
    except Exception as exc:
        return [*problems, f"undecodable: {type(exc).__name__}: {exc}"]
    expected = world.expected_page()
    if [i.id for i in items] != [p.id for p in expected]:
        problems.append(f"ids differ from the 20 newest posts ({len(items)} items)")
        return problems
    if not (has_more and cursor):
        problems.append("no next_cursor / has_more")
    for item, post in zip(items, expected, strict=True):
        if item.author_id != post.author or item.key_id != post.key_id:
            problems.append(f"{item.id}: author or key id differ")
            break
        if item.ciphertext_size != CIPHERTEXT_BYTES:
            problems.append(f"{item.id}: ciphertext_size {item.ciphertext_size}")
            break
        if cell.view == "full" and item.ciphertext != post.ciphertext:
            problems.append(f"{item.id}: ciphertext differs from what was posted")
            break
        if cell.view == "list" and item.ciphertext is not None:
            problems.append(f"{item.id}: list view carries the ciphertext")
            break
    return problems


# CPU


def cpu_of(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: benchlib.process_cpu_seconds_precise(pid) for name, pid in pids.items()}


async def settle(pids: Sequence[int], limit: float = 10.0) -> float:
    """Wait until these processes together use less than IDLE_CORES."""
    started = time.perf_counter()
    window = 0.25
    while time.perf_counter() - started < limit:
        before = sum(benchlib.process_cpu_seconds_precise(p) for p in pids)
        await asyncio.sleep(window)
        after = sum(benchlib.process_cpu_seconds_precise(p) for p in pids)
        if (after - before) / window < IDLE_CORES:
            break
    return time.perf_counter() - started


@dataclass
class CpuRun:
    us_per_request: dict[str, float]  # process name -> CPU µs per request
    errors: int
    seconds: float


async def cpu_per_request(
    http: benchlib.LeanHttp,
    pids: Mapping[str, int],
    path: str,
    headers: Mapping[str, str],
    requests: int,
    concurrency: int,
) -> CpuRun:
    """CPU of each process per request over ``requests`` requests of one
    variant, ``concurrency`` in flight, after one unmeasured request."""
    errors = 0
    status, _ = await http.request("GET", path, headers)
    errors += status != 200
    todo = iter(range(requests))

    async def worker() -> None:
        nonlocal errors
        for _ in todo:
            status, _ = await http.request("GET", path, headers)
            errors += status != 200

    before = cpu_of(pids)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    after = cpu_of(pids)
    return CpuRun(
        {k: (after[k] - before[k]) * 1e6 / requests for k in pids},
        errors,
        seconds,
    )


def encode_cost_us(page: api.PostPage, cell: Cell, iterations: int) -> float:
    """The gateway's own per-request rendering of this variant, in this
    process: documents from the posts, field selection, encoding and
    compression (Reads._page_reply without the cursor and the near cache).
    Best of 5 batches: the least disturbed by whatever else runs."""
    posts = []
    for item in page.items:
        post = res.Post.FromString(item.SerializeToString())  # numbers 1-8 are shared
        post.DiscardUnknownFields()
        posts.append(post)
    variant = cell.variant()
    cursor = page.next_cursor or None

    def once() -> None:
        items = [post_doc(p, inline_limit=2048) for p in posts]
        render(page_doc(items, cursor), api.PostPage, variant, "v")

    once()
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(iterations):
            once()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best * 1e6


# wrk


@dataclass
class WrkResult:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    bytes_read: float
    non_2xx: int
    socket_errors: int
    wrk_cpu_s: float
    cpu_s: dict[str, float]  # server and others, over the run

    @property
    def bytes_per_response(self) -> float:
        return benchlib.ratio(self.bytes_read, self.requests)

    def us_per_request(self, name: str) -> float:
        return benchlib.ratio(self.cpu_s.get(name, math.nan) * 1e6, self.requests)

    def cores(self, name: str) -> float:
        seconds = self.wrk_cpu_s if name == "wrk" else self.cpu_s.get(name, math.nan)
        return benchlib.ratio(seconds, self.seconds)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for q in ("50", "99"):
        match = re.search(rf"^\s+{q}(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
        if match:
            found[f"p{q}"] = _ms(match[1])
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB) read", output)
    if match:
        found["requests"] = int(match[1])
        found["seconds"] = float(match[2]) * _UNITS[match[3]] / 1000
        found["bytes"] = float(match[4]) * _SIZES[match[5]]
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match:
        found["rps"] = float(match[1])
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    found["non_2xx"] = int(match[1]) if match else 0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    found["socket_errors"] = sum(int(g) for g in match.groups()) if match else 0
    return found


async def run_wrk(
    label: str,
    url: str,
    headers: Mapping[str, str],
    seconds: int,
    connections: int,
    pids: Mapping[str, int],
) -> WrkResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    # wrk is the only child reaped meanwhile (the stack's processes run on).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = cpu_of(pids)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await proc.communicate()
    after = cpu_of(pids)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr.decode()}{output}")
    found = parse_wrk(output)
    missing = {"p50", "p99", "requests", "rps"} - set(found)
    if missing:
        raise RuntimeError(f"could not read {sorted(missing)} from wrk's output:\n{output}")
    return WrkResult(
        label=label,
        rps=found["rps"],
        p50_ms=found["p50"],
        p99_ms=found["p99"],
        requests=int(found["requests"]),
        seconds=found.get("seconds", float(seconds)),
        bytes_read=found.get("bytes", math.nan),
        non_2xx=int(found["non_2xx"]),
        socket_errors=int(found["socket_errors"]),
        wrk_cpu_s=(reaped.ru_utime + reaped.ru_stime) - (children.ru_utime + children.ru_stime),
        cpu_s={k: after[k] - before[k] for k in pids},
    )


async def wrk_pass(
    cfg: Config,
    label: str,
    url: str,
    headers: Mapping[str, str],
    seconds: int,
    pids: Mapping[str, int],
    out: Callable[[str], None],
) -> WrkResult:
    await run_wrk(label, url, headers, cfg.wrk_warmup_seconds, cfg.wrk_connections, pids)
    await settle(list(pids.values()), limit=3.0)
    result = await run_wrk(label, url, headers, seconds, cfg.wrk_connections, pids)
    out(
        f"  {label:24s} {result.rps:9,.0f} req/s  p50 {result.p50_ms:6.2f} ms"
        f"  p99 {result.p99_ms:6.2f} ms  ({result.requests:,} requests in {result.seconds:.1f} s,"
        f" ~{result.bytes_per_response:,.0f} B each, non-2xx {result.non_2xx},"
        f" socket errors {result.socket_errors})"
    )
    return result


# The bare endpoint


def bare_app(body: bytes, media_type: str, headers: dict[str, str]) -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        return PlainTextResponse("ready")

    @app.get("/v1/timelines/home")
    async def home() -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return app


def serve_bare(port: int, source: Path) -> None:
    """The bare server's process: uvicorn as murmur_gateway.__main__ runs it."""
    import uvicorn

    spec = json.loads(source.read_text())
    body = base64.b64decode(spec["body"])
    uvicorn.run(
        bare_app(body, spec["media_type"], spec["headers"]),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


async def start_bare(run_dir: Path, reply: RawReply) -> tuple[ManagedProcess, str]:
    source = run_dir / "bare-response.json"
    source.write_text(
        json.dumps(
            {
                "body": base64.b64encode(reply.body).decode(),
                "media_type": reply.headers["content-type"],
                "headers": {k: reply.headers[k] for k in COPIED_HEADERS if k in reply.headers},
            }
        )
    )
    (port,) = free_ports(1)
    process = ManagedProcess(
        ProcessSpec(
            name="bare",
            argv=(sys.executable, str(BENCH_FILE), "--serve-bare", str(port), str(source)),
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            cwd=run_dir,
            log_path=run_dir / "bare.log",
            probe=http_readyz(port),
        )
    )
    await process.start()
    return process, f"http://127.0.0.1:{port}"


def gateway_variant(stack: Stack, label: str, overrides: Mapping[str, str]) -> ManagedProcess:
    """Another gateway process like the stack's (same port: stop that one
    first), with some settings changed."""
    spec = stack.processes["gateway"].spec
    return ManagedProcess(
        replace(
            spec,
            name=f"gateway-{label}",
            env={**spec.env, **overrides},
            log_path=spec.log_path.with_name(f"gateway-{label}.log"),
        )
    )


# The run


@dataclass
class Outcome:
    cells: dict[str, CellResult]
    gateway: WrkResult
    bare: WrkResult
    no_limits: WrkResult
    near_hits: float
    near_misses: float
    rendered_cache_us: float  # the cache service's CPU per rendered request
    seeding: str


async def near_cache_counts(http: httpx.AsyncClient, base_url: str) -> tuple[float, float]:
    scrape = await benchlib.Scrape.fetch(http, f"{base_url}/metrics")
    name = "murmur_gateway_near_cache_lookups_total"
    return scrape.total(name, result="hit"), scrape.total(name, result="miss")


async def wait_for_page(
    http: benchlib.LeanHttp, auth: Mapping[str, str], world: World, patience: float = 30.0
) -> float:
    """Until the reader's home page holds the 20 newest posts."""
    started = time.perf_counter()
    want = [p.id for p in world.expected_page()]
    got: list[str] = []
    while time.perf_counter() - started < patience:
        status, body = await http.request("GET", HOME_PATH, auth)
        if status == 200:
            got = [item["id"] for item in json.loads(body)["items"]]
            if got == want:
                return time.perf_counter() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the home page never showed the seeded posts (last: {len(got)} ids)")


async def _bench(
    cfg: Config, stack: Stack, keys: DevKeys, run_dir: Path, out: Callable[[str], None]
) -> Outcome:
    world = make_world(cfg.seed)
    token_ttl = 3600.0
    auth = {
        u: {"Authorization": f"Bearer {keys.token(u, ttl_seconds=token_ttl)}"} for u in world.users
    }
    reader_auth = auth[world.reader]
    base_url = stack.gateway_url
    pids = {n: p.pid for n, p in stack.processes.items() if p.pid is not None}
    cells = {c.name: CellResult(c) for c in CELLS}

    async with httpx.AsyncClient(timeout=20.0, trust_env=False) as scraper:
        lean = benchlib.LeanHttp(base_url, max_connections=32)
        try:
            started = time.perf_counter()
            await seed(lean, world, auth)
            seeded = time.perf_counter() - started
            waited = await wait_for_page(lean, reader_auth, world)
            quiet = await settle(list(pids.values()))
            seeding = (
                f"seeded {len(world.users)} users, {len(world.authors)} follows and"
                f" {len(world.posts)} posts through the gateway in {seeded:.1f} s; home page"
                f" complete after {waited:.1f} s more, stack quiet after {quiet:.1f} s"
            )
            out("  " + seeding)

            # Bytes: one fetch per cell, decoded and checked.
            replies: dict[str, RawReply] = {}
            for cell in CELLS:
                reply = await fetch_raw(base_url, cell.path, cell.headers(reader_auth))
                replies[cell.name] = reply
                r = cells[cell.name]
                r.body_bytes = len(reply.body)
                r.header_bytes = reply.wire_bytes - len(reply.body)
                r.sent_coding = reply.headers.get("content-encoding", "identity")
                r.problems = check_reply(cell, reply, world)
            bad = [c for c in cells.values() if c.problems]
            out(
                f"  bytes: {len(CELLS)} representations fetched and decoded,"
                f" {len(CELLS) - len(bad)} checked ok"
            )
            proto_page = api.PostPage.FromString(replies["full_protobuf_identity"].body)

            # What the encodings and codings cost by themselves, in this process.
            for cell in CELLS:
                cells[cell.name].encode_us = encode_cost_us(proto_page, cell, cfg.encode_iterations)

            # Cached: the stack's gateway, near cache on.
            gateway_pid = {"gateway": pids["gateway"]}
            await settle(list(pids.values()), limit=3.0)
            hits0, misses0 = await near_cache_counts(scraper, base_url)
            started = time.perf_counter()
            for cell in CELLS:
                run = await cpu_per_request(
                    lean,
                    gateway_pid,
                    cell.path,
                    cell.headers(reader_auth),
                    cfg.cached_requests,
                    cfg.concurrency,
                )
                cells[cell.name].cpu_cached_us = run.us_per_request["gateway"]
                cells[cell.name].errors += run.errors
            hits1, misses1 = await near_cache_counts(scraper, base_url)
            out(
                f"  CPU, cached: {cfg.cached_requests} requests per representation in"
                f" {time.perf_counter() - started:.1f} s; near cache"
                f" {int(hits1 - hits0):,} hits, {int(misses1 - misses0):,} misses"
            )

            # Throughput: the gateway's cached home page, full JSON, identity.
            out(
                f"throughput: wrk -t1 -c{cfg.wrk_connections} --latency, {cfg.wrk_seconds} s"
                f" after a {cfg.wrk_warmup_seconds} s warm-up, GET {HOME_PATH} (full JSON,"
                " no Accept-Encoding)"
            )
            server_pids: dict[str, int] = {
                k: pids[k] for k in ("gateway", "redis", "cache") if k in pids
            }
            wrk_headers = {**reader_auth, "Accept": "application/json"}
            gateway = await wrk_pass(
                cfg,
                "gateway (cached)",
                base_url + HOME_PATH,
                wrk_headers,
                cfg.wrk_seconds,
                server_pids,
                out,
            )
        finally:
            await lean.aclose()

        await stack.processes["gateway"].stop()

        baseline_reply = replies[BASELINE.name]
        bare_process, bare_url = await start_bare(run_dir, baseline_reply)
        try:
            assert bare_process.pid is not None
            bare = await wrk_pass(
                cfg,
                "bare FastAPI (same bytes)",
                bare_url + HOME_PATH,
                wrk_headers,  # the same request; the bare endpoint ignores the token
                cfg.wrk_seconds,
                {"gateway": bare_process.pid},
                out,
            )
        finally:
            await bare_process.stop()

        unlimited = gateway_variant(stack, "no-limits", NO_LIMITS)
        await unlimited.start()
        try:
            assert unlimited.pid is not None
            no_limits = await wrk_pass(
                cfg,
                "gateway, rate limits off",
                base_url + HOME_PATH,
                wrk_headers,
                cfg.wrk_no_limits_seconds,
                {**server_pids, "gateway": unlimited.pid},
                out,
            )
        finally:
            await unlimited.stop()

        # Rendered: a gateway without its near cache; every request renders.
        rendering = gateway_variant(stack, "no-near-cache", NO_NEAR_CACHE)
        await rendering.start()
        lean = benchlib.LeanHttp(base_url, max_connections=32)
        cache_us: list[float] = []
        try:
            assert rendering.pid is not None
            render_pids = {"gateway": rendering.pid, "cache": pids["cache"]}
            await settle(list(render_pids.values()), limit=3.0)
            started = time.perf_counter()
            for cell in CELLS:
                run = await cpu_per_request(
                    lean,
                    render_pids,
                    cell.path,
                    cell.headers(reader_auth),
                    cfg.rendered_requests,
                    cfg.concurrency,
                )
                cells[cell.name].cpu_rendered_us = run.us_per_request["gateway"]
                cells[cell.name].errors += run.errors
                cache_us.append(run.us_per_request.get("cache", math.nan))
            out(
                f"  CPU, rendered (near cache off): {cfg.rendered_requests} requests per"
                f" representation in {time.perf_counter() - started:.1f} s"
            )
        finally:
            await lean.aclose()
            await rendering.stop()

    return Outcome(
        cells=cells,
        gateway=gateway,
        bare=bare,
        no_limits=no_limits,
        near_hits=hits1 - hits0,
        near_misses=misses1 - misses0,
        rendered_cache_us=sum(cache_us) / len(cache_us) if cache_us else math.nan,
        seeding=seeding,
    )


# Report


@dataclass(frozen=True)
class Figures:
    baseline_bytes: int
    allowance: int  # raw ciphertext plus 150 bytes an item
    best_full: CellResult
    best_list: CellResult
    list_view_reduction: float
    full_view_overhead: float
    throughput_ratio: float
    errors: int
    problems: int

    @classmethod
    def of(cls, outcome: Outcome) -> Figures:
        cells = outcome.cells
        ok = [c for c in cells.values() if not c.problems]
        full = [c for c in ok if c.cell.view == "full"] or [cells["full_json_identity"]]
        lists = [c for c in ok if c.cell.view == "list"] or [cells["list_json_identity"]]
        best_full = min(full, key=lambda c: c.body_bytes)
        best_list = min(lists, key=lambda c: c.body_bytes)
        baseline = cells[BASELINE.name].body_bytes
        allowance = LIMIT * (CIPHERTEXT_BYTES + PER_ITEM_ALLOWANCE)
        wrk = (outcome.gateway, outcome.bare, outcome.no_limits)
        return cls(
            baseline_bytes=baseline,
            allowance=allowance,
            best_full=best_full,
            best_list=best_list,
            list_view_reduction=1 - benchlib.ratio(best_list.body_bytes, baseline),
            full_view_overhead=benchlib.ratio(best_full.body_bytes, allowance) - 1,
            throughput_ratio=benchlib.ratio(outcome.gateway.rps, outcome.bare.rps),
            errors=sum(c.errors for c in cells.values())
            + sum(w.non_2xx + w.socket_errors for w in wrk),
            problems=sum(1 for c in cells.values() if c.problems),
        )

    def targets(self) -> dict[str, bool]:
        return {
            f"list view reduction >= {TARGET_LIST_REDUCTION:.2f}": self.list_view_reduction
            >= TARGET_LIST_REDUCTION,
            f"full view overhead <= {TARGET_FULL_OVERHEAD:.2f}": self.full_view_overhead
            <= TARGET_FULL_OVERHEAD,
            f"throughput ratio >= {TARGET_THROUGHPUT_RATIO:.2f}": self.throughput_ratio
            >= TARGET_THROUGHPUT_RATIO,
            "every representation checked ok, no errors": self.errors == 0 and self.problems == 0,
        }


def _n(value: float, digits: int = 0) -> str:
    return "nan" if math.isnan(value) else f"{value:,.{digits}f}"


def report(cfg: Config, outcome: Outcome, figures: Figures) -> list[str]:
    lines: list[str] = []
    add = lines.append
    cells = outcome.cells
    base = figures.baseline_bytes
    add("")
    add(
        f"Murmur gateway benchmark ({'QUICK' if cfg.is_quick else 'full'}),"
        f" code {benchlib.code_version()},"
        f" {os.cpu_count()} cores shared by every process"
    )
    add(outcome.seeding)
    add(
        f"home page: {LIMIT} items of {CIPHERTEXT_BYTES:,} B ciphertext; raw ciphertext"
        f" {LIMIT * CIPHERTEXT_BYTES:,} B; allowance {LIMIT} x ({CIPHERTEXT_BYTES:,} +"
        f" {PER_ITEM_ALLOWANCE}) = {figures.allowance:,} B (target: full view <="
        f" {figures.allowance * (1 + TARGET_FULL_OVERHEAD):,.0f} B)"
    )
    add(f"list view: fields={LIST_FIELDS}")
    add(
        "body B: the body as it came off the socket (compressed); hdr B: status line and"
        " headers (HTTP/1.1); vs allow: full view against the allowance"
    )
    add(
        f"CPU: gateway CPU µs per request; cached {cfg.cached_requests} and rendered"
        f" {cfg.rendered_requests} requests per row, {cfg.concurrency} in flight; encode ="
        " document + render() in-process, best of 5"
    )
    add("")
    header = (
        f"{'view':5s} {'media':9s} {'coding':9s} {'body B':>8s} {'vs base':>8s}"
        f" {'hdr B':>6s} {'vs allow':>9s} {'cached':>7s} {'rendered':>9s} {'encode':>7s}  check"
    )
    add(header)
    add("-" * len(header))
    for cell in CELLS:
        r = cells[cell.name]
        versus = benchlib.ratio(r.body_bytes, base)
        overhead = (
            f"{benchlib.ratio(r.body_bytes, figures.allowance) - 1:+.1%}"
            if cell.view == "full"
            else ""
        )
        check = "ok" if not r.problems else "; ".join(r.problems)
        if r.errors:
            check += f"; {r.errors} non-200"
        if r.sent_coding != cell.coding and not r.problems:
            check += f" (sent {r.sent_coding})"
        add(
            f"{cell.view:5s} {cell.media:9s} {cell.coding:9s} {r.body_bytes:>8,} {versus:>8.3f}"
            f" {r.header_bytes:>6,} {overhead:>9s} {_n(r.cpu_cached_us):>7s}"
            f" {_n(r.cpu_rendered_us):>9s} {_n(r.encode_us):>7s}  {check}"
        )
    add("")
    bf, bl = figures.best_full, figures.best_list
    add(
        f"smallest full view: {bf.cell.media}/{bf.cell.coding} {bf.body_bytes:,} B ="
        f" {figures.full_view_overhead:+.1%} vs the allowance"
        f" ({(bf.body_bytes - LIMIT * CIPHERTEXT_BYTES) / LIMIT:,.0f} B an item beyond the"
        f" ciphertext); baseline (full JSON, identity) {base:,} B"
    )
    add(
        f"smallest list view: {bl.cell.media}/{bl.cell.coding} {bl.body_bytes:,} B:"
        f" {figures.list_view_reduction:.1%} smaller than the baseline; list JSON identity"
        f" {1 - benchlib.ratio(cells['list_json_identity'].body_bytes, base):.1%} smaller"
    )
    hits, misses = outcome.near_hits, outcome.near_misses
    add(
        f"near cache during the cached rows: hit rate {benchlib.ratio(hits, hits + misses):.4f}"
        f" ({int(misses)} renders in {int(hits + misses):,} lookups); rendered rows also cost"
        f" the cache service {_n(outcome.rendered_cache_us)} µs a request on average"
    )
    add("")
    g, b, n = outcome.gateway, outcome.bare, outcome.no_limits
    add(f"throughput (wrk -t1 -c{cfg.wrk_connections}, {cfg.wrk_seconds} s each, one at a time)")
    add(
        f"{'':26s}{'req/s':>9s}{'p50 ms':>8s}{'p99 ms':>8s}{'~B/resp':>8s}{'server µs/req':>15s}"
        f"{'redis µs/req':>14s}{'wrk cores':>11s}{'non-2xx':>9s}"
    )
    for label, w in (
        ("gateway, limits raised", g),
        ("bare FastAPI", b),
        ("gateway, limits off", n),
    ):
        add(
            f"{label:26s}{w.rps:>9,.0f}{w.p50_ms:>8.2f}{w.p99_ms:>8.2f}"
            f"{w.bytes_per_response:>8,.0f}{_n(w.us_per_request('gateway')):>15s}"
            f"{_n(w.us_per_request('redis')):>14s}{w.cores('wrk'):>11.2f}"
            f"{w.non_2xx + w.socket_errors:>9d}"
        )
    add(
        f"throughput ratio gateway / bare: {figures.throughput_ratio:.3f} (target >="
        f" {TARGET_THROUGHPUT_RATIO:.2f}); server CPU a request {_n(g.us_per_request('gateway'))}"
        f" vs {_n(b.us_per_request('gateway'))} µs"
    )
    add(
        f"rate limits were raised for this run (user and address {RAISED_RATE:,}/s, burst"
        f" {RAISED_BURST:,}; defaults 20/s burst 100 and 50/s burst 300): every request"
        f" was still charged (local buckets, settled with Redis every 50 ms)."
        f" With limits off (rate 0): {n.rps:,.0f} req/s vs {g.rps:,.0f}"
        f" ({benchlib.ratio(g.rps, n.rps) - 1:+.1%} with limits), gateway CPU"
        f" {_n(g.us_per_request('gateway') - n.us_per_request('gateway'))} µs and Redis"
        f" {_n(g.us_per_request('redis'))} µs a request for it"
    )
    add("")
    met = figures.targets()
    add("targets: " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in met.items()))
    return lines


def summary(cfg: Config, outcome: Outcome, figures: Figures) -> str:
    cells = outcome.cells
    g, b, n = outcome.gateway, outcome.bare, outcome.no_limits
    rendered = [c.cpu_rendered_us for c in cells.values()]
    values: dict[str, object] = {
        "list_view_reduction": round(figures.list_view_reduction, 4),
        "full_view_overhead": round(figures.full_view_overhead, 4),
        "throughput_ratio": round(figures.throughput_ratio, 4),
        "p99_ms": round(g.p99_ms, 2),
        "p50_ms": round(g.p50_ms, 2),
        "rps_gateway": round(g.rps),
        "rps_bare": round(b.rps),
        "bare_p50_ms": round(b.p50_ms, 2),
        "bare_p99_ms": round(b.p99_ms, 2),
        "rps_gateway_no_limits": round(n.rps),
        "p99_ms_no_limits": round(n.p99_ms, 2),
        "gateway_cpu_us_per_req": round(g.us_per_request("gateway")),
        "bare_cpu_us_per_req": round(b.us_per_request("gateway")),
        "wrk_cores": round(g.cores("wrk"), 3),
        "baseline_bytes": figures.baseline_bytes,
        "best_full": f"{figures.best_full.cell.media}/{figures.best_full.cell.coding}",
        "best_full_bytes": figures.best_full.body_bytes,
        "best_list": f"{figures.best_list.cell.media}/{figures.best_list.cell.coding}",
        "best_list_bytes": figures.best_list.body_bytes,
        "cpu_us_cached_baseline": round(cells[BASELINE.name].cpu_cached_us),
        "cpu_us_rendered_baseline": round(cells[BASELINE.name].cpu_rendered_us),
        "cpu_us_rendered_mean": round(sum(rendered) / len(rendered)),
        "near_cache_hit_rate": round(
            benchlib.ratio(outcome.near_hits, outcome.near_hits + outcome.near_misses), 4
        ),
        **{f"bytes_{c.cell.name}": c.body_bytes for c in cells.values()},
        "errors": figures.errors,
        "bad_representations": figures.problems,
        "quick": cfg.is_quick,
        "target_met": all(figures.targets().values()),
    }
    return benchlib.summary_line("gateway", values)


def have_wrk(out: Callable[[str], None]) -> bool:
    """wrk is the load tool; say how to get it when it is missing."""
    if shutil.which("wrk") is not None:
        return True
    out("wrk is not installed: run scripts/ensure-system-packages.sh (or make install)")
    return False


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    wall = time.perf_counter()

    def out(line: str) -> None:
        print(line, flush=True)

    out(f"bench-gateway, {'QUICK' if cfg.is_quick else 'full'}")
    if not have_wrk(out):
        return 2
    with benchlib.run_directory("gateway", keep=args.keep) as tmp:
        keys = DevKeys.ensure(tmp / "keys")
        stack = Stack(
            tmp / "run",
            services=("pipeline", "gateway"),
            jwt_public_key_files=[keys.public],
            env={"gateway": RAISED_LIMITS},
        )
        out(f"starting the stack in {tmp} ...")
        started = time.perf_counter()
        async with stack:
            out(f"  up in {time.perf_counter() - started:.1f} s")
            outcome = await _bench(cfg, stack, keys, tmp / "run", out)
    figures = Figures.of(outcome)
    for line in report(cfg, outcome, figures):
        out(line)
    out(f"(wall time {time.perf_counter() - wall:.0f} s, stack start and seeding included)")
    out(summary(cfg, outcome, figures))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "SOURCE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.serve_bare is not None:
        serve_bare(int(arguments.serve_bare[0]), Path(arguments.serve_bare[1]))
        sys.exit(0)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main(arguments)))
    sys.exit(uvloop.run(main(arguments)))
