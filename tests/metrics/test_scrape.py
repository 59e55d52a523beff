"""The scrape-based metric source answers as PromQL would: rates over a
window across counter resets, and histogram_quantile's interpolation."""

from __future__ import annotations

import math

import httpx
import pytest

from murmur_metrics.performance.scrape import ScrapeHistory, bucket_quantile
from murmur_metrics.performance.source import Selector
from murmur_metrics.targets import Replicas, Target

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    buckets = [(0.1, 10.0), (0.5, 20.0), (INF, 20.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.75, buckets) == pytest.approx(0.3)
    # Unordered input is sorted first.
    assert bucket_quantile(0.75, list(reversed(buckets))) == pytest.approx(0.3)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert bucket_quantile(0.99, [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)]) == 0.5


def test_quantile_of_nothing_is_unknown() -> None:
    assert bucket_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert bucket_quantile(0.5, [(0.1, 3.0)]) is None  # no +Inf: not a histogram


def exposition(requests: int, fast: int, total: int) -> str:
    histogram = "http_server_request_duration_seconds"
    return (
        "# TYPE http_server_requests_total counter\n"
        f'http_server_requests_total{{method="GET",route="/a",status_code="200"}} {requests}\n'
        f"# TYPE {histogram} histogram\n"
        f'{histogram}_bucket{{method="GET",route="/a",le="0.01"}} {fast}\n'
        f'{histogram}_bucket{{method="GET",route="/a",le="+Inf"}} {total}\n'
        f'{histogram}_count{{method="GET",route="/a"}} {total}\n'
        f'{histogram}_sum{{method="GET",route="/a"}} 1.0\n'
    )


class Scripted:
    """Serves one exposition per scrape; None answers 503 (a target down)."""

    def __init__(self, bodies: list[str | None]) -> None:
        self.bodies = bodies

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = self.bodies.pop(0)
        return httpx.Response(503) if body is None else httpx.Response(200, text=body)


async def scraped(bodies: list[str | None], window: float = 60.0) -> ScrapeHistory:
    client = httpx.AsyncClient(transport=httpx.MockTransport(Scripted(bodies)))
    history = ScrapeHistory(
        Replicas([Target("gateway", "http://10.0.0.9:8080/metrics")]),
        client,
        interval_seconds=1.0,
        window_seconds=window,
        points=10,
    )
    for _ in range(len(bodies)):
        await history.scrape_once()
    await client.aclose()
    return history


async def test_rate_sums_increases_across_a_restart() -> None:
    # 10 -> 15 (+5), then the process restarts and counts 3 (+3): 8 in all.
    history = await scraped([exposition(10, 0, 0), exposition(15, 0, 0), exposition(3, 0, 0)])
    [point] = await history.rate("http_server_requests_total", ["service", "route"])
    scrapes = list(history._history[history.targets[0]])
    seconds = scrapes[-1].at - scrapes[0].at
    assert point.labels == {"service": "gateway", "route": "/a"}
    assert point.value == pytest.approx(8 / seconds)


async def test_selectors_filter_by_label_equality_and_regex() -> None:
    history = await scraped([exposition(1, 0, 0), exposition(2, 0, 0)])
    hit = Selector(equal={"service": "gateway"}, regex={"status_code": "2.."})
    miss = Selector(regex={"status_code": "5.."})
    assert await history.rate("http_server_requests_total", [], hit)
    assert await history.rate("http_server_requests_total", [], miss) == []


async def test_quantile_from_bucket_rates_and_a_failed_scrape_is_skipped() -> None:
    # 100 new requests, 90 of them under 10 ms; then the target stops answering.
    history = await scraped([exposition(0, 0, 0), exposition(100, 90, 100), None])
    assert list(history._history[history.targets[0]])[-1].values is None
    [p50] = await history.quantile(0.5, "http_server_request_duration_seconds", ["route"])
    assert p50.labels == {"route": "/a"}
    assert p50.value == pytest.approx(0.01 * 50 / 90)
    [p99] = await history.quantile(0.99, "http_server_request_duration_seconds", [])
    assert p99.value == 0.01  # in +Inf: the highest finite bound
    # The latest answered scrape is the failed one: no current value.
    assert await history.latest("http_server_requests_total", ["instance"]) == []


class FakeDns:
    """Names to addresses, changeable between rounds; unknown names fail."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def __call__(self, host: str) -> list[str]:
        if host not in self.names:
            raise OSError(f"no such host {host}")
        return self.names[host]


async def test_a_name_is_every_replica_it_resolves_to() -> None:
    dns = FakeDns({"cache": ["10.0.0.2", "10.0.0.1"]})
    replicas = Replicas(
        [
            Target("cache", "grpc://cache:7052"),
            Target("timeline", "http://127.0.0.1:9464/metrics"),
            Target("gone", "http://nowhere:1/metrics"),
        ],
        resolve=dns,
    )
    assert await replicas.current() == [
        Target("cache", "grpc://10.0.0.2:7052"),
        Target("cache", "grpc://10.0.0.1:7052"),
        Target("timeline", "http://127.0.0.1:9464/metrics"),
        Target("gone", "http://nowhere:1/metrics"),
    ]


async def test_replicas_are_scraped_each_and_leave_when_dns_drops_them() -> None:
    dns = FakeDns({"cache": ["10.0.0.1", "10.0.0.2"]})
    counts = {"10.0.0.1": [1, 11], "10.0.0.2": [5, 25]}

    def answer(request: httpx.Request) -> httpx.Response:
        value = counts[request.url.host].pop(0)
        return httpx.Response(200, text=exposition(value, 0, 0))

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    history = ScrapeHistory(
        Replicas([Target("cache", "http://cache:9465/metrics")], resolve=dns),
        client,
        interval_seconds=1.0,
        window_seconds=60.0,
        points=10,
    )
    await history.scrape_once()
    await history.scrape_once()
    rates = await history.rate("http_server_requests_total", ["instance"])
    increases = {p.labels["instance"]: p.value for p in rates}
    assert set(increases) == {"10.0.0.1:9465", "10.0.0.2:9465"}
    assert all(rate > 0 for rate in increases.values())

    dns.names["cache"] = ["10.0.0.1"]
    counts["10.0.0.1"].append(21)
    await history.scrape_once()
    await client.aclose()
    assert [t.instance for t in history.targets] == ["10.0.0.1:9465"]
    latest = await history.latest("http_server_requests_total", ["instance"])
    assert [p.labels["instance"] for p in latest] == ["10.0.0.1:9465"]
