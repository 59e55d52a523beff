"""What the stack runs, declared as data: one ``ServiceSpec`` per process.

Adding a service is one entry in ``SERVICES``: its command, the ports it needs
(named by the environment variable it reads them from), the variables that wire
it to the rest, its readiness probe and what it depends on.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from murmur_cache.sealing import KeyRing
from murmur_devstack import binaries
from murmur_devstack.ports import LOOPBACK
from murmur_devstack.probes import GrpcHealthServing, Probe, RedisPing, http_readyz, nats_jetstream


@dataclass(frozen=True)
class Wiring:
    """Everything fixed for the lifetime of a stack: where things listen and live.

    It does not change when a process restarts, so a restarted service comes
    back on the same ports with the same data.
    """

    run_dir: Path
    data_dir: Path
    ports: Mapping[str, int]
    database_url: str
    jwt_public_key_files: Sequence[Path] = ()
    host: str = LOOPBACK

    def port(self, name: str) -> int:
        try:
            return self.ports[name]
        except KeyError:
            raise KeyError(f"no port {name!r} in this stack (is its service selected?)") from None

    def addr(self, port_name: str) -> str:
        return f"{self.host}:{self.port(port_name)}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.addr('NATS_PORT')}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.addr('REDIS_PORT')}/0"


EnvFn = Callable[[Wiring], Mapping[str, str]]


def _no_env(_: Wiring) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: Callable[[Wiring], Sequence[str]]
    # Port name -> fixed port for `make up`. The name is the environment variable
    # the process reads it from (it is exported under that name) and the key a
    # developer sets in .env; tests get free ports instead.
    ports: Mapping[str, int]
    probe: Callable[[Wiring], Probe]
    urls: Callable[[Wiring], Mapping[str, str]]
    env: EnvFn = _no_env
    depends_on: tuple[str, ...] = ()
    # Murmur's own Python services: their settings prefix, and they get OTEL_*.
    env_prefix: str | None = None
    start_timeout: float = 30.0
    stop_timeout: float = 10.0


def python_service(module: str) -> Callable[[Wiring], Sequence[str]]:
    # The launcher's own interpreter: the workspace venv, where every service is installed.
    return lambda _: [sys.executable, "-m", module]


def _nats_command(w: Wiring) -> Sequence[str]:
    store = w.data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    return [
        str(binaries.nats_server()),
        "-a", w.host,
        "-p", str(w.port("NATS_PORT")),
        "-m", str(w.port("NATS_MONITOR_PORT")),
        "-js",
        "-sd", str(store),
    ]  # fmt: skip


def _redis_command(w: Wiring) -> Sequence[str]:
    store = w.data_dir / "redis"
    store.mkdir(parents=True, exist_ok=True)
    # Redis is derived state (see ARCHITECTURE.md): no snapshots, no AOF.
    return [
        str(binaries.redis_server()),
        "--port", str(w.port("REDIS_PORT")),
        "--bind", w.host,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(store),
    ]  # fmt: skip


# The infrastructure's dev ports are not the standard 4222/6379: developers'
# machines often run their own NATS and Redis there.
NATS = ServiceSpec(
    name="nats",
    command=_nats_command,
    ports={"NATS_PORT": 14222, "NATS_MONITOR_PORT": 18222},
    probe=lambda w: nats_jetstream(w.port("NATS_MONITOR_PORT"), w.host),
    urls=lambda w: {
        "nats": w.nats_url,
        "nats_monitor": f"http://{w.addr('NATS_MONITOR_PORT')}",
    },
)

REDIS = ServiceSpec(
    name="redis",
    command=_redis_command,
    ports={"REDIS_PORT": 16379},
    probe=lambda w: RedisPing(w.port("REDIS_PORT"), w.host),
    urls=lambda w: {"redis": w.redis_url},
)

TIMELINE = ServiceSpec(
    name="timeline",
    command=python_service("murmur_timeline"),
    ports={"TIMELINE_GRPC_PORT": 7051, "TIMELINE_METRICS_PORT": 9464},
    env=lambda w: {
        "TIMELINE_GRPC_HOST": w.host,
        "TIMELINE_DATABASE_URL": w.database_url,
        "TIMELINE_NATS_URL": w.nats_url,
    },
    probe=lambda w: GrpcHealthServing(w.addr("TIMELINE_GRPC_PORT")),
    urls=lambda w: {
        "timeline": w.addr("TIMELINE_GRPC_PORT"),
        "timeline_metrics": f"http://{w.addr('TIMELINE_METRICS_PORT')}/metrics",
    },
    depends_on=("nats",),
    env_prefix="TIMELINE_",
)


def _generated(w: Wiring, filename: str, make: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Dev secrets made once per data dir (owner-only), then read back: every
    instance and every restart of the stack shares them."""
    path = w.data_dir / filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(make()))
        path.chmod(0o600)
    values: dict[str, str] = json.loads(path.read_text())
    return values


