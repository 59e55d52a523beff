"""The dashboard's questions as PromQL, over Prometheus's HTTP API
(``/api/v1/query`` and ``/api/v1/query_range``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import httpx

from murmur_metrics.performance.source import ALL, History, Point, Selector

# Prometheus calls a scrape job what the dashboard calls a service.
_TO_PROMETHEUS = {"service": "job"}
_FROM_PROMETHEUS = {"job": "service"}


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or answered with an error."""


def _label(name: str) -> str:
    return _TO_PROMETHEUS.get(name, name)


def selector(where: Selector) -> str:
    matchers = [f'{_label(k)}="{_escape(v)}"' for k, v in sorted(where.equal.items())]
    matchers += [f'{_label(k)}=~"{_escape(v)}"' for k, v in sorted(where.regex.items())]
    return "{" + ",".join(matchers) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _by(labels: Sequence[str]) -> str:
    return ", ".join(_label(name) for name in labels)


class PrometheusSource:
    name = "prometheus"

    def __init__(
        self,
        base_url: str,
        client: httpx.AsyncClient,
        *,
        window_seconds: float,
        history_seconds: float,
        step_seconds: float,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._client = client
        self._window = f"{max(1, round(window_seconds))}s"
        self._history_seconds = history_seconds
        self._step = step_seconds

    def rate_expr(self, sample: str, by: Sequence[str], where: Selector = ALL) -> str:
        return f"sum by ({_by(by)}) (rate({sample}{selector(where)}[{self._window}]))"

    async def rate(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        return await self.query(self.rate_expr(sample, by, where))

    async def quantile(
        self, q: float, histogram: str, by: Sequence[str], where: Selector = ALL
    ) -> list[Point]:
        inner = self.rate_expr(f"{histogram}_bucket", [*by, "le"], where)
        return await self.query(f"histogram_quantile({q}, {inner})")

    async def latest(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        return await self.query(f"sum by ({_by(by)}) ({sample}{selector(where)})")

    async def gateway_history(self) -> History:
        gateway = Selector(equal={"service": "gateway"})
        errors = Selector(equal={"service": "gateway"}, regex={"status_code": "5.."})
        total = self.rate_expr("http_server_requests_total", [], gateway)
        queries = {
            "rps": total,
            "errors": f"{self.rate_expr('http_server_requests_total', [], errors)} / {total}",
            "p99": "histogram_quantile(0.99, "
            + self.rate_expr("http_server_request_duration_seconds_bucket", ["le"], gateway)
            + ")",
        }
        end = time.time()
        start = end - self._history_seconds
        series = {name: await self.query_range(expr, start, end) for name, expr in queries.items()}
        times = sorted({t for values in series.values() for t in values})
        return History(
            times=times,
            requests_per_second=[series["rps"].get(t) for t in times],
            error_ratio=[series["errors"].get(t) for t in times],
            p99_seconds=[series["p99"].get(t) for t in times],
        )

    async def query(self, expr: str) -> list[Point]:
        data = await self._get("/api/v1/query", {"query": expr})
        return [
            Point(_labels(item["metric"]), value)
            for item in data["result"]
            if (value := _number(item["value"][1])) is not None
        ]

    async def query_range(self, expr: str, start: float, end: float) -> dict[float, float]:
        data = await self._get(
            "/api/v1/query_range",
            {"query": expr, "start": start, "end": end, "step": self._step},
        )
        values: dict[float, float] = {}
        for item in data["result"][:1]:
            for at, raw in item["values"]:
                number = _number(raw)
                if number is not None:
                    values[float(at)] = number
        return values

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.get(self._base + path, params=params, timeout=5.0)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusUnavailable(f"{path}: {type(exc).__name__}") from exc
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{path}: {body.get('error', 'no data')}")
        data: dict[str, Any] = body["data"]
        return data


def _labels(metric: dict[str, str]) -> dict[str, str]:
    return {_FROM_PROMETHEUS.get(k, k): v for k, v in metric.items()}


def _number(raw: str) -> float | None:
    value = float(raw)
    return None if math.isnan(value) or math.isinf(value) else value
