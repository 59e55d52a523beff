"""Notifier benchmark: delivery latency, throughput, memory and CPU of one
notifier process (``python -m murmur_notifier``) on real NATS, next to a naive
FastAPI WebSocket endpoint measured in the same run.

Stack. ``murmur_devstack.Stack`` starts NATS (JetStream), Redis, the timeline,
the cache, the pipeline and the notifier on free ports, with a signing key of
the run's own; the notifier runs with its production defaults (presence on:
each user who connects is recorded with the cache). Stream ``MURMUR_USER``
(with its RePublish to ``murmur.live.user.>``) is created by the pipeline
process itself, which is then stopped: it would otherwise poll for domain
events on the same cores. Every user (readers and authors) and the follows
between them are written straight into the timeline's SQLite database, so
the presence call the notifier makes for each user who connects finds them,
as in production. The baseline runs in its own process under
uvicorn (defaults: uvloop, httptools, websockets): an endpoint that
authenticates nothing, subscribes (core NATS) to the user's live subject, and
for each message builds the same JSON frame (one event) and awaits
``send_text`` on each of the user's sockets in turn.

Publishing. Per-user events are published from this process exactly as the
pipeline publishes them, by the pipeline's own ``UserEvents`` (one copy per
recipient on ``murmur.user.<user_id>.<kind>``, plain publishes and a last one
acknowledged by JetStream, ``Nats-Msg-Id``, a ``traceparent`` header), from
domain events built by the timeline's own ``murmur_timeline.events``. A post
goes to its author first and then to every follower, as the pipeline sends it
(one page: 1,000 followers < ``fanout_page``); the author is not connected, so
that copy is published but not delivered. Two changes, both in the NATS
client ``UserEvents`` is given: it sets each copy's ``occurred_at`` to the
wall clock (``time.time_ns()``) at the moment the copy is handed to NATS, and
it yields to the event loop at least every millisecond while publishing, so
that nats-py's flusher writes copies out as they are made (the pipeline
writes a whole page's copies when it awaits the last one's ack). Latency is
thus per copy and leaves out the publisher's own loop over the 1,001 copies
of a post (how long one such call takes is printed separately). The same
subjects, payloads (``occurred_at`` aside), headers and order reach NATS. A
side effect: copies of one post no longer share ``occurred_at``, so a server
that reuses an encoding across a post's copies can reuse all of it but that
field here.

Load client. One Node process (``bench/notifier_load.mjs``, the ``ws`` package
from ``tools/node``) holds every connection (notifier: subprotocols
``murmur.v1`` and ``bearer.<jwt>``, then ``subscribe``). For each event it
takes latency = receive time of the frame (``performance.timeOrigin +
performance.now()``) - ``occurred_at``; it counts events (a sequence not above
the connection's last one counts as a duplicate, not a delivery) and frames.
Like a real client of ``murmur.v1``, it reconnects a notifier connection the
server closed with 1001 (going away: after the reason's ``retry_after_ms``),
4408 (too slow) or that dropped (1006) (after 200-500 ms), and subscribes with
``after`` = the last sequence it holds (or the reason's ``resume_after`` if
higher): the events replayed before ``caught_up`` count as deliveries (their
latency too: it is what the user waited; the live events' own latency is
printed apart), a ``resync`` answer (the events in between are gone) is
counted, and what it skipped shows as lost. Reconnects, resyncs, replayed
events and close codes are reported per scenario. The baseline has no
resume: its connections are not reopened.

Scenarios, against each server in turn (notifier first, then the baseline),
each on connections of its own:

1. personal: 5,000 connections (QUICK 1,000), in groups of 10 who follow an
   author of their own (500 authors); each author posts once a second (open
   loop, the posts evenly spread: 500 posts/s, 5,000 deliveries/s, each user
   getting its own events at 1/s), for 15 s (QUICK 3 s). Before and after
   connecting, the server's RSS (``/proc/<pid>/status`` VmRSS), on a server
   that had no connection before: ``bytes_per_conn``.
2. broadcast: 1,000 connections (QUICK 300) all following one author, who
   posts 20 times a second for 15 s (QUICK 3 s): 20,000 deliveries/s.
3. burst: 1,000 fresh connections (QUICK 300) of the same users (broadcast's
   are closed first, so its closes and reconnects do not spill over), 2,000
   posts (QUICK 160) by 4 authors all of them follow, as fast as the
   pipeline's publisher goes (each author's posts in order, the authors at
   once, as the pipeline orders them).
   Deliveries/s = delivered / (last delivery - first publish).

After publishing, the benchmark waits until every expected event arrived, or
until nothing arrived for a few seconds while no connection was waiting to
reconnect or resuming, or at most 60 s (QUICK 8 s) in any case (the rest is
lost: ``lost``; the line says why it stopped waiting). CPU is
user + system time from ``/proc/<pid>/stat`` over the scenario, of the
server, NATS, the load client and this process (the publisher), and, from
``/proc/stat``, whatever else the machine ran meanwhile ("anything else").
NATS's own count of slow consumers it cut off (``/varz``) is read around each
scenario: a subscriber that falls 64 MiB behind is disconnected and what was
pending for it is dropped. After connecting, the benchmark waits until the
server and the cache are idle (presence calls done) first.

Caveats: everything shares one machine (``nproc`` cores): the publisher, NATS,
the load client and the server compete for CPU, and a saturated load client
adds its own queueing to the latencies (its event-loop delay is printed).

``--quick`` runs in under a minute; the default takes a few. ``--only``
picks scenarios, ``--no-baseline`` skips the baseline, ``--notifier-env
NAME=VALUE`` sets notifier settings for experiments (printed, since they are
not production defaults). The last line is the summary: ``bench=notifier
broadcast_p99_ms=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import resource
import shutil
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import benchlib
import httpx
import nats
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from google.protobuf.json_format import MessageToDict
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import PubAck
from notifier_floor import Floor, measure_floor
from opentelemetry import context as otel_context

import murmur_timeline.storage.models as timeline_models
from murmur.events.v1 import events_pb2
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.auth import load_private_key, mint_token
from murmur_core.ids import new_uuid7
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing
from murmur_devstack import DevKeys, Stack
from murmur_devstack.ports import free_ports
from murmur_devstack.probes import http_readyz
from murmur_devstack.process import ManagedProcess, ProcessSpec
from murmur_timeline import events as timeline_events
from murmur_timeline.pipeline.user_events import UserEvents

SCENARIOS = ("personal", "broadcast", "burst")
TARGET_P99_MS = 25.0
TARGET_BURST_VS_BASELINE = 2.0
REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_FILE = Path(__file__).resolve()
NODE_CLIENT = BENCH_FILE.with_name("notifier_load.mjs")
NODE_MODULES = REPO_ROOT / "tools" / "node" / "node_modules"
# A post's sealed body: only its size travels in events.
CIPHERTEXT = bytes(512)
# The longest a load client command may take (connecting 5,000 included).
CLIENT_TIMEOUT_SECONDS = 300.0
TICKS = os.sysconf("SC_CLK_TCK")
# After connecting: the server counts as idle below this share of a core.
IDLE_CORES = 0.1

log = logging.getLogger("bench.notifier")


@dataclass(frozen=True)
class Config:
    personal_conns: int
    personal_seconds: float
    broadcast_conns: int
    broadcast_seconds: float
    burst_posts: int
    personal_rate: float = 1.0  # events a second, per connection
    # Personal: each author is followed by this many of the connected users.
    personal_group: int = 10
    broadcast_rate: float = 20.0  # posts a second
    burst_authors: int = 4
    # After the last publish, no delivery for this long (and no reconnect in
    # flight): the rest is lost.
    stall_seconds: float = 5.0
    # After the last publish, wait at most this long, reconnects or not.
    drain_cap_seconds: float = 60.0
    connect_concurrency: int = 64
    is_quick: bool = False

    @classmethod
    def full(cls) -> Config:
        return cls(
            personal_conns=5000,
            personal_seconds=15.0,
            broadcast_conns=1000,
            broadcast_seconds=15.0,
            burst_posts=2000,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            personal_conns=1000,
            personal_seconds=3.0,
            broadcast_conns=300,
            broadcast_seconds=3.0,
            burst_posts=160,
            stall_seconds=2.0,
            drain_cap_seconds=8.0,
            is_quick=True,
        )

    def describe(self) -> str:
        return (
            f"personal {self.personal_conns:,} conns x {self.personal_rate:g} event/s"
            f" x {self.personal_seconds:g} s (authors of {self.personal_group} followers each);"
            f" broadcast {self.broadcast_conns:,} conns x"
            f" {self.broadcast_rate:g} posts/s x {self.broadcast_seconds:g} s; burst"
            f" {self.broadcast_conns:,} conns x {self.burst_posts:,} posts"
            f" ({self.burst_authors} authors)"
        )


# Publishing, as the pipeline does


def _stamped(payload: bytes) -> bytes:
    """A per-user event copy with ``occurred_at`` = now (wall clock, ns)."""
    event = events_pb2.UserEvent.FromString(payload)
    event.occurred_at.FromNanoseconds(time.time_ns())
    return event.SerializeToString()


class _StampingJetStream:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,  # noqa: ASYNC109 (JetStreamContext.publish's signature)
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> PubAck:
        return await self._js.publish(
            subject, _stamped(payload), timeout=timeout, stream=stream, headers=headers
        )


class StampingNats:
    """The NATS client ``UserEvents`` is given: the real one, but each copy's
    ``occurred_at`` is set as its burst is handed over (its send time), and
    the publisher yields to the event loop after each burst so the client's
    flusher writes it out at once (the pipeline: at the last copy's ack)."""

    def __init__(self, nc: murmur_nats.Client) -> None:
        self._nc = nc
        self._js = _StampingJetStream(nc.jetstream())

    async def publish_many(self, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
        await self._nc.publish_many([(s, _stamped(p), h) for s, p, h in messages])
        await asyncio.sleep(0)

    def jetstream(self) -> _StampingJetStream:
        return self._js


def post_event(author: str) -> events_pb2.Event:
    """A ``post.created`` domain event as the timeline's outbox writes it,
    read back as the pipeline reads it."""
    post = timeline_models.Post(
        id=new_uuid7(),
        author_id=author,
        audience=timeline_models.Audience.FOLLOWERS,
        ciphertext=CIPHERTEXT,
        key_id="k1",
        created_at=int(time.time() * 1000),
        expires_at=None,
        reply_to=None,
    )
    return events_pb2.Event.FromString(timeline_events.post_created(post).payload)


@dataclass(frozen=True)
class Graph:
    """One server's users: connected readers and the authors they follow."""

    personal: list[str]
    personal_authors: list[str]
    group: int
    broadcast: list[str]
    broadcast_author: str
    burst_authors: list[str]

    @classmethod
    def build(cls, prefix: str, cfg: Config) -> Graph:
        personal = [f"{prefix}p{i}" for i in range(cfg.personal_conns)]
        groups = math.ceil(len(personal) / cfg.personal_group)
        return cls(
            personal=personal,
            personal_authors=[f"{prefix}pa{g}" for g in range(groups)],
            group=cfg.personal_group,
            broadcast=[f"{prefix}b{i}" for i in range(cfg.broadcast_conns)],
            broadcast_author=f"{prefix}author",
            burst_authors=[f"{prefix}burst{a}" for a in range(cfg.burst_authors)],
        )

    def personal_groups(self) -> list[tuple[str, list[str]]]:
        g = self.group
        return [
            (author, self.personal[i * g : (i + 1) * g])
            for i, author in enumerate(self.personal_authors)
        ]

    def follows(self) -> list[tuple[str, str]]:
        """(follower, followee)."""
        pairs = [(f, a) for a, fs in self.personal_groups() for f in fs]
        for author in (self.broadcast_author, *self.burst_authors):
            pairs += [(f, author) for f in self.broadcast]
        return pairs

    def users(self) -> list[str]:
        return [
            *self.personal,
            *self.personal_authors,
            *self.broadcast,
            self.broadcast_author,
            *self.burst_authors,
        ]


def seed_sqlite(db_path: Path, graphs: Sequence[Graph]) -> None:
    """Users and follows, straight into the timeline's database, so that the
    cache finds the users the notifier records as present."""
    now = int(time.time() * 1000)
    follows = [pair for g in graphs for pair in g.follows()]
    followers: dict[str, int] = {}
    for _, followee in follows:
        followers[followee] = followers.get(followee, 0) + 1
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        with conn:
            conn.executemany(
                "INSERT INTO users (id, handle, public_key, created_at, follower_count,"
                " fanout_pull) VALUES (?, ?, ?, ?, ?, 0)",
                ((u, u, b"k" * 32, now, followers.get(u, 0)) for g in graphs for u in g.users()),
            )
            conn.executemany(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
                ((f, followee, now) for f, followee in follows),
            )
    finally:
        conn.close()


@dataclass
class Published:
    started: float = 0.0  # wall clock, s
    ended: float = 0.0
    copies: int = 0  # per-user events handed to NATS (authors' own included)
    calls: int = 0  # UserEvents.publish calls (one per domain event)
    errors: int = 0
    call_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # this process, while publishing

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def copies_per_s(self) -> float:
        return benchlib.ratio(self.copies, self.seconds)


class Publisher:
    def __init__(self, nc: murmur_nats.Client) -> None:
        # UserEvents only calls publish_many() and jetstream().publish() on it.
        self.user_events = UserEvents(cast(murmur_nats.Client, StampingNats(nc)))

    async def publish(
        self, event: events_pb2.Event, recipients: Sequence[str], into: Published
    ) -> None:
        started = time.perf_counter()
        try:
            await self.user_events.publish(event, recipients, otel_context.get_current())
        except Exception as exc:
            into.errors += 1
            log.warning("publish failed: %r", exc)
            return
        into.call_ms.append((time.perf_counter() - started) * 1000)
        into.calls += 1
        into.copies += len(recipients)


# The load client


class LoadClient:
    """The Node process of ``notifier_load.mjs``, one request at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._lock = asyncio.Lock()
        self._next_id = 0

    @classmethod
    async def start(cls) -> LoadClient:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("bench-notifier needs Node.js 20+ on PATH (the load client)")
        if not (NODE_MODULES / "ws").is_dir():
            raise SystemExit(f"{NODE_MODULES / 'ws'} is missing: run `make install`")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(NODE_CLIENT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        async with self._lock:
            self._next_id += 1
            stdin.write(json.dumps({"id": self._next_id, "cmd": cmd, **args}).encode() + b"\n")
            await stdin.drain()
            raw = await asyncio.wait_for(stdout.readline(), CLIENT_TIMEOUT_SECONDS)
        if not raw:
            raise RuntimeError(f"the load client exited (code {self._proc.returncode})")
        reply: dict[str, Any] = json.loads(raw)
        if "error" in reply:
            raise RuntimeError(f"load client, {cmd}: {reply['error']}")
        return reply

    async def aclose(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


# The naive baseline (its own process: ``--serve-baseline PORT``)


def naive_frame(msg: Msg) -> str:
    """One event, in the notifier's frame format (so one client reads both)."""
    event = events_pb2.UserEvent.FromString(msg.data)
    kind = event.WhichOneof("payload")
    assert kind is not None
    body = {
        "seq": int((msg.headers or {})["Nats-Sequence"]),
        "kind": subjects.kind_of_payload_field(kind),
        "event_id": event.event_id,
        "occurred_at": event.occurred_at.ToJsonString(),
        "data": MessageToDict(getattr(event, kind), preserving_proto_field_name=True),
    }
    return json.dumps({"type": "events", "events": [body]}, separators=(",", ":"))


def baseline_app(nats_url: str) -> FastAPI:
    """``/ws?user=<id>``: subscribe to the user's live subject; every message is
    sent to each of the user's sockets in turn, awaiting each send."""
    sockets: dict[str, list[WebSocket]] = {}
    subscriptions: dict[str, Subscription] = {}
    connections: list[NatsClient] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connections.append(await nats.connect(nats_url))
        yield
        await connections[0].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        return PlainTextResponse("ready\n")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, user: str) -> None:
        await websocket.accept()
        mine = sockets.setdefault(user, [])
        mine.append(websocket)
        if user not in subscriptions:

            async def deliver(msg: Msg) -> None:
                text = naive_frame(msg)
                for peer in list(sockets.get(user, ())):
                    await peer.send_text(text)

            subscriptions[user] = await connections[0].subscribe(
                subjects.user_live_filter(user), cb=deliver
            )
        await websocket.send_text('{"type":"subscribed","seq":0}')
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()
        finally:
            mine.remove(websocket)
            if not mine:
                sockets.pop(user, None)
                subscription = subscriptions.pop(user, None)
                if subscription is not None:
                    await subscription.unsubscribe()

    return app


def serve_baseline(port: int, nats_url: str) -> None:
    import uvicorn

    uvicorn.run(baseline_app(nats_url), host="127.0.0.1", port=port, log_level="warning")


async def start_baseline(run_dir: Path, nats_url: str) -> tuple[ManagedProcess, str]:
    (port,) = free_ports(1)
    process = ManagedProcess(
        ProcessSpec(
            name="baseline",
            argv=(
                sys.executable,
                str(BENCH_FILE),
                "--serve-baseline",
                str(port),
                "--nats-url",
                nats_url,
            ),
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            cwd=run_dir,
            log_path=run_dir / "baseline.log",
            probe=http_readyz(port),
        )
    )
    await process.start()
    return process, f"ws://127.0.0.1:{port}/ws"


# Measuring


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (Linux /proc); 0 when unreadable."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine, all cores (Linux
    /proc/stat: user, nice, system, irq, softirq); NaN when unreadable. Tick
    accounting differs from the processes' own, so the difference is rough
    (a small negative value: nothing else ran)."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq = (
                int(v) for v in stat.readline().split()[1:8]
            )
    except (OSError, ValueError):
        return math.nan
    return (user + nice + system + irq + softirq) / TICKS


