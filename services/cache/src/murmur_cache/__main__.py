"""``python -m murmur_cache``: run the cache gRPC service until SIGTERM."""

from __future__ import annotations

from murmur_cache.server import CacheServer
from murmur_cache.settings import CacheSettings
from murmur_core import lifecycle


def main() -> None:
    lifecycle.serve("cache", "murmur-cache", CacheSettings, CacheServer.start)


if __name__ == "__main__":
    main()
