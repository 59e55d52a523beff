"""What the metrics service watches: one service instance at one URL (its
/metrics, its gRPC health, its /readyz)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    service: str
    url: str

    @property
    def instance(self) -> str:
        return urlsplit(self.url).netloc