async def settle(pids: Sequence[int], limit: float = 15.0) -> float:
    """Wait until these processes together use less than IDLE_CORES."""
    started = time.perf_counter()
    window = 0.3
    while time.perf_counter() - started < limit:
        before = sum(benchlib.process_cpu_seconds(p) for p in pids)
        await asyncio.sleep(window)
        after = sum(benchlib.process_cpu_seconds(p) for p in pids)
        if (after - before) / window < IDLE_CORES:
            break
    return time.perf_counter() - started


@dataclass(frozen=True)
class Target:
    name: str  # "notifier" or "baseline"
    url: str
    pid: int
    # Processes that work while connections open (the notifier's presence calls).
    busy_pids: tuple[int, ...]
    tokens: Callable[[Sequence[str]], list[str] | None]


@dataclass
class Connected:
    conns: int
    failed: int
    seconds: float
    settle_seconds: float
    rss_before: int
    rss_after: int

    @property
    def bytes_per_conn(self) -> float:
        return benchlib.ratio(self.rss_after - self.rss_before, self.conns)

    def line(self, *, fresh: bool) -> str:
        """``fresh``: the server had no connection before (so B/conn means something)."""
        return (
            f"{self.conns:,} connected in {self.seconds:.1f} s ({self.failed} failed;"
            f" idle {self.settle_seconds:.1f} s later), RSS {self.rss_before / 2**20:.1f}"
            f" -> {self.rss_after / 2**20:.1f} MiB"
            + (f": {self.bytes_per_conn:,.0f} B/conn" if fresh else "")
        )


