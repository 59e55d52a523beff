"""The scrape-based metric source answers as PromQL would: rates over a
window across counter resets, and histogram_quantile's interpolation."""

from __future__ import annotations

import math

import httpx
import pytest

from murmur_metrics.performance.scrape import ScrapeHistory, bucket_quantile
from murmur_metrics.performance.source import Selector
from murmur_metrics.targets import Target

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
        [Target("gateway", "http://gw:8080/metrics")],
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
