"""Metrics without Prometheus: every service's /metrics scraped on an
interval into a short in-memory history, and the dashboard's questions
answered over it the way PromQL would (rate over a window, counter resets,
histogram_quantile's linear interpolation)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from murmur_metrics.performance.source import ALL, History, Point, Selector
from murmur_metrics.targets import Replicas, Target

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]


@dataclass(frozen=True)
class Scrape:
    at: float
    # None: the target did not answer.
    values: Mapping[SeriesKey, float] | None


def parse(text: str) -> dict[SeriesKey, float]:
    values: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return values


class ScrapeHistory:
    """Scrapes every target once per interval, keeping ``points`` rounds."""

    name = "scrape"

    def __init__(
        self,
        targets: Replicas,
        client: httpx.AsyncClient,
        *,
        interval_seconds: float,
        window_seconds: float,
        points: int,
    ) -> None:
        self._replicas = targets
        self.targets: list[Target] = []
        self._client = client
        self._interval = interval_seconds
        self._window = window_seconds
        self._points = points
        self._history: dict[Target, deque[Scrape]] = {}

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.scrape_once()
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def scrape_once(self) -> None:
        # A replica gone from DNS leaves the page with its history.
        self.targets = await self._replicas.current()
        self._history = {
            t: self._history.get(t) or deque(maxlen=self._points) for t in self.targets
        }
        results = await asyncio.gather(*(self._scrape(t) for t in self.targets))
        for target, result in zip(self.targets, results, strict=True):
            self._history[target].append(result)

    async def _scrape(self, target: Target) -> Scrape:
        at = time.time()
        try:
            response = await self._client.get(target.url, timeout=self._interval)
            response.raise_for_status()
            return Scrape(at, parse(response.text))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("scrape failed", extra={"target": target.url, "error": type(exc).__name__})
            return Scrape(at, None)

    def last(self, target: Target) -> Scrape | None:
        history = self._history.get(target)
        return history[-1] if history else None

    def _in_window(self, target: Target) -> list[Scrape]:
        """The answered scrapes within the window (at least the last two)."""
        answered = [s for s in self._history[target] if s.values is not None]
        if len(answered) < 2:
            return []
        since = answered[-1].at - self._window - 1e-6
        inside = [s for s in answered if s.at >= since]
        return inside if len(inside) >= 2 else answered[-2:]

    async def rate(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        sums: dict[Labels, float] = {}
        for target in self.targets:
            scrapes = self._in_window(target)
            if not scrapes:
                continue
            seconds = scrapes[-1].at - scrapes[0].at
            # Increases summed pair by pair, so a restart inside the window
            # loses only what the dead process counted after its last scrape.
            for old, new in itertools.pairwise(scrapes):
                for key, increase in _increases(sample, where, target, old, new):
                    grouped = _group(key, by)
                    sums[grouped] = sums.get(grouped, 0.0) + increase / seconds
        return [Point(dict(labels), value) for labels, value in sums.items()]

    async def quantile(
        self, q: float, histogram: str, by: Sequence[str], where: Selector = ALL
    ) -> list[Point]:
        buckets = await self.rate(f"{histogram}_bucket", [*by, "le"], where)
        return quantiles_from_buckets(q, buckets, by)

    async def latest(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        sums: dict[Labels, float] = {}
        for target in self.targets:
            scrape = self.last(target)
            if scrape is None or scrape.values is None:
                continue
            for key, value in _matching(scrape.values, sample, where, target):
                grouped = _group(key, by)
                sums[grouped] = sums.get(grouped, 0.0) + value
        return [Point(dict(labels), value) for labels, value in sums.items()]

    async def gateway_history(self) -> History:
        """Per scrape round: the gateways' requests/s, 5xx ratio and p99."""
        gateways = [t for t in self.targets if t.service == "gateway"]
        rounds = min((len(self._history[t]) for t in gateways), default=0)
        history = History([], [], [], [])
        for i in range(1, rounds):
            total = errors = 0.0
            buckets: dict[Labels, float] = {}
            seconds = 0.0
            for target in gateways:
                old, new = (
                    self._history[target][-rounds + i - 1],
                    self._history[target][-rounds + i],
                )
                if old.values is None or new.values is None:
                    continue
                seconds = max(seconds, new.at - old.at)
                for key, inc in _increases("http_server_requests_total", ALL, target, old, new):
                    total += inc
                    if dict(key[1]).get("status_code", "").startswith("5"):
                        errors += inc
                for key, inc in _increases(
                    "http_server_request_duration_seconds_bucket", ALL, target, old, new
                ):
                    le = _group(key, ["le"])
                    buckets[le] = buckets.get(le, 0.0) + inc
            at = self._history[gateways[0]][-rounds + i].at
            history.times.append(round(at, 3))
            history.requests_per_second.append(total / seconds if seconds else None)
            history.error_ratio.append(errors / total if total else None)
            points = [Point(dict(k), v) for k, v in buckets.items()]
            p99 = quantiles_from_buckets(0.99, points, [])
            history.p99_seconds.append(p99[0].value if p99 else None)
        return history


def _matching(
    values: Mapping[SeriesKey, float], sample: str, where: Selector, target: Target
) -> Iterable[tuple[SeriesKey, float]]:
    extra = (("instance", target.instance), ("service", target.service))
    for (name, labels), value in values.items():
        if name != sample:
            continue
        full = dict(labels)
        full.update(extra)
        if all(full.get(k) == v for k, v in where.equal.items()) and all(
            _fullmatch(pattern, full.get(k, "")) for k, pattern in where.regex.items()
        ):
            yield (name, tuple(sorted(full.items()))), value


def _increases(
    sample: str, where: Selector, target: Target, old: Scrape, new: Scrape
) -> Iterable[tuple[SeriesKey, float]]:
    assert old.values is not None
    assert new.values is not None
    before = dict(_matching(old.values, sample, where, target))
    for key, value in _matching(new.values, sample, where, target):
        previous = before.get(key, 0.0)
        # A smaller value is a restarted process: count from zero, as rate() does.
        yield key, value - previous if value >= previous else value


def _group(key: SeriesKey, by: Sequence[str]) -> Labels:
    labels = dict(key[1])
    return tuple((name, labels.get(name, "")) for name in by)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _fullmatch(pattern: str, value: str) -> bool:
    return _compiled(pattern).fullmatch(value) is not None


def quantiles_from_buckets(q: float, buckets: list[Point], by: Sequence[str]) -> list[Point]:
    """histogram_quantile over cumulative bucket rates labelled with ``le``."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for point in buckets:
        key = tuple((name, point.labels.get(name, "")) for name in by)
        groups.setdefault(key, []).append((float(point.labels["le"]), point.value))
    result = []
    for key, pairs in groups.items():
        value = bucket_quantile(q, pairs)
        if value is not None:
            result.append(Point(dict(key), value))
    return result


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile for one histogram: the bucket holding
    the rank, linearly interpolated; the +Inf bucket answers its lower bound."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower
