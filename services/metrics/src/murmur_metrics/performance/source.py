"""The questions the dashboard asks of metrics, answered either by
Prometheus (PromQL over its HTTP API) or by this service's own scrapes.

Both answer in the same terms, so everything above them is written once.
Results are labelled by ``service`` (Prometheus's ``job``) and ``instance``
plus whatever ``by`` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Selector:
    """Which series: equality and regular-expression label matchers."""

    equal: Mapping[str, str] = field(default_factory=dict)
    regex: Mapping[str, str] = field(default_factory=dict)


ALL = Selector()


@dataclass(frozen=True)
class Point:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class History:
    """The gateway's traffic over time, one value per step."""

    times: list[float]
    requests_per_second: list[float | None]
    error_ratio: list[float | None]
    p99_seconds: list[float | None]


class MetricSource(Protocol):
    name: str

    async def rate(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        """Per-second increase of a counter sample over the window, summed by labels."""
        ...

    async def quantile(
        self, q: float, histogram: str, by: Sequence[str], where: Selector = ALL
    ) -> list[Point]:
        """The q-quantile of a histogram's observations over the window."""
        ...

    async def latest(self, sample: str, by: Sequence[str], where: Selector = ALL) -> list[Point]:
        """A gauge's current value, summed by labels."""
        ...

    async def gateway_history(self) -> History: ...
