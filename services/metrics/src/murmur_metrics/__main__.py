"""``python -m murmur_metrics``: analytics and the dashboard until SIGTERM."""

from __future__ import annotations

from murmur_core import lifecycle
from murmur_metrics.server import MetricsServer
from murmur_metrics.settings import MetricsSettings


def main() -> None:
    lifecycle.serve("metrics", "murmur-metrics", MetricsSettings, MetricsServer.start)


if __name__ == "__main__":
    main()
