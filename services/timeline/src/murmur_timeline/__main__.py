"""``python -m murmur_timeline``: run the timeline gRPC service until SIGTERM."""

from __future__ import annotations

from murmur_core import lifecycle
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings


def main() -> None:
    lifecycle.serve("timeline", "murmur-timeline", TimelineSettings, TimelineServer.start)


if __name__ == "__main__":
    main()
