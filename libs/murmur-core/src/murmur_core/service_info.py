"""Who a running process is: name, version, instance, start time."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from importlib import metadata


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    version: str
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    started_at: float = field(default_factory=time.time)

    @classmethod
    def for_distribution(cls, name: str, distribution: str) -> ServiceInfo:
        return cls(name=name, version=package_version(distribution))
