"""Small helpers shared by the benchmarks in bench/: Zipf sampling, percentiles,
Prometheus scrapes, process CPU, a lean HTTP/1.1 load client and the one-line
summary every bench ends with.

Benchmarks run as scripts (``python bench/bench_x.py``), so this module is
imported as ``benchlib`` from the script's own directory. Stdlib only, plus
what the workspace already installs (httpx, httptools, prometheus_client).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx
from prometheus_client.parser import text_string_to_metric_families

# Clock ticks per second for /proc/<pid>/stat CPU times.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Zipf:
    """Ranks 0..n-1 drawn with P(rank r) proportional to 1 / (r + 1) ** s, by a
    precomputed CDF and bisection (O(log n) a draw, no numpy)."""

    def __init__(self, n: int, s: float) -> None:
        if n < 1:
            raise ValueError("n must be positive")
        weights = [1.0 / (rank**s) for rank in range(1, n + 1)]
        cumulative = list(itertools.accumulate(weights))
        total = cumulative[-1]
        self.n = n
        self.s = s
        self._cdf = [c / total for c in cumulative]

    def rank(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self._cdf, rng.random()), self.n - 1)

    def probability(self, rank: int) -> float:
        low: float = self._cdf[rank - 1] if rank > 0 else 0.0
        high: float = self._cdf[rank]
        return high - low


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[index]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


class Scrape:
    """One scrape of a Prometheus endpoint; sums series by name and labels."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    @classmethod
    async def fetch(cls, http: httpx.AsyncClient, url: str) -> Scrape:
        # Uncompressed: gzip would be CPU spent by the process being measured.
        reply = await http.get(url, timeout=10, headers={"Accept-Encoding": "identity"})
        reply.raise_for_status()
        return cls.parse(reply.text)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        )

    def total(self, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (Linux /proc); NaN when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces; count from its ")".
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _TICKS


def own_cpu_seconds() -> float:
    return time.process_time()


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def fmt_value(value: object) -> str:
    """Summary-line spelling: ratios with 4 decimals, ms with 2, ints plain."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.2f}"
    return str(value).replace(" ", "_")


def summary_line(bench: str, values: Mapping[str, object]) -> str:
    """``bench=<name> key=value ...``: the one line a bench ends with."""
    parts = [f"bench={bench}"] + [f"{k}={fmt_value(v)}" for k, v in values.items()]
    return " ".join(parts)


# A lean load client. httpx costs this kind of machine about 3 ms of CPU per
# request, which would make the load generator, not the server, the thing
# measured; this client costs a small fraction of that. HTTP/1.1 keep-alive
# only, bodies with Content-Length (what uvicorn sends), no redirects, no TLS.


class _Reply:
    __slots__ = ("body", "done")

    def __init__(self) -> None:
        self.body = bytearray()
        self.done = False

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class ConnectionLost(ConnectionError):
    """The server closed the connection before answering anything."""


class LeanHttp:
    """``await client.request("GET", "/path", headers)`` -> (status, body)."""

    # Below the server's keep-alive timeout (uvicorn: 5 s), so a pooled
    # connection is never one the server is closing.
    MAX_IDLE_SECONDS = 3.0

    def __init__(
        self, base_url: str, *, max_connections: int = 16, timeout_seconds: float = 20.0
    ) -> None:
        self.timeout = timeout_seconds
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self._host_header = f"Host: {url.netloc}\r\n".encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def _connection(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < self.MAX_IDLE_SECONDS:
                return connection, True
            connection.close()
        return await self._connection_new()

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        raw = b"".join(head) + body
        async with self._slots, asyncio.timeout(self.timeout):
            connection, reused = await self._connection()
            try:
                status, reply, keep = await self._exchange(connection, raw)
            except ConnectionLost:
                connection.close()
                if not reused:
                    raise
                # The server dropped an idle connection: nothing was processed.
                connection, _ = await self._connection_new()
                try:
                    status, reply, keep = await self._exchange(connection, raw)
                except BaseException:
                    connection.close()
                    raise
            except BaseException:
                connection.close()
                raise
            if keep:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return status, reply

    async def _connection_new(self) -> tuple[_Connection, bool]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer), False

    @staticmethod
    async def _exchange(connection: _Connection, raw: bytes) -> tuple[int, bytes, bool]:
        connection.writer.write(raw)
        reply = _Reply()
        parser = httptools.HttpResponseParser(reply)
        received = False
        while not reply.done:
            try:
                data = await connection.reader.read(262144)
            except ConnectionResetError:
                data = b""
            if not data:
                if received:
                    raise ConnectionError("the server closed the connection mid-reply")
                raise ConnectionLost("the server closed the connection")
            received = True
            parser.feed_data(data)
        return parser.get_status_code(), bytes(reply.body), parser.should_keep_alive()

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


@contextlib.contextmanager
def run_directory(name: str, *, keep: bool) -> Iterator[Path]:
    """A fresh directory for one run's stack, logs and data; removed after
    the run unless ``keep`` (then its path is printed, for the logs)."""
    path = Path(tempfile.mkdtemp(prefix=f"murmur-bench-{name}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def process_cpu_seconds_precise(pid: int) -> float:
    """CPU time of one process's live threads from the scheduler's nanosecond
    counters (Linux ``/proc/<pid>/task/*/schedstat``, first field), where
    ``/proc/<pid>/stat`` counts whole clock ticks (10 ms): for CPU per request
    over a few hundred requests. Threads that exit between two readings take
    their time with them (process_cpu_seconds keeps it); NaN when unreadable."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return math.nan
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread exited meanwhile
    return total / 1e9


def code_version() -> str:
    """The commit measured, and whether services or libs had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "services", "libs"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (
        f"{head or 'unknown'}{' with uncommitted changes in services/ or libs/' if dirty else ''}"
    )
