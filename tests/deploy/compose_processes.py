"""docker-compose.yml turned into local processes, for a machine without a
Docker engine: each Murmur service runs with the command its image runs
(compose's ``entrypoint``, else its Dockerfile's ``ENTRYPOINT``) and the
environment compose gives it (as ``docker-compose config`` resolves it), with
what only a container network provides replaced:

- every ``<service>:<port>`` a value names becomes ``127.0.0.1:<port>`` of one
  replica of that service. Replica i of a client talks to replica i of a
  scaled server (wrapping around), as DNS would spread them;
- each replica listens on its own free ports: every port setting of the
  service is set, since on one host replicas cannot share compose's fixed
  container ports;
- PostgreSQL, NATS and Redis are the test's; ``/run/secrets/*`` are files;
- what is not run here (Prometheus, Alertmanager, Varnish, the collector) is
  dropped from the environment, so the services use their embedded defaults.

The readiness probe of a replica is compose's own healthcheck, run as its
command with the port remapped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings

from murmur_cache.settings import CacheSettings
from murmur_devstack import ProcessSpec, free_ports
from murmur_devstack.probes import GrpcHealthServing, Probe, http_readyz
from murmur_devstack.stack import INHERITED_ENV
from murmur_gateway.settings import GatewaySettings
from murmur_metrics.settings import MetricsSettings
from murmur_notifier.settings import NotifierSettings
from murmur_timeline.pipeline.settings import PipelineSettings
from murmur_timeline.settings import TimelineSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SETTINGS: dict[str, type[BaseSettings]] = {
    "timeline": TimelineSettings,
    "pipeline": PipelineSettings,
    "cache": CacheSettings,
    "notifier": NotifierSettings,
    "gateway": GatewaySettings,
    "metrics": MetricsSettings,
}
NOT_RUN_HERE = ("prometheus", "alertmanager", "varnish", "otel-collector", "jaeger")
_ADDRESS = re.compile(r"\b(?P<host>[a-z][a-z0-9-]*):(?P<port>\d+)\b")
_LOOPBACK = re.compile(r"127\.0\.0\.1:(?P<port>\d+)")
_POSTGRES = re.compile(r"postgresql://[^\s,]*@postgres:\d+/\w+")


def docker_compose(
    workdir: Path, env: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Debian's docker-compose on the repository's file, run from ``workdir``."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not found: run `make install` (Debian package docker-compose)")
    # Only PATH from the outside: a developer's own .env or COMPOSE_* must not leak in.
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE), *args],
        cwd=workdir,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def resolved_compose(env: Mapping[str, str], workdir: Path) -> dict[str, Any]:
    """The file as ``docker-compose config`` resolves it: anchors merged,
    ``${VAR}`` substituted from ``env``."""
    result = docker_compose(workdir, env, "config")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def image_entrypoint(service: dict[str, Any]) -> list[str]:
    if "entrypoint" in service:
        return list(service["entrypoint"])
    dockerfile = (ROOT / service["build"]["dockerfile"]).read_text()
    match = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert match, f"no ENTRYPOINT in {service['build']['dockerfile']}"
    command: list[str] = json.loads(match.group(1))
    return command


@dataclass
class Replica:
    service: str
    index: int  # 1-based
    # compose's (container) port -> this replica's local port
    ports: dict[int, int] = field(default_factory=dict)
    # the settings' environment variable -> container port
    port_names: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"


def plan_replicas(
    services: Mapping[str, Any], replicas: Mapping[str, int]
) -> dict[str, list[Replica]]:
    planned: dict[str, list[Replica]] = {}
    for name in SETTINGS:
        settings = SETTINGS[name]
        prefix = str(settings.model_config.get("env_prefix", ""))
        environment = services[name].get("environment", {})
        names = {
            f"{prefix}{field_name.upper()}": int(
                environment.get(f"{prefix}{field_name.upper()}", info.default)
            )
            for field_name, info in settings.model_fields.items()
            if field_name.endswith("port")
        }
        names = {k: v for k, v in names.items() if v}
        planned[name] = []
        for index in range(1, replicas.get(name, 1) + 1):
            local = free_ports(len(names))
            replica = Replica(name, index, port_names=names)
            replica.ports = dict(zip(names.values(), local, strict=True))
            planned[name].append(replica)
    return planned


@dataclass(frozen=True)
class Infrastructure:
    nats_port: int
    redis_port: int
    postgres_url: str
    secrets: Mapping[str, Path]


def _remap(
    value: str,
    me: Replica,
    planned: Mapping[str, list[Replica]],
    infra: Infrastructure,
) -> str:
    value = _POSTGRES.sub(infra.postgres_url, value)

    def address(match: re.Match[str]) -> str:
        host, port = match["host"], int(match["port"])
        if host == "nats":
            return f"127.0.0.1:{infra.nats_port}"
        if host == "redis":
            return f"127.0.0.1:{infra.redis_port}"
        if host in planned:
            servers = planned[host]
            server = servers[(me.index - 1) % len(servers)]
            return f"127.0.0.1:{server.ports[port]}"
        return match.group(0)

    value = _ADDRESS.sub(address, value)
    for secret, path in infra.secrets.items():
        value = value.replace(f"/run/secrets/{secret}", str(path))
    return value


def process_spec(
    services: Mapping[str, Any],
    replica: Replica,
    planned: Mapping[str, list[Replica]],
    infra: Infrastructure,
    run_dir: Path,
) -> ProcessSpec:
    service = services[replica.service]
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    for key, raw in (service.get("environment") or {}).items():
        value = "" if raw is None else str(raw)
        if any(f"//{host}:" in value for host in NOT_RUN_HERE):
            continue
        env[key] = _remap(value, replica, planned, infra)
    env.update({name: str(replica.ports[port]) for name, port in replica.port_names.items()})
    argv = image_entrypoint(service)
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    return ProcessSpec(
        name=replica.name,
        argv=argv,
        env=env,
        cwd=run_dir,
        log_path=run_dir / f"{replica.name}.log",
        probe=healthcheck_probe(service, replica),
        start_timeout=60.0,
    )


def healthcheck_command(service: dict[str, Any], replica: Replica) -> list[str]:
    """Compose's healthcheck of this replica, as a command to run here."""
    test = list(service["healthcheck"]["test"])
    assert test[0] == "CMD", test
    command = [sys.executable if test[1] == "python" else test[1], *test[2:]]
    target = command[-1]
    match = _LOOPBACK.search(target)
    assert match, f"{replica.service}: the healthcheck asks {target}, not the container itself"
    local = replica.ports[int(match["port"])]
    command[-1] = target.replace(match.group(0), f"127.0.0.1:{local}", 1)
    return command


def healthcheck_probe(service: dict[str, Any], replica: Replica) -> Probe:
    command = healthcheck_command(service, replica)
    kind, target = command[-2], command[-1]
    if kind == "grpc":
        return GrpcHealthServing(target)
    match = _LOOPBACK.search(target)
    assert match, target
    return http_readyz(int(match["port"]))


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Murmur's services, each after what it depends on."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered or name not in SETTINGS:
            return
        for dependency in services[name].get("depends_on", {}):
            visit(dependency)
        ordered.append(name)

    for name in SETTINGS:
        visit(name)
    return ordered