def _cache_secrets(w: Wiring) -> dict[str, str]:
    """Dev sealing keys, shared by every cache instance of the stack (they
    must open each other's entries)."""
    return _generated(
        w,
        "cache-keys.json",
        lambda: {
            "CACHE_SEALING_KEYS": KeyRing.generate_setting(1),
            "CACHE_KEY_HASH_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
    )


def _gateway_secrets(w: Wiring) -> dict[str, str]:
    """The cursor-signing secret (a cursor from one gateway must open on another)."""
    return _generated(
        w, "gateway-secrets.json", lambda: {"GATEWAY_CURSOR_SECRET": secrets.token_urlsafe(32)}
    )


CACHE = ServiceSpec(
    name="cache",
    command=python_service("murmur_cache"),
    ports={"CACHE_GRPC_PORT": 7052, "CACHE_METRICS_PORT": 9465},
    env=lambda w: {
        "CACHE_GRPC_HOST": w.host,
        "CACHE_REDIS_URL": w.redis_url,
        "CACHE_TIMELINE_ADDR": w.addr("TIMELINE_GRPC_PORT"),
        "CACHE_NATS_URL": w.nats_url,
        **_cache_secrets(w),
    },
    probe=lambda w: GrpcHealthServing(w.addr("CACHE_GRPC_PORT")),
    urls=lambda w: {
        "cache": w.addr("CACHE_GRPC_PORT"),
        "cache_metrics": f"http://{w.addr('CACHE_METRICS_PORT')}/metrics",
    },
    depends_on=("redis", "timeline"),
    env_prefix="CACHE_",
)

PIPELINE = ServiceSpec(
    name="pipeline",
    command=python_service("murmur_timeline.pipeline"),
    ports={"PIPELINE_GRPC_PORT": 7053, "PIPELINE_METRICS_PORT": 9466},
    env=lambda w: {
        "PIPELINE_GRPC_HOST": w.host,
        "PIPELINE_DATABASE_URL": w.database_url,
        "PIPELINE_NATS_URL": w.nats_url,
        "PIPELINE_CACHE_ADDR": w.addr("CACHE_GRPC_PORT"),
    },
    probe=lambda w: GrpcHealthServing(w.addr("PIPELINE_GRPC_PORT")),
    urls=lambda w: {
        "pipeline_health": w.addr("PIPELINE_GRPC_PORT"),
        "pipeline_metrics": f"http://{w.addr('PIPELINE_METRICS_PORT')}/metrics",
    },
    depends_on=("timeline", "cache"),
    env_prefix="PIPELINE_",
)

GATEWAY = ServiceSpec(
    name="gateway",
    command=python_service("murmur_gateway"),
    ports={"GATEWAY_PORT": 8080},
    env=lambda w: {
        "GATEWAY_HOST": w.host,
        "GATEWAY_TIMELINE_ADDR": w.addr("TIMELINE_GRPC_PORT"),
        "GATEWAY_CACHE_ADDR": w.addr("CACHE_GRPC_PORT"),
        "GATEWAY_NATS_URL": w.nats_url,
        "GATEWAY_REDIS_URL": w.redis_url,
        "GATEWAY_JWT_PUBLIC_KEY_FILES": ",".join(str(p) for p in w.jwt_public_key_files),
        **_gateway_secrets(w),
    },
    probe=lambda w: http_readyz(w.port("GATEWAY_PORT"), w.host),
    urls=lambda w: {"gateway": f"http://{w.addr('GATEWAY_PORT')}"},
    depends_on=("timeline", "cache"),
    env_prefix="GATEWAY_",
)

NOTIFIER = ServiceSpec(
    name="notifier",
    command=python_service("murmur_notifier"),
    ports={"NOTIFIER_PORT": 8090, "NOTIFIER_SSE_PORT": 8091, "NOTIFIER_METRICS_PORT": 9467},
    env=lambda w: {
        "NOTIFIER_HOST": w.host,
        "NOTIFIER_NATS_URL": w.nats_url,
        "NOTIFIER_CACHE_ADDR": w.addr("CACHE_GRPC_PORT"),
        "NOTIFIER_JWT_PUBLIC_KEY_FILES": ",".join(str(p) for p in w.jwt_public_key_files),
    },
    probe=lambda w: http_readyz(w.port("NOTIFIER_PORT"), w.host),
    urls=lambda w: {
        "notifier": f"ws://{w.addr('NOTIFIER_PORT')}/v1/ws",
        "notifier_sse": f"http://{w.addr('NOTIFIER_SSE_PORT')}/v1/events",
        "notifier_metrics": f"http://{w.addr('NOTIFIER_METRICS_PORT')}/metrics",
    },
    depends_on=("nats", "cache"),
    env_prefix="NOTIFIER_",
)


def _metrics_secrets(w: Wiring) -> dict[str, str]:
    """The key that stands in for user ids in analytics."""
    return _generated(
        w, "metrics-secrets.json", lambda: {"METRICS_USER_HASH_SECRET": secrets.token_urlsafe(32)}
    )


def admin_token(w: Wiring) -> str:
    """The token every service's /debug endpoints accept and the metrics
    service presents."""
    token = _generated(w, "admin-token.json", lambda: {"token": secrets.token_urlsafe(32)})
    return token["token"]


# Where the metrics service finds each service that is part of the stack:
# (service, /metrics port name, health url) per instance.
_OBSERVED: tuple[tuple[str, str, Callable[[Wiring], str]], ...] = (
    ("gateway", "GATEWAY_PORT", lambda w: f"http://{w.addr('GATEWAY_PORT')}/readyz"),
    ("timeline", "TIMELINE_METRICS_PORT", lambda w: f"grpc://{w.addr('TIMELINE_GRPC_PORT')}"),
    ("cache", "CACHE_METRICS_PORT", lambda w: f"grpc://{w.addr('CACHE_GRPC_PORT')}"),
    ("pipeline", "PIPELINE_METRICS_PORT", lambda w: f"grpc://{w.addr('PIPELINE_GRPC_PORT')}"),
    ("notifier", "NOTIFIER_METRICS_PORT", lambda w: f"http://{w.addr('NOTIFIER_PORT')}/readyz"),
)


def _metrics_env(w: Wiring) -> dict[str, str]:
    present = [entry for entry in _OBSERVED if entry[1] in w.ports]
    return {
        "METRICS_HOST": w.host,
        "METRICS_REDIS_URL": w.redis_url,
        "METRICS_NATS_URL": w.nats_url,
        "METRICS_JWT_PUBLIC_KEY_FILES": ",".join(str(p) for p in w.jwt_public_key_files),
        # Itself too: its own resources belong on the page.
        "METRICS_SCRAPE_TARGETS": ",".join(
            f"{name}=http://{w.addr(port)}/metrics"
            for name, port in [*((n, p) for n, p, _ in present), ("metrics", "METRICS_PORT")]
        ),
        "METRICS_HEALTH_TARGETS": ",".join(f"{name}={health(w)}" for name, _, health in present),
        **_metrics_secrets(w),
    }


METRICS = ServiceSpec(
    name="metrics",
    command=python_service("murmur_metrics"),
    ports={"METRICS_PORT": 8095},
    env=_metrics_env,
    probe=lambda w: http_readyz(w.port("METRICS_PORT"), w.host),
    urls=lambda w: {"metrics": f"http://{w.addr('METRICS_PORT')}"},
    depends_on=("nats", "redis"),
    env_prefix="METRICS_",
)

# Declaration order is the default start order among independent services:
# metrics last, so its first scrape finds everyone up.
SERVICES: dict[str, ServiceSpec] = {
    s.name: s for s in (NATS, REDIS, TIMELINE, CACHE, PIPELINE, GATEWAY, NOTIFIER, METRICS)
}


def resolve(names: Sequence[str] | None, registry: Mapping[str, ServiceSpec]) -> list[ServiceSpec]:
    """The named services plus everything they depend on, dependencies first."""
    wanted = list(registry) if names is None else list(names)
    ordered: list[ServiceSpec] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(s.name == name for s in ordered):
            return
        if name in visiting:
            raise ValueError(f"dependency cycle through {name!r}")
        if name not in registry:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(registry)}")
        visiting.add(name)
        for dep in registry[name].depends_on:
            visit(dep)
        visiting.discard(name)
        ordered.append(registry[name])

    for name in wanted:
        visit(name)
    return ordered
