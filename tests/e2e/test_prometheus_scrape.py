"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes the running
services and evaluates the rules of deploy/prometheus/ against what they
really expose.

First each service's /metrics passes ``promtool check metrics`` (the
exposition linter). Then Prometheus scrapes all five, one job per service
named as in deploy/prometheus/prometheus.yml, every second, with the real
rule files loaded: every job is up, one real series per service is queried
through the HTTP API, every rule evaluates without error, and each SLO's
5-minute error-ratio rule yields a series, which it only does when the
metric names, labels and job names it selects exist.

The session stack runs the timeline, cache, pipeline and gateway; the
notifier and the metrics service are more processes wired to that stack.
Last, a second metrics service reads that Prometheus (``PROMETHEUS_URL``)
rather than scraping, and its dashboard shows the same services.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from murmur_devstack import Stack, free_port
from murmur_devstack.services import METRICS, NOTIFIER, admin_token

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
JOBS = ("gateway", "timeline", "cache", "pipeline", "notifier", "metrics")
# One real series per service, each made by the requests below (the
# notifier's connection gauge and the consumers' lag exist from their start).
SERIES = {
    "gateway": 'http_server_requests_total{job="gateway",route="/v1/users",method="POST"}',
    "timeline": 'grpc_server_handled_total{job="timeline",'
    'grpc_service="murmur.timeline.v1.TimelineService"}',
    "cache": 'grpc_server_handled_total{job="cache",grpc_service="murmur.cache.v1.CacheService"}',
    "pipeline": 'murmur_consumer_messages_total{job="pipeline",consumer="pipeline",outcome="done"}',
    "notifier": 'murmur_notifier_connections{job="notifier"}',
    "metrics": 'murmur_consumer_pending_messages{job="metrics",consumer="metrics-analytics"}',
}
SLO_RATIOS = (
    "slo:gateway_availability:error_ratio_rate5m",
    "slo:gateway_latency:error_ratio_rate5m",
    "slo:notifier_delivery_latency:error_ratio_rate5m",
)
READY_TIMEOUT_SECONDS = 30.0
# Scrapes every second; the pipeline's series needs the event to go through
# the outbox, JetStream and the consumer first.
SERIES_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run `make install` (Debian packages prometheus and "
            "prometheus-alertmanager)"
        )
    return path


@pytest.fixture(scope="module")
async def notifier(stack: Stack, run_dir: Path) -> AsyncIterator[Stack]:
    """A notifier process on the session stack's NATS and cache (the session
    stack has none): a one-process stack whose spec takes the wiring of the
    session stack."""
    spec = dataclasses.replace(NOTIFIER, depends_on=(), env=lambda _own: NOTIFIER.env(stack.wiring))
    async with Stack(
        run_dir / f"prometheus-notifier-{secrets.token_hex(3)}",
        services=("notifier",),
        registry={"notifier": spec},
    ) as process:
        yield process


def _metrics_service(stack: Stack, run_dir: Path, **env: str) -> Stack:
    """A metrics service process on the session stack's NATS and Redis,
    observing its services, holding their admin token."""

    def wired(_own: Any) -> dict[str, str]:
        return {
            **METRICS.env(stack.wiring),
            "METRICS_ADMIN_TOKEN": admin_token(stack.wiring),
            "METRICS_SCRAPE_INTERVAL_SECONDS": "1",
            **env,
        }

    spec = dataclasses.replace(METRICS, depends_on=(), env=wired)
    return Stack(
        run_dir / f"prometheus-metrics-{secrets.token_hex(3)}",
        services=("metrics",),
        registry={"metrics": spec},
    )


@pytest.fixture(scope="module")
async def metrics_service(stack: Stack, run_dir: Path) -> AsyncIterator[Stack]:
    async with _metrics_service(stack, run_dir) as process:
        yield process


@pytest.fixture(scope="module")
def metrics_urls(stack: Stack, notifier: Stack, metrics_service: Stack) -> dict[str, str]:
    return {
        "gateway": f"{stack.gateway_url}/metrics",
        "timeline": stack.url("timeline_metrics"),
        "cache": stack.url("cache_metrics"),
        "pipeline": stack.url("pipeline_metrics"),
        "notifier": notifier.url("notifier_metrics"),
        "metrics": f"{metrics_service.url('metrics')}/metrics",
    }


