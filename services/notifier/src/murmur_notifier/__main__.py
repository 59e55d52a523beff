"""``python -m murmur_notifier``: serve WebSocket clients until SIGTERM."""

from __future__ import annotations

from murmur_core import lifecycle
from murmur_notifier.server import NotifierServer
from murmur_notifier.settings import NotifierSettings


def main() -> None:
    lifecycle.serve("notifier", "murmur-notifier", NotifierSettings, NotifierServer.start)


if __name__ == "__main__":
    main()