@dataclass(frozen=True)
class Drain:
    """How the wait for the last deliveries ended."""

    seconds: float  # after the last publish
    stopped: str  # why it stopped short of every expected event ("": it did not)
    pending: int  # connections still reconnecting or resuming then


@dataclass
class Result:
    target: str
    scenario: str
    conns: int
    expected: int
    published: Published
    stats: dict[str, Any]
    cpu: dict[str, float]
    drain: Drain
    connected: Connected | None = None

    @property
    def received(self) -> int:
        return int(self.stats["received"])

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def latency(self, key: str, of: str = "latency_ms") -> float:
        """``of``: every event (``latency_ms``) or the live ones only
        (``live_latency_ms``: not replayed on a resume)."""
        value = self.stats[of].get(key)
        return math.nan if value is None else float(value)

    @property
    def replayed(self) -> int:
        """Events received on resumes (before ``caught_up``)."""
        return int(self.stats["replayed"])

    @property
    def reconnects(self) -> int:
        """Resumes answered (``caught_up`` or ``resync``) after reconnecting."""
        return int(self.stats["reconnects"])

    @property
    def resyncs(self) -> int:
        """Resumes answered ``resync``: the events in between were skipped."""
        return int(self.stats["resyncs"])

    def resume_text(self) -> str:
        s = self.stats
        if self.target != "notifier":
            return "no resume (its connections are not reopened)"
        text = (
            f"reconnects={self.reconnects} (resumed, of {s['reconnect_attempts']} attempts;"
            f" {s['gave_up']} given up) resyncs={self.resyncs}; delivered live"
            f" {self.received - self.replayed:,}, replayed {self.replayed:,}"
        )
        if self.replayed:
            text += (
                f" (live only: latency p50 {self.latency('p50', 'live_latency_ms'):.1f}"
                f" p99 {self.latency('p99', 'live_latency_ms'):.1f} ms)"
            )
        return text

    def drain_text(self) -> str:
        d = self.drain
        if not d.stopped:
            return f"all in {d.seconds:.1f} s after the last publish"
        return (
            f"stopped waiting {d.seconds:.1f} s after the last publish ({d.stopped};"
            f" {d.pending} reconnecting)"
        )

    @property
    def span_s(self) -> float:
        """First publish to last delivery."""
        last = self.stats.get("last_ms")
        return math.nan if last is None else last / 1000 - self.published.started

    @property
    def deliveries_per_s(self) -> float:
        return benchlib.ratio(self.received, self.span_s)

    @property
    def events_per_frame(self) -> float:
        return benchlib.ratio(self.received, int(self.stats["frames"]))

    @property
    def server_us_per_delivery(self) -> float:
        return benchlib.ratio(self.cpu["server"] * 1e6, self.received)

    def core_share(self, name: str) -> float:
        return benchlib.ratio(self.cpu.get(name, math.nan), self.span_s)

    def line(self) -> str:
        s, p = self.stats, self.published
        closes = {k: v for k, v in s["closes"].items() if k != "1000"}
        return (
            f"[{self.target:8}] {self.scenario:9}: {self.received:,}/{self.expected:,} delivered"
            f" (lost {self.lost}, dup {s['duplicates']}) in {s['frames']:,} frames"
            f" ({self.events_per_frame:.1f} events/frame); latency p50"
            f" {self.latency('p50'):.1f} p99 {self.latency('p99'):.1f} max"
            f" {self.latency('max'):.1f} ms; {self.deliveries_per_s:,.0f} deliveries/s;"
            f" published {p.copies:,} copies at {p.copies_per_s:,.0f}/s (publish call p50"
            f" {benchlib.percentile(p.call_ms, 50):.1f} max {max(p.call_ms, default=math.nan):.1f}"
            f" ms, {p.errors} errors); CPU s: server {self.cpu['server']:.2f}"
            f" ({self.core_share('server'):.0%} of a core), nats {self.cpu['nats']:.2f},"
            f" client {self.cpu['client']:.2f}, publisher {p.cpu_s:.2f}, anything else"
            f" {self.cpu['others']:.2f}; client loop delay"
            f" p99 {s['loop_delay_p99_ms']:.0f} max {s['loop_delay_max_ms']:.0f} ms"
            + (f"; closes {closes}" if closes else "")
            + (
                f"; NATS cut off {s['slow_consumers']} slow consumer(s)"
                if s["slow_consumers"]
                else ""
            )
            + (f"; socket errors {s['socket_errors']}" if s["socket_errors"] else "")
            + f"; {self.resume_text()}; {self.drain_text()}"
        )