@pytest.fixture(scope="module")
async def traffic(stack: Stack, token_for: Callable[[str], str]) -> None:
    """A user created (gateway -> timeline -> event -> pipeline) and a home
    timeline read (gateway -> cache), so the request series exist."""
    user = f"prom_{secrets.token_hex(4)}"
    auth = {"Authorization": f"Bearer {token_for(user)}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
        created = await http.post(
            "/v1/users",
            headers=auth,
            json={"handle": user, "public_key": base64.b64encode(b"pk-" + user.encode()).decode()},
        )
        assert created.status_code == 201, created.text
        home = await http.get("/v1/timelines/home", headers=auth)
        assert home.status_code == 200, home.text


@dataclasses.dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path


def _config(targets: Mapping[str, str]) -> dict[str, Any]:
    """The compose configuration's jobs, on the stack's real addresses."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": httpx.URL(url).path,
                "static_configs": [{"targets": [httpx.URL(url).netloc.decode()]}],
            }
            for job, url in targets.items()
        ],
    }


@pytest.fixture(scope="module")
async def prometheus(
    metrics_urls: dict[str, str], traffic: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps(_config(metrics_urls), indent=2))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        await _wait_ready(server, process)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(server: Prometheus, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=2) as http:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                while True:
                    if process.returncode is not None:
                        pytest.fail(f"prometheus exited:\n{server.log.read_text()}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/-/ready")).status_code == 200:
                            return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pytest.fail(f"prometheus not ready:\n{server.log.read_text()}")


async def _query(http: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    reply = await http.get("/api/v1/query", params={"query": expr})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _eventually(
    http: httpx.AsyncClient, expr: str, accept: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The query's result once ``accept`` takes it (scrapes and rules run every second)."""
    result: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(SERIES_TIMEOUT_SECONDS):
            while not accept(result := await _query(http, expr)):
                await asyncio.sleep(0.5)
    except TimeoutError:
        pytest.fail(f"{expr}: still {result} after {SERIES_TIMEOUT_SECONDS} s")
    return result


async def _check_metrics(body: bytes) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        _tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(body)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize("job", JOBS)
async def test_metrics_pass_promtool_check(
    job: str, metrics_urls: dict[str, str], traffic: None
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.get(metrics_urls[job])
    assert reply.status_code == 200
    assert b"process_cpu_seconds_total" in reply.content
    code, output = await _check_metrics(reply.content)
    assert code == 0, f"promtool check metrics on {job}'s /metrics:\n{output}"


async def test_prometheus_scrapes_every_service(prometheus: Prometheus) -> None:
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=5) as http:
        up = await _eventually(
            http,
            "up",
            lambda result: (
                {r["metric"]["job"]: r["value"][1] for r in result} == dict.fromkeys(JOBS, "1")
            ),
        )
        assert len(up) == len(JOBS)

        for job, expr in SERIES.items():
            result = await _eventually(http, expr, bool)
            assert {r["metric"]["job"] for r in result} == {job}, result
            assert all(r["metric"]["instance"] for r in result)


async def test_rules_load_and_evaluate_on_real_series(prometheus: Prometheus) -> None:
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=5) as http:
        # Every rule of every file loaded and evaluated without error
        # ("unknown" until its group's first evaluation).
        groups: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(SERIES_TIMEOUT_SECONDS):
                while True:
                    reply = await http.get("/api/v1/rules")
                    assert reply.status_code == 200, reply.text
                    groups = reply.json()["data"]["groups"]
                    if groups and all(
                        rule["health"] != "unknown" for g in groups for rule in g["rules"]
                    ):
                        break
                    await asyncio.sleep(0.5)
        except TimeoutError:
            pytest.fail(f"rules not evaluated: {groups}")
        assert {Path(g["file"]).resolve() for g in groups} == set(RULE_FILES)
        unhealthy = [
            (rule["name"], rule.get("lastError"))
            for g in groups
            for rule in g["rules"]
            if rule["health"] != "ok"
        ]
        assert unhealthy == []
        names = {rule["name"] for g in groups for rule in g["rules"]}
        assert {"ServiceDown", "TargetDown", "DeadLetters", *SLO_RATIOS} <= names

        # The SLO ratios select the real names, labels and jobs: each yields
        # a series (NaN while there was no traffic in the window: 0/0).
        for ratio in SLO_RATIOS:
            result = await _eventually(http, ratio, bool)
            assert result[0]["metric"]["slo"], result

        # Every job is up and named as the rules expect: no ServiceDown, not
        # even pending (it is, for the moment before the first scrapes).
        await _eventually(http, 'ALERTS{alertname="ServiceDown"}', lambda result: result == [])


async def test_dashboard_reads_prometheus_when_it_is_configured(
    prometheus: Prometheus, stack: Stack, run_dir: Path, token_for: Callable[[str], str]
) -> None:
    async with (
        _metrics_service(stack, run_dir, PROMETHEUS_URL=prometheus.url) as reader,
        httpx.AsyncClient(base_url=reader.url("metrics"), timeout=10) as http,
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as gateway,
    ):
        overview: dict[str, Any] = {}

        def showing_traffic(o: dict[str, Any]) -> bool:
            rates = {e["name"]: e["rate_per_second"] for e in o["performance"]["endpoints"]}
            services = {r["service"] for r in o["resources"]}
            return rates.get("POST /v1/users", 0) > 0 and set(JOBS) <= services

        try:
            async with asyncio.timeout(SERIES_TIMEOUT_SECONDS):
                while True:
                    # Traffic while Prometheus watches, so its rate() is not 0.
                    user = f"promdash_{secrets.token_hex(4)}"
                    await gateway.post(
                        "/v1/users",
                        headers={"Authorization": f"Bearer {token_for(user)}"},
                        json={"handle": user, "public_key": base64.b64encode(b"pk").decode()},
                    )
                    overview = (await http.get("/api/v1/overview")).json()
                    if showing_traffic(overview):
                        break
                    await asyncio.sleep(0.5)
        except TimeoutError:
            pytest.fail(f"the dashboard never showed Prometheus's data: {overview}")
    performance = overview["performance"]
    assert performance["source"] == "prometheus"
    users = next(e for e in performance["endpoints"] if e["name"] == "POST /v1/users")
    assert users["service"] == "gateway"
    assert users["rate_per_second"] > 0
    assert users["p99_ms"] is not None
    assert performance["history"]["t"], "no traffic history from query_range"
    for row in overview["resources"]:
        assert row["memory_bytes"] and row["memory_bytes"] > 1_000_000, row
