"""Tracing benchmark: what exporting every span costs the gateway, as requests
per second with tracing on (ratio 1.0 sampling, every span exported over
OTLP/gRPC) against tracing off, measured in one run.

Stacks. Two ``murmur_devstack.Stack`` runs (NATS, Redis, the timeline, the
cache, the pipeline and the gateway), both up for the whole benchmark and
measured in turn, never at the same time, identical but for the environment
of every Murmur service:

* on: ``OtlpReceiver.env()``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` at a real
  OTLP/gRPC trace receiver (``murmur_devstack.otlp``) running in this process,
  ``parentbased_traceidratio`` with ratio 1.0, batches every 200 ms (or every
  512 spans, the SDK's default). The receiver decodes every export and keeps
  only a count (``keep=False``); its CPU (this process's) shares the cores
  with everything else and is reported on its own.
* off: ``OTEL_SDK_DISABLED=true``: the SDK's ``TracerProvider`` hands out
  no-op tracers (opentelemetry-sdk 1.45 ``TracerProvider.get_tracer``), so
  the span middleware and the gRPC interceptors still run but every span is
  a non-recording one and nothing is exported.

No other ``OTEL_*`` setting reaches the services (the stacks do not take this
process's environment). The gateway's rate limits are raised as in
bench_gateway.py (every request still checked, none refused). Prometheus
metrics are on in both stacks: they are not switchable, so their cost is in
both figures and not in the difference.

Workloads. Each stack is seeded through the gateway with bench_gateway.py's
world (a reader following 20 authors, 26 posts of 1 KB ciphertext) and then
serves two workloads, each measured with ``wrk -t1 -c16 --latency`` in
rounds (5 of 5 s per mode, or 2 of 2 s with ``--quick``) after an unmeasured
warm-up, against the reader's first home page (full JSON,
``GET /v1/timelines/home?limit=20``). The modes alternate within a round, and
which goes first alternates between rounds: this machine's speed drifts by a
third over minutes, which one stack after the other turned into overheads
between 0.07 and 0.39 for the same code. A mode's figures are its rounds'
requests and CPU summed; the report also prints each round's overhead.

* cached: the gateway as configured; its near cache answers almost every
  request on the hot path (one SERVER span a request).
* rendered: the stack's gateway replaced by one with the near cache off
  (``GATEWAY_NEAR_CACHE_TTL_SECONDS=0``), same environment otherwise: every
  request calls the cache service over gRPC (gateway SERVER and CLIENT spans,
  cache SERVER span) and builds and encodes the page.

Checks, each run: spans received per request (receiver count delta over the
wrk requests, after the exporters have flushed) must be > 0 with tracing on
and exactly 0 with it off; a response's ``traceparent`` header must be there,
sampled, with tracing on and absent with it off; cached requests must be
answered on the hot path and rendered ones must each call the cache service
(the gateway's and the cache's own counters); no errors. A failed check makes
the run invalid: reported, exit status 1.

CPU. Per request, from the scheduler's counters of each process's threads
(``/proc/<pid>/task/*/schedstat``): the gateway (its event loop's thread apart
from the others, where the span processor encodes and exports), the cache
service, the whole stack, and this process (the receiver). Busy cores not
accounted for by any of these (``/proc/stat``) show how much else the machine
was running: above 0.3 of a core the req/s figures are noisy.

overhead = 1 - rps_on / rps_off, per workload; the summary's ``overhead`` is
the larger (target < 0.15). With two cores shared by the stack, wrk and the
receiver, CPU a request is steadier than req/s. ``--quick`` runs in about 35 s,
the default in about a minute and a half. The last line printed is the
summary: ``bench=tracing rps_on=... rps_off=... overhead=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bench_gateway as gw
import benchlib
import httpx

from murmur_devstack import SERVICES, DevKeys, Stack
from murmur_devstack.otlp import OtlpReceiver, otlp_receiver

TARGET_OVERHEAD = 0.15
MODES = ("off", "on")  # run order
WORKLOADS = ("cached", "rendered")
TRACING_OFF = {"OTEL_SDK_DISABLED": "true"}
# The Python services, which read OTEL_*; NATS and Redis do not trace.
TRACED_SERVICES = tuple(name for name, spec in SERVICES.items() if spec.env_prefix is not None)
# Cached requests answered before routing, at least (the near cache expires
# about once a second, and that one request renders).
MIN_HOT_PATH_SHARE = 0.95
# The span processor's warning when its queue overflows (spans lost).
QUEUE_FULL = "Queue full, dropping"
# Exports are over once fewer than this many spans arrive in this window (the
# processors export every 200 ms; an idle stack still sends a span or two a
# second: the pipeline's event consumer).
FLUSH_WINDOW_SECONDS = 0.5
FLUSH_QUIET_SPANS = 10
FLUSH_LIMIT_SECONDS = 5.0
# Above this many cores busy with other work during a run, the figures are noisy.
NOISY_OTHER_CORES = 0.3
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    wrk_warmup_seconds: int
    wrk_seconds: int
    rounds: int
    wrk_connections: int = 16
    seed: int = 20261122
    is_quick: bool = False

    @classmethod
    def quick(cls) -> Config:
        return cls(wrk_warmup_seconds=1, wrk_seconds=2, rounds=2, is_quick=True)

    @classmethod
    def full(cls) -> Config:
        return cls(wrk_warmup_seconds=2, wrk_seconds=5, rounds=5)


def stack_env(mode: str, receiver: OtlpReceiver) -> dict[str, dict[str, str]]:
    tracing = receiver.env() if mode == "on" else TRACING_OFF
    env = {name: dict(tracing) for name in TRACED_SERVICES}
    env["gateway"].update(gw.RAISED_LIMITS)
    return env


# One measured run


@dataclass
class Run:
    mode: str
    workload: str
    wrk: gw.WrkResult
    bench_cpu_s: float  # this process (the receiver) while wrk ran
    gateway_main_s: float  # the gateway's main thread (the event loop) while wrk ran
    busy_cores: float  # every core's busy time over the wrk run, /proc/stat
    spans: int
    requests_counted: float  # the gateway's http_server_requests_total delta
    hot_path_answers: float
    cache_calls: float  # the cache service's gRPC calls, all methods
    traceparent: str | None  # on one probe response before the run
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.workload}, tracing {self.mode}"

    @classmethod
    def merged(cls, rounds: list[Run]) -> Run:
        """One run of these rounds' requests: counts and CPU summed, rates
        over the summed time, latency percentiles the rounds' medians."""
        first = rounds[0]
        seconds = sum(r.wrk.seconds for r in rounds)
        requests = sum(r.wrk.requests for r in rounds)
        processes = {name for r in rounds for name in r.wrk.cpu_s}
        wrk = gw.WrkResult(
            label=first.wrk.label,
            rps=benchlib.ratio(requests, seconds),
            p50_ms=statistics.median(r.wrk.p50_ms for r in rounds),
            p99_ms=statistics.median(r.wrk.p99_ms for r in rounds),
            requests=requests,
            seconds=seconds,
            bytes_read=sum(r.wrk.bytes_read for r in rounds),
            non_2xx=sum(r.wrk.non_2xx for r in rounds),
            socket_errors=sum(r.wrk.socket_errors for r in rounds),
            wrk_cpu_s=sum(r.wrk.wrk_cpu_s for r in rounds),
            cpu_s={n: sum(r.wrk.cpu_s.get(n, 0.0) for r in rounds) for n in processes},
        )
        return cls(
            mode=first.mode,
            workload=first.workload,
            wrk=wrk,
            bench_cpu_s=sum(r.bench_cpu_s for r in rounds),
            gateway_main_s=sum(r.gateway_main_s for r in rounds),
            busy_cores=benchlib.ratio(sum(r.busy_cores * r.wrk.seconds for r in rounds), seconds),
            spans=sum(r.spans for r in rounds),
            requests_counted=sum(r.requests_counted for r in rounds),
            hot_path_answers=sum(r.hot_path_answers for r in rounds),
            cache_calls=sum(r.cache_calls for r in rounds),
            traceparent=first.traceparent,
            problems=[p for r in rounds for p in r.problems],
        )

    @property
    def requests(self) -> int:
        return self.wrk.requests

    def per_request(self, value: float) -> float:
        return benchlib.ratio(value, self.requests)

    @property
    def spans_per_request(self) -> float:
        return self.per_request(self.spans)

    def us(self, name: str) -> float:
        return self.wrk.us_per_request(name)

    @property
    def main_us(self) -> float:
        """The gateway's event loop thread, CPU µs a request."""
        return self.per_request(self.gateway_main_s * 1e6)

    @property
    def threads_us(self) -> float:
        """The gateway's other threads (the span processor's exports, gRPC's
        own), CPU µs a request."""
        return self.us("gateway") - self.main_us

    @property
    def stack_us(self) -> float:
        return self.per_request(sum(self.wrk.cpu_s.values()) * 1e6)

    @property
    def bench_us(self) -> float:
        return self.per_request(self.bench_cpu_s * 1e6)

    @property
    def bench_cores(self) -> float:
        return benchlib.ratio(self.bench_cpu_s, self.wrk.seconds)

    @property
    def foreign_cores(self) -> float:
        """Busy cores not accounted for by the stack, wrk or this process:
        whatever else ran on the machine meanwhile."""
        ours = sum(self.wrk.cpu_s.values()) + self.wrk.wrk_cpu_s + self.bench_cpu_s
        return max(0.0, self.busy_cores - benchlib.ratio(ours, self.wrk.seconds))


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time of a process's main thread (Linux schedstat, ns); NaN when
    unreadable."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as stat:
            return int(stat.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return math.nan


def busy_seconds() -> float:
    """CPU time every core spent busy since boot (Linux /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already in user/nice.
    return (sum(fields[:8]) - idle) / _TICKS


async def flushed(receiver: OtlpReceiver) -> int:
    """The receiver's span count once the services' batches have arrived:
    fewer than FLUSH_QUIET_SPANS in the last FLUSH_WINDOW_SECONDS."""
    step = 0.1
    history = [receiver.span_count]
    window = round(FLUSH_WINDOW_SECONDS / step)
    for _ in range(round(FLUSH_LIMIT_SECONDS / step)):
        await asyncio.sleep(step)
        history.append(receiver.span_count)
        if len(history) > window and history[-1] - history[-1 - window] < FLUSH_QUIET_SPANS:
            break
    return history[-1]


@dataclass(frozen=True)
class Counters:
    requests: float
    hot_path: float
    cache_calls: float

    @classmethod
    async def read(cls, http: httpx.AsyncClient, gateway_url: str, cache_url: str) -> Counters:
        gateway = await benchlib.Scrape.fetch(http, f"{gateway_url}/metrics")
        cache = await benchlib.Scrape.fetch(http, cache_url)
        return cls(
            requests=gateway.total("http_server_requests_total"),
            hot_path=gateway.total("murmur_gateway_hot_path_answers_total"),
            cache_calls=cache.total("grpc_server_handled_total"),
        )


async def measure(
    cfg: Config,
    mode: str,
    workload: str,
    stack: Stack,
    pids: Mapping[str, int],
    receiver: OtlpReceiver,
    auth: Mapping[str, str],
    out: Callable[[str], None],
    *,
    warm_up: bool,
) -> Run:
    base_url = stack.gateway_url
    cache_metrics = stack.url("cache_metrics")
    headers = {**auth, "Accept": "application/json"}
    url = base_url + gw.HOME_PATH
    problems: list[str] = []

    probe = await gw.fetch_raw(base_url, gw.HOME_PATH, headers)
    if probe.status != 200:
        problems.append(f"probe request answered {probe.status}: {probe.body[:200]!r}")
    traceparent = probe.headers.get("traceparent")

    if warm_up:
        await gw.run_wrk("warm-up", url, headers, cfg.wrk_warmup_seconds, cfg.wrk_connections, pids)
    await gw.settle(list(pids.values()), limit=3.0)
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as scraper:
        spans0 = await flushed(receiver)
        before = await Counters.read(scraper, base_url, cache_metrics)
        cpu0 = time.process_time()
        main0 = main_thread_cpu_seconds(pids["gateway"])
        busy0, wall0 = busy_seconds(), time.perf_counter()
        result = await gw.run_wrk(
            f"{workload} {mode}", url, headers, cfg.wrk_seconds, cfg.wrk_connections, pids
        )
        gateway_main = main_thread_cpu_seconds(pids["gateway"]) - main0
        bench_cpu = time.process_time() - cpu0
        busy = benchlib.ratio(busy_seconds() - busy0, time.perf_counter() - wall0)
        spans1 = await flushed(receiver)
        after = await Counters.read(scraper, base_url, cache_metrics)

    run = Run(
        mode=mode,
        workload=workload,
        wrk=result,
        bench_cpu_s=bench_cpu,
        gateway_main_s=gateway_main,
        busy_cores=busy,
        spans=spans1 - spans0,
        requests_counted=after.requests - before.requests,
        hot_path_answers=after.hot_path - before.hot_path,
        cache_calls=after.cache_calls - before.cache_calls,
        traceparent=traceparent,
        problems=problems,
    )
    run.problems += check(run)
    out(
        f"  {run.label:24s} {result.rps:9,.0f} req/s  p50 {result.p50_ms:6.2f} ms"
        f"  p99 {result.p99_ms:6.2f} ms  gateway {_n(run.us('gateway'))} µs/req"
        f"  spans/req {run.spans_per_request:.2f}  ({result.requests:,} requests)"
    )
    for problem in run.problems:
        out(f"    PROBLEM: {problem}")
    return run


def sampled(traceparent: str | None) -> bool:
    """Whether a W3C traceparent has its sampled flag set (other flags, such
    as Level 2's random-trace-id bit, may be set too)."""
    if traceparent is None:
        return False
    flags = traceparent.rsplit("-", 1)[-1]
    try:
        return bool(int(flags, 16) & 0x01)
    except ValueError:
        return False


def check(run: Run) -> list[str]:
    """What makes this run not measure what it claims to (nothing: [])."""
    problems: list[str] = []
    if run.requests <= 0:
        return ["wrk completed no requests"]
    errors = run.wrk.non_2xx + run.wrk.socket_errors
    if errors:
        problems.append(f"{run.wrk.non_2xx} non-2xx answers, {run.wrk.socket_errors} socket errors")
    if run.mode == "on":
        if run.spans <= 0:
            problems.append("tracing on, but the receiver got no spans")
        if not sampled(run.traceparent):
            problems.append(f"tracing on, but the response's traceparent is {run.traceparent!r}")
    else:
        if run.spans != 0:
            problems.append(f"tracing off, but the receiver got {run.spans} spans")
        if run.traceparent is not None:
            problems.append(f"tracing off, but the response carries traceparent {run.traceparent}")
    hot_share = benchlib.ratio(run.hot_path_answers, run.requests_counted)
    if run.workload == "cached" and not hot_share >= MIN_HOT_PATH_SHARE:
        problems.append(f"cached, but only {hot_share:.1%} of requests took the hot path")
    if run.workload == "rendered":
        if run.hot_path_answers:
            problems.append(f"rendered, but {run.hot_path_answers:.0f} hot-path answers")
        if not run.per_request(run.cache_calls) >= 0.99:
            problems.append(
                f"rendered, but {run.per_request(run.cache_calls):.2f} cache calls a request"
            )
    return problems


# Both stacks up, seeded, then each workload measured on them in turn


@dataclass
class StackOutcome:
    rounds: dict[str, list[Run]]  # by workload
    seeding: str
    dropped_warnings: int  # QUEUE_FULL lines in the services' logs

    @property
    def runs(self) -> dict[str, Run]:
        """By workload, its rounds merged."""
        return {workload: Run.merged(rounds) for workload, rounds in self.rounds.items()}


@dataclass
class ReadyStack:
    mode: str
    stack: Stack
    pids: dict[str, int]
    reader: Mapping[str, str]
    seeding: str


@contextlib.asynccontextmanager
async def ready_stack(
    mode: str,
    receiver: OtlpReceiver,
    keys: DevKeys,
    world: gw.World,
    run_dir: Path,
    out: Callable[[str], None],
) -> AsyncIterator[ReadyStack]:
    stack = Stack(
        run_dir,
        services=("pipeline", "gateway"),
        jwt_public_key_files=[keys.public],
        env=stack_env(mode, receiver),
        environ={},  # nothing from this shell's OTEL_* reaches the services
    )
    auth = {u: {"Authorization": f"Bearer {keys.token(u, ttl_seconds=3600)}"} for u in world.users}
    started = time.perf_counter()
    async with stack:
        up = time.perf_counter() - started
        pids = {n: p.pid for n, p in stack.processes.items() if p.pid is not None}
        lean = benchlib.LeanHttp(stack.gateway_url, max_connections=32)
        try:
            started = time.perf_counter()
            await gw.seed(lean, world, auth)
            seeded = time.perf_counter() - started
            waited = await gw.wait_for_page(lean, auth[world.reader], world)
        finally:
            await lean.aclose()
        quiet = await gw.settle(list(pids.values()))
        seeding = (
            f"tracing {mode}: stack up in {up:.1f} s, seeded in {seeded:.1f} s, home page"
            f" complete {waited:.1f} s later, quiet after {quiet:.1f} s"
        )
        out("  " + seeding)
        yield ReadyStack(mode, stack, pids, auth[world.reader], seeding)


@contextlib.asynccontextmanager
async def rendering(ready: ReadyStack) -> AsyncIterator[None]:
    """The stack's gateway replaced by one with the near cache off."""
    await ready.stack.processes["gateway"].stop()
    gateway = gw.gateway_variant(ready.stack, "rendered", gw.NO_NEAR_CACHE)
    await gateway.start()
    cached_pids = ready.pids
    try:
        assert gateway.pid is not None
        ready.pids = {**cached_pids, "gateway": gateway.pid}
        yield
    finally:
        ready.pids = cached_pids
        await gateway.stop()


async def measure_rounds(
    cfg: Config,
    workload: str,
    stacks: Mapping[str, ReadyStack],
    receiver: OtlpReceiver,
    out: Callable[[str], None],
) -> dict[str, list[Run]]:
    """cfg.rounds runs of each mode, alternating, the first mode of a round
    alternating too: whatever else the machine does meanwhile (it drifts
    over minutes) weighs on both modes alike."""
    rounds: dict[str, list[Run]] = {mode: [] for mode in MODES}
    for index in range(cfg.rounds):
        order = MODES if index % 2 == 0 else MODES[::-1]
        for mode in order:
            ready = stacks[mode]
            run = await measure(
                cfg,
                mode,
                workload,
                ready.stack,
                ready.pids,
                receiver,
                ready.reader,
                out,
                warm_up=index == 0,
            )
            rounds[mode].append(run)
    return rounds


async def run_stacks(
    cfg: Config,
    receiver: OtlpReceiver,
    keys: DevKeys,
    world: gw.World,
    run_dir: Path,
    out: Callable[[str], None],
) -> dict[str, StackOutcome]:
    async with contextlib.AsyncExitStack() as exits:
        stacks: dict[str, ReadyStack] = {}
        for mode in MODES:
            out(f"tracing {mode}: starting a stack in {run_dir / mode} ...")
            stacks[mode] = await exits.enter_async_context(
                ready_stack(mode, receiver, keys, world, run_dir / mode, out)
            )
        by_workload = {"cached": await measure_rounds(cfg, "cached", stacks, receiver, out)}
        async with contextlib.AsyncExitStack() as rendered:
            for ready in stacks.values():
                await rendered.enter_async_context(rendering(ready))
            by_workload["rendered"] = await measure_rounds(cfg, "rendered", stacks, receiver, out)
    return {
        mode: StackOutcome(
            rounds={w: by_workload[w][mode] for w in WORKLOADS},
            seeding=stacks[mode].seeding,
            dropped_warnings=queue_full_warnings(run_dir / mode),
        )
        for mode in MODES
    }


def queue_full_warnings(run_dir: Path) -> int:
    """How often the services' span processors said they dropped spans."""
    return sum(log.read_text(errors="replace").count(QUEUE_FULL) for log in run_dir.glob("*.log"))


# Report


@dataclass(frozen=True)
class Comparison:
    workload: str
    off: Run
    on: Run
    round_overheads: tuple[float, ...]  # each round's pair, in order

    @property
    def overhead(self) -> float:
        return 1 - benchlib.ratio(self.on.wrk.rps, self.off.wrk.rps)

    @property
    def cpu_overhead(self) -> float:
        """Extra gateway CPU a request with tracing on, as a fraction."""
        return benchlib.ratio(self.on.us("gateway"), self.off.us("gateway")) - 1

    @property
    def span_cost_us(self) -> float:
        """The stack's extra CPU (every process) per span exported."""
        return benchlib.ratio(self.on.stack_us - self.off.stack_us, self.on.spans_per_request)


@dataclass(frozen=True)
class Figures:
    comparisons: dict[str, Comparison]
    worst: Comparison
    problems: list[str]
    dropped_warnings: int

    @classmethod
    def of(cls, outcomes: Mapping[str, StackOutcome]) -> Figures:
        comparisons = {
            w: Comparison(
                w,
                outcomes["off"].runs[w],
                outcomes["on"].runs[w],
                tuple(
                    1 - benchlib.ratio(on.wrk.rps, off.wrk.rps)
                    for off, on in zip(
                        outcomes["off"].rounds[w], outcomes["on"].rounds[w], strict=True
                    )
                ),
            )
            for w in WORKLOADS
        }
        worst = max(
            comparisons.values(),
            key=lambda c: -math.inf if math.isnan(c.overhead) else c.overhead,
        )
        problems = [
            f"{run.label}: {problem}"
            for c in comparisons.values()
            for run in (c.off, c.on)
            for problem in run.problems
        ]
        dropped = sum(o.dropped_warnings for o in outcomes.values())
        return cls(comparisons, worst, problems, dropped)

    @property
    def overhead(self) -> float:
        return self.worst.overhead

    @property
    def other_cores(self) -> float:
        """The most the rest of the machine kept busy during one run."""
        return max(r.foreign_cores for c in self.comparisons.values() for r in (c.off, c.on))

    @property
    def target_met(self) -> bool:
        return not self.problems and self.overhead < TARGET_OVERHEAD


def _n(value: float, digits: int = 0, *, sign: bool = False) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"


def report(cfg: Config, outcomes: Mapping[str, StackOutcome], figures: Figures) -> list[str]:
    lines: list[str] = []
    add = lines.append
    add("")
    add(
        f"Murmur tracing benchmark ({'QUICK' if cfg.is_quick else 'full'}), code"
        f" {benchlib.code_version()}, {os.cpu_count()} cores shared by every process"
    )
    for mode in MODES:
        add(outcomes[mode].seeding)
    add(
        f"wrk -t1 -c{cfg.wrk_connections} --latency, {cfg.rounds} rounds of {cfg.wrk_seconds} s"
        f" per mode after a {cfg.wrk_warmup_seconds} s warm-up, modes alternating, one run at"
        f" a time, both stacks up, GET {gw.HOME_PATH} (full JSON); cached: near cache on (hot"
        " path), rendered: near cache off (gRPC to the cache service)"
    )
    add(
        "tracing on: every span exported over OTLP/gRPC to the receiver in the bench process"
        " (ratio 1.0); off: OTEL_SDK_DISABLED=true (no-op tracers, nothing exported)"
    )
    add(
        "CPU µs a request: gateway = all its threads (loop = the event loop's thread, threads ="
        " the others: gRPC's and the span exporter's); cache service; stack = every process;"
        " receiver = the bench process; other cores = cores kept busy by anything else"
    )
    add("")
    header = (
        f"{'workload':9s} {'tracing':7s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s}"
        f" {'gateway':>8s} {'loop':>6s} {'threads':>8s} {'cache':>6s} {'stack':>6s}"
        f" {'receiver':>9s} {'other cores':>12s}"
    )
    add(header)
    add("-" * len(header))
    for workload in WORKLOADS:
        for mode in MODES:
            r = outcomes[mode].runs[workload]
            add(
                f"{workload:9s} {mode:7s} {r.wrk.rps:>7,.0f} {r.wrk.p50_ms:>7.2f}"
                f" {r.wrk.p99_ms:>7.2f} {_n(r.us('gateway')):>8s} {_n(r.main_us):>6s}"
                f" {_n(r.threads_us):>8s} {_n(r.us('cache')):>6s} {_n(r.stack_us):>6s}"
                f" {_n(r.bench_us):>9s} {r.foreign_cores:>12.2f}"
            )
    add("")
    header = (
        f"{'workload':9s} {'tracing':7s} {'requests':>9s} {'spans/req':>10s} {'traceparent':>12s}"
        f" {'hot path':>9s} {'cache calls/req':>16s} {'errors':>7s}  check"
    )
    add(header)
    add("-" * len(header))
    for workload in WORKLOADS:
        for mode in MODES:
            r = outcomes[mode].runs[workload]
            hot = benchlib.ratio(r.hot_path_answers, r.requests_counted)
            parent = (
                "none"
                if r.traceparent is None
                else ("sampled" if sampled(r.traceparent) else "unsampled")
            )
            add(
                f"{workload:9s} {mode:7s} {r.requests:>9,} {r.spans_per_request:>10.2f}"
                f" {parent:>12s} {hot:>9.1%} {r.per_request(r.cache_calls):>16.2f}"
                f" {r.wrk.non_2xx + r.wrk.socket_errors:>7d}"
                f"  {'ok' if not r.problems else 'PROBLEM'}"
            )
    add("")
    for c in figures.comparisons.values():
        add(
            f"{c.workload}: {c.on.wrk.rps:,.0f} vs {c.off.wrk.rps:,.0f} req/s, overhead"
            f" {c.overhead:.3f}; gateway CPU {_n(c.on.us('gateway'))} vs"
            f" {_n(c.off.us('gateway'))} µs a request ({c.cpu_overhead:+.1%}: loop"
            f" {_n(c.on.main_us - c.off.main_us, sign=True)}, threads"
            f" {_n(c.on.threads_us - c.off.threads_us, sign=True)}); the whole stack"
            f" {_n(c.span_cost_us)} µs more for each of the {c.on.spans_per_request:.2f} spans"
            f" a request; p99 {c.on.wrk.p99_ms:.2f} vs {c.off.wrk.p99_ms:.2f} ms; the receiver"
            f" used {c.on.bench_cores:.2f} cores; overhead by round"
            f" {' '.join(f'{o:.3f}' for o in c.round_overheads)}"
        )
    if figures.dropped_warnings:
        add(
            f"WARNING: the span processors logged {QUEUE_FULL!r} {figures.dropped_warnings}"
            " time(s): spans were lost, so tracing on did less work than it should have"
        )
    if figures.other_cores > NOISY_OTHER_CORES:
        add(
            f"NOTE: other processes kept up to {figures.other_cores:.2f} of the"
            f" {os.cpu_count()} cores busy during the runs: the req/s figures are noisy"
            " (CPU a request is steadier)"
        )
    add("")
    if figures.problems:
        add("INVALID RUN: the runs did not measure what they claim to:")
        for problem in figures.problems:
            add(f"  - {problem}")
    verdict = "met" if figures.target_met else "MISSED"
    add(
        f"target: overhead < {TARGET_OVERHEAD:.2f} (the larger of the two workloads,"
        f" {figures.worst.workload}): {figures.overhead:.3f}, {verdict}"
    )
    return lines


def summary(cfg: Config, figures: Figures) -> str:
    cmp = figures.comparisons
    worst = figures.worst
    values: dict[str, object] = {
        "rps_on": round(worst.on.wrk.rps),
        "rps_off": round(worst.off.wrk.rps),
        "overhead": round(figures.overhead, 4),
        "worst": worst.workload,
    }
    for w, c in cmp.items():
        values[f"overhead_{w}"] = round(c.overhead, 4)
    for w, c in cmp.items():
        values[f"rps_on_{w}"] = round(c.on.wrk.rps)
        values[f"rps_off_{w}"] = round(c.off.wrk.rps)
    for w, c in cmp.items():
        values[f"spans_per_request_{w}"] = round(c.on.spans_per_request, 3)
    for w, c in cmp.items():
        values[f"p99_ms_on_{w}"] = round(c.on.wrk.p99_ms, 2)
        values[f"p99_ms_off_{w}"] = round(c.off.wrk.p99_ms, 2)
    for w, c in cmp.items():
        values[f"gateway_cpu_us_on_{w}"] = round(c.on.us("gateway"))
        values[f"gateway_cpu_us_off_{w}"] = round(c.off.us("gateway"))
        values[f"cpu_overhead_{w}"] = round(c.cpu_overhead, 4)
    for w, c in cmp.items():
        values[f"receiver_cpu_us_{w}"] = round(c.on.bench_us)
    values["other_cores_max"] = round(figures.other_cores, 2)
    values["dropped_span_warnings"] = figures.dropped_warnings
    values["problems"] = len(figures.problems)
    values["quick"] = cfg.is_quick
    values["target_met"] = figures.target_met
    return benchlib.summary_line("tracing", values)


async def main(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config.full()
    wall = time.perf_counter()

    def out(line: str) -> None:
        print(line, flush=True)

    out(f"bench-tracing, {'QUICK' if cfg.is_quick else 'full'}")
    if not gw.have_wrk(out):
        return 2
    load = os.getloadavg()
    out(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    world = gw.make_world(cfg.seed)
    with benchlib.run_directory("tracing", keep=args.keep) as tmp:
        keys = DevKeys.ensure(tmp / "keys")
        async with otlp_receiver(keep=False) as receiver:
            out(f"OTLP receiver at {receiver.address}")
            outcomes = await run_stacks(cfg, receiver, keys, world, tmp, out)
    figures = Figures.of(outcomes)
    for line in report(cfg, outcomes, figures):
        out(line)
    out(f"(wall time {time.perf_counter() - wall:.0f} s, stack starts and seeding included)")
    out(summary(cfg, figures))
    return 1 if figures.problems else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("murmur_core.nats").setLevel(logging.ERROR)
    sys.exit(asyncio.run(main(arguments)))