class Bench:
    def __init__(
        self,
        cfg: Config,
        client: LoadClient,
        publisher: Publisher,
        nats_pid: int,
        monitor_url: str,
        out: Callable[[str], None],
    ) -> None:
        self.monitor_url = monitor_url
        self.cfg = cfg
        self.client = client
        self.publisher = publisher
        self.nats_pid = nats_pid
        self.out = out

    async def connect(self, target: Target, users: Sequence[str]) -> Connected:
        rss_before = rss_bytes(target.pid)
        reply = await self.client.call(
            "connect",
            url=target.url,
            mode="notifier" if target.name == "notifier" else "baseline",
            users=list(users),
            tokens=target.tokens(users),
            concurrency=self.cfg.connect_concurrency,
        )
        if reply["failed"]:
            self.out(f"  ! {reply['failed']} connections failed, e.g. {reply['errors']}")
        idle = await settle((target.pid, *target.busy_pids))
        return Connected(
            conns=int(reply["open"]),
            failed=int(reply["failed"]),
            seconds=reply["ms"] / 1000,
            settle_seconds=idle,
            rss_before=rss_before,
            rss_after=rss_bytes(target.pid),
        )

    async def measure(
        self,
        target: Target,
        scenario: str,
        conns: int,
        expected: int,
        drive: Callable[[Published], Awaitable[None]],
    ) -> Result:
        await self.client.call("reset")
        slow0 = await self.slow_consumers()
        pids = {"server": target.pid, "nats": self.nats_pid, "client": self.client.pid}
        cpu0 = {k: benchlib.process_cpu_seconds(p) for k, p in pids.items()}
        own0, machine0 = benchlib.own_cpu_seconds(), machine_busy_seconds()
        published = Published(started=time.time())
        await drive(published)
        published.ended = time.time()
        published.cpu_s = benchlib.own_cpu_seconds() - own0
        drained = await self.wait_delivered(expected)
        stats = await self.client.call("stats")
        stats["slow_consumers"] = await self.slow_consumers() - slow0
        cpu = {k: benchlib.process_cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
        cpu["publisher"] = benchlib.own_cpu_seconds() - own0
        # Whatever else ran meanwhile (the rest of the stack, other work on the machine).
        cpu["others"] = machine_busy_seconds() - machine0 - sum(cpu.values())
        result = Result(target.name, scenario, conns, expected, published, stats, cpu, drained)
        self.out(result.line())
        return result

    async def slow_consumers(self) -> int:
        """How many times NATS has cut a client off as too slow (dropping
        what it had for it): /varz of its monitoring port."""
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            reply = await http.get(f"{self.monitor_url}/varz")
        return int(reply.json().get("slow_consumers", 0))

    async def wait_delivered(self, expected: int) -> Drain:
        """Until every expected event arrived; or nothing arrived for
        ``stall_seconds`` with no reconnect in flight (a connection waiting to
        reconnect or resuming will still deliver); or no connection is left;
        or ``drain_cap_seconds`` passed, whatever is in flight."""
        started = time.perf_counter()
        last, since = -1, started
        while True:
            count = await self.client.call("count")
            received, pending = int(count["received"]), int(count["pending"])
            now = time.perf_counter()
            drain = Drain(now - started, "", pending)
            if received >= expected:
                return drain
            if count["open"] == 0 and pending == 0:
                return replace(drain, stopped="no connection left")
            if received != last or pending:
                last, since = received, now
            elif now - since > self.cfg.stall_seconds:
                return replace(drain, stopped=f"nothing for {self.cfg.stall_seconds:g} s")
            if now - started > self.cfg.drain_cap_seconds:
                return replace(drain, stopped=f"cap {self.cfg.drain_cap_seconds:g} s")
            await asyncio.sleep(0.05)

    async def personal(self, target: Target, graph: Graph) -> Result:
        cfg = self.cfg
        connected = await self.connect(target, graph.personal)
        self.out(f"[{target.name:8}] personal : {connected.line(fresh=True)}")
        groups = graph.personal_groups()
        posts = round(cfg.personal_seconds * cfg.personal_rate) * len(groups)
        spacing = 1 / (cfg.personal_rate * len(groups))

        async def drive(published: Published) -> None:
            tasks: set[asyncio.Task[None]] = set()
            t0 = time.perf_counter()
            i = 0
            while i < posts:  # open loop: the authors' posts evenly spread
                delay = t0 + i * spacing - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.perf_counter()
                while i < posts and t0 + i * spacing <= now:
                    author, followers = groups[i % len(groups)]
                    task = asyncio.create_task(
                        self.publisher.publish(post_event(author), [author, *followers], published)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    i += 1
            await asyncio.gather(*tasks)

        expected = posts * cfg.personal_group
        result = await self.measure(target, "personal", len(graph.personal), expected, drive)
        result.connected = connected
        await self.client.call("close")
        return result

    @property
    def broadcast_posts(self) -> int:
        return round(self.cfg.broadcast_rate * self.cfg.broadcast_seconds)

    async def publish_broadcast(self, graph: Graph, published: Published) -> None:
        """The broadcast author's posts, open loop, in order, to every reader."""
        author = graph.broadcast_author
        recipients = [author, *graph.broadcast]
        t0 = time.perf_counter()
        for i in range(self.broadcast_posts):
            delay = t0 + i / self.cfg.broadcast_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.publisher.publish(post_event(author), recipients, published)

    async def broadcast_floor(self, nats_url: str, graph: Graph) -> Floor:
        """The broadcast published the same way with no server and no client:
        its latency at a bare NATS subscriber (notifier_floor.py)."""
        expected = self.broadcast_posts * (len(graph.broadcast) + 1)  # the author's copy too
        floor = await measure_floor(
            nats_url, expected, lambda: self.publish_broadcast(graph, Published(time.time()))
        )
        self.out(f"[nats    ] broadcast: {floor.line()}")
        return floor

    async def broadcast_and_burst(
        self, target: Target, graph: Graph, only: frozenset[str]
    ) -> dict[str, Result]:
        """Each on connections of its own: closes (and reconnects) in
        broadcast do not spill into burst."""
        cfg = self.cfg
        users = graph.broadcast
        n = len(users)
        results: dict[str, Result] = {}

        async def burst(published: Published) -> None:
            async def author_posts(author: str) -> None:
                recipients = [author, *users]
                for _ in range(per_author):
                    await self.publisher.publish(post_event(author), recipients, published)

            await asyncio.gather(*(author_posts(a) for a in graph.burst_authors))

        posts = self.broadcast_posts
        per_author = cfg.burst_posts // len(graph.burst_authors)
        if "broadcast" in only:
            connected = await self.connect(target, users)
            fresh = "personal" not in only
            self.out(f"[{target.name:8}] broadcast: {connected.line(fresh=fresh)}")
            results["broadcast"] = await self.measure(
                target, "broadcast", n, posts * n, functools.partial(self.publish_broadcast, graph)
            )
            await self.client.call("close")
            await settle((target.pid,), limit=5.0)
        if "burst" in only:
            connected = await self.connect(target, users)
            fresh = not only & {"personal", "broadcast"}
            self.out(f"[{target.name:8}] burst    : {connected.line(fresh=fresh)}")
            expected = per_author * len(graph.burst_authors) * n
            results["burst"] = await self.measure(target, "burst", n, expected, burst)
            await self.client.call("close")
        return results

    async def run(self, target: Target, graph: Graph, only: frozenset[str]) -> dict[str, Result]:
        results: dict[str, Result] = {}
        if "personal" in only:
            results["personal"] = await self.personal(target, graph)
            await settle((target.pid,), limit=5.0)
        if only & {"broadcast", "burst"}:
            results.update(await self.broadcast_and_burst(target, graph, only))
            await settle((target.pid,), limit=5.0)
        return results


def table(results: dict[str, dict[str, Result]]) -> list[str]:
    """Side by side: one row per metric, one column per server."""
    targets = list(results)
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("connections", lambda r: f"{r.conns:,}"),
        ("expected", lambda r: f"{r.expected:,}"),
        ("delivered", lambda r: f"{r.received:,}"),
        ("lost", lambda r: f"{r.lost:,}"),
        ("reconnects", lambda r: f"{r.reconnects:,}" if r.target == "notifier" else "no resume"),
        ("resyncs", lambda r: f"{r.resyncs:,}" if r.target == "notifier" else ""),
        ("replayed events", lambda r: f"{r.replayed:,}" if r.target == "notifier" else ""),
        ("events/frame", lambda r: f"{r.events_per_frame:.1f}"),
        ("latency p50 ms", lambda r: f"{r.latency('p50'):.1f}"),
        ("latency p99 ms", lambda r: f"{r.latency('p99'):.1f}"),
        ("latency max ms", lambda r: f"{r.latency('max'):.1f}"),
        ("live latency p99 ms", lambda r: f"{r.latency('p99', 'live_latency_ms'):.1f}"),
        ("deliveries/s", lambda r: f"{r.deliveries_per_s:,.0f}"),
        ("published copies/s", lambda r: f"{r.published.copies_per_s:,.0f}"),
        ("server CPU s", lambda r: f"{r.cpu['server']:.2f} ({r.core_share('server'):.0%})"),
        ("server CPU us/delivery", lambda r: f"{r.server_us_per_delivery:.0f}"),
        ("nats CPU s", lambda r: f"{r.cpu['nats']:.2f}"),
        ("client CPU s", lambda r: f"{r.cpu['client']:.2f} ({r.core_share('client'):.0%})"),
        ("publisher CPU s", lambda r: f"{r.published.cpu_s:.2f}"),
        ("anything else CPU s", lambda r: f"{r.cpu['others']:.2f}"),
        ("NATS slow consumers", lambda r: f"{r.stats['slow_consumers']}"),
        (
            "bytes/conn",
            lambda r: f"{r.connected.bytes_per_conn:,.0f}" if r.connected is not None else "",
        ),
    ]
    width = 22
    lines = [f"{'scenario':10} {'metric':20} " + " ".join(f"{t:>{width}}" for t in targets)]
    for scenario in ("personal", "broadcast", "burst"):
        for i, (label, cell) in enumerate(rows):
            values = []
            for t in targets:
                r = results[t].get(scenario)
                values.append(cell(r) if r is not None else "")
            if label == "bytes/conn" and not any(values):
                continue
            lines.append(
                f"{scenario if i == 0 else '':10} {label:20} "
                + " ".join(f"{v:>{width}}" for v in values)
            )
    return lines


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    wall = time.perf_counter()

    def out(line: str) -> None:
        print(line, flush=True)

    out(f"bench-notifier, {'QUICK' if cfg.is_quick else 'full'} ({cfg.describe()})")
    out(f"machine: {os.cpu_count()} cores; every process below shares them")
    # 5,000 connections: a descriptor each in the client and the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4 * cfg.personal_conns:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The pipeline's spans: copies carry a traceparent header, as in production.
    setup_tracing(ServiceInfo.for_distribution("bench-notifier", "murmur-timeline"))
    values: dict[str, object] = {}
    with benchlib.run_directory("notifier", keep=args.keep) as tmp:
        keys = DevKeys.ensure(tmp / "dev-keys")
        overrides = dict(item.split("=", 1) for item in args.notifier_env)
        if overrides:
            out(f"notifier environment overrides (not production defaults): {overrides}")
        stack = Stack(
            tmp / "run",
            services=("pipeline", "notifier"),
            jwt_public_key_files=[keys.public],
            env={"notifier": overrides},
        )
        started = time.perf_counter()
        async with stack:
            # The pipeline created MURMUR_USER (and its RePublish); nothing more is needed of it.
            await stack.processes["pipeline"].stop()
            out(
                f"stack up in {time.perf_counter() - started:.1f} s ({tmp}); MURMUR_USER created"
                " by the pipeline, which is then stopped"
            )
            values = await _bench(cfg, args, stack, keys, tmp, out)
    out(f"(wall time {time.perf_counter() - wall:.0f} s, stack start included)")
    out(benchlib.summary_line("notifier", values))
    return 0


async def _bench(
    cfg: Config,
    args: argparse.Namespace,
    stack: Stack,
    keys: DevKeys,
    tmp: Path,
    out: Callable[[str], None],
) -> dict[str, object]:
    private_key = load_private_key(keys.private)

    def tokens(users: Sequence[str]) -> list[str]:
        return [mint_token(private_key, u) for u in users]

    notifier, cache, nats_process = (stack.processes[n] for n in ("notifier", "cache", "nats"))
    assert notifier.pid is not None
    assert cache.pid is not None
    assert nats_process.pid is not None
    targets = [
        Target("notifier", stack.url("notifier"), notifier.pid, (cache.pid,), tokens),
    ]
    baseline: ManagedProcess | None = None
    client = await LoadClient.start()
    nc = await murmur_nats.connect(stack.nats_url, name="bench-publisher")
    try:
        if not args.no_baseline:
            baseline, url = await start_baseline(tmp / "run", stack.nats_url)
            assert baseline.pid is not None
            targets.append(Target("baseline", url, baseline.pid, (), lambda _: None))
        out(
            "publisher: this process, murmur_timeline.pipeline.user_events.UserEvents on its"
            " own NATS connection; send time = each copy's occurred_at, set to time.time_ns()"
            " as its burst (a page of recipients) is handed to NATS and flushed;"
            " load client: one Node process"
            " (bench/notifier_load.mjs, ws), latency = frame arrival (performance.timeOrigin"
            " + performance.now()) - occurred_at, same machine clock"
        )
        out(
            "pids: "
            + ", ".join(f"{t.name} {t.pid}" for t in targets)
            + f", nats {nats_process.pid}, load client {client.pid}, publisher {os.getpid()}"
        )
        graphs = {t.name: Graph.build(t.name[0], cfg) for t in targets}
        started = time.perf_counter()
        seed_sqlite(Path(stack.database_url.removeprefix("sqlite:///")), list(graphs.values()))
        out(
            f"seeded {sum(len(g.users()) for g in graphs.values()):,} users and their follows"
            f" into the timeline's SQLite in {time.perf_counter() - started:.1f} s"
        )
        bench = Bench(cfg, client, Publisher(nc), nats_process.pid, stack.nats_monitor_url, out)
        only = frozenset(args.only or SCENARIOS)
        results: dict[str, dict[str, Result]] = {}
        for target in targets:
            results[target.name] = await bench.run(target, graphs[target.name], only)
        floor = None
        if "broadcast" in only:
            floor = await bench.broadcast_floor(stack.nats_url, graphs["notifier"])
        skew = max(
            abs(float(r.stats["clock_skew_ms"])) for rs in results.values() for r in rs.values()
        )
    finally:
        await nc.close()
        await client.aclose()
        if baseline is not None:
            await baseline.stop()
    out("")
    for line in table(results):
        out(line)
    out("")
    out(
        f"(client wall clock vs timeOrigin+now(): up to {skew:.2f} ms apart; Date.now() has"
        " ms resolution)"
    )
    return summarize(cfg, results, floor, out)


def summarize(
    cfg: Config,
    results: dict[str, dict[str, Result]],
    floor: Floor | None,
    out: Callable[[str], None],
) -> dict[str, object]:
    ours = results["notifier"]
    theirs = results.get("baseline", {})

    def get(rs: dict[str, Result], scenario: str, value: Callable[[Result], float]) -> float:
        return value(rs[scenario]) if scenario in rs else math.nan

    def whole(value: float) -> float | int:
        return value if math.isnan(value) else round(value)

    broadcast_p99 = get(ours, "broadcast", lambda r: r.latency("p99"))
    personal_p99 = get(ours, "personal", lambda r: r.latency("p99"))
    burst_rate = get(ours, "burst", lambda r: r.deliveries_per_s)
    base_burst_rate = get(theirs, "burst", lambda r: r.deliveries_per_s)
    lost = sum(r.lost for r in ours.values())
    reconnects = sum(r.reconnects for r in ours.values())
    resyncs = sum(r.resyncs for r in ours.values())
    bytes_per_conn = get(
        ours,
        "personal",
        lambda r: r.connected.bytes_per_conn if r.connected is not None else math.nan,
    )
    met = {
        f"broadcast p99 <= {TARGET_P99_MS:.0f} ms": broadcast_p99 <= TARGET_P99_MS,
        f"personal p99 <= {TARGET_P99_MS:.0f} ms": personal_p99 <= TARGET_P99_MS,
        f"burst >= {TARGET_BURST_VS_BASELINE:g}x baseline": burst_rate
        >= TARGET_BURST_VS_BASELINE * base_burst_rate,
        "lost = 0": lost == 0,
    }
    out(
        "targets: "
        + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in met.items())
        + f" (broadcast p99 {broadcast_p99:.1f} ms, personal p99 {personal_p99:.1f} ms,"
        f" burst {burst_rate:,.0f}/s vs {base_burst_rate:,.0f}/s"
        f" = {benchlib.ratio(burst_rate, base_burst_rate):.2f}x, lost {lost};"
        f" reconnects {reconnects}, resyncs {resyncs})"
    )
    if floor is not None:
        out(
            f"broadcast at a bare NATS subscriber (no server, no client): p50 {floor.p50_ms:.1f}"
            f" p99 {floor.p99_ms:.1f} ms: what any server behind NATS starts from"
        )
    return {
        "broadcast_p99_ms": broadcast_p99,
        "floor_broadcast_p50_ms": floor.p50_ms if floor is not None else math.nan,
        "floor_broadcast_p99_ms": floor.p99_ms if floor is not None else math.nan,
        "personal_p99_ms": personal_p99,
        "burst_deliveries_per_s": whole(burst_rate),
        "baseline_burst_deliveries_per_s": whole(base_burst_rate),
        "lost": lost,
        "bytes_per_conn": whole(bytes_per_conn),
        "baseline_lost": sum(r.lost for r in theirs.values()) if theirs else math.nan,
        "baseline_broadcast_p99_ms": get(theirs, "broadcast", lambda r: r.latency("p99")),
        "baseline_personal_p99_ms": get(theirs, "personal", lambda r: r.latency("p99")),
        "broadcast_p50_ms": get(ours, "broadcast", lambda r: r.latency("p50")),
        "broadcast_max_ms": get(ours, "broadcast", lambda r: r.latency("max")),
        "personal_p50_ms": get(ours, "personal", lambda r: r.latency("p50")),
        "personal_max_ms": get(ours, "personal", lambda r: r.latency("max")),
        "burst_vs_baseline": benchlib.ratio(burst_rate, base_burst_rate),
        "broadcast_publish_per_s": whole(
            get(ours, "broadcast", lambda r: r.published.copies_per_s)
        ),
        "burst_publish_per_s": whole(get(ours, "burst", lambda r: r.published.copies_per_s)),
        "personal_server_cores": get(ours, "personal", lambda r: r.core_share("server")),
        "broadcast_server_cores": get(ours, "broadcast", lambda r: r.core_share("server")),
        "burst_server_cpu_us_per_delivery": whole(
            get(ours, "burst", lambda r: r.server_us_per_delivery)
        ),
        "burst_client_cores": get(ours, "burst", lambda r: r.core_share("client")),
        "slow_consumers": sum(int(r.stats["slow_consumers"]) for r in ours.values()),
        "reconnects": reconnects,
        "reconnect_attempts": sum(int(r.stats["reconnect_attempts"]) for r in ours.values()),
        "resyncs": resyncs,
        "replayed": sum(r.replayed for r in ours.values()),
        "baseline_slow_consumers": (
            sum(int(r.stats["slow_consumers"]) for r in theirs.values()) if theirs else math.nan
        ),
        "quick": cfg.is_quick,
        "target_met": all(met.values()),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down run, under a minute")
    parser.add_argument("--no-baseline", action="store_true", help="the notifier only")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run this scenario (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--notifier-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the notifier process (experiments; repeatable)",
    )
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.serve_baseline is not None:
        serve_baseline(arguments.serve_baseline, arguments.nats_url)
        sys.exit(0)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            sys.exit(asyncio.run(main(arguments)))
        sys.exit(uvloop.run(main(arguments)))
