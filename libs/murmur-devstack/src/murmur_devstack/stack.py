"""The whole Murmur stack as local processes, started in dependency order."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from murmur_devstack.ports import free_ports, is_listening
from murmur_devstack.process import ManagedProcess, ProcessSpec
from murmur_devstack.services import SERVICES, ServiceSpec, Wiring, admin_token, resolve

log = logging.getLogger(__name__)

# Children get a clean environment, so a developer's shell (a stray
# TIMELINE_DATABASE_URL, say) cannot silently change what tests run against;
# only what a process needs to find its tools and locale is carried over.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "COVERAGE_PROCESS_START",
)


class PortInUse(RuntimeError):
    """Something else already listens on a port the stack was told to use."""


class Stack:
    """Runs the selected services and what they depend on.

    ``services=None`` means every declared service; ``services=("nats", "redis")``
    is infrastructure only. ``ports`` pins ports by name (others are free ports
    chosen now); ``env`` adds or overrides variables per service; ``environ`` is
    where ``OTEL_*`` settings are taken from (default: this process's environment);
    with ``pass_service_settings`` a service also gets the variables there that
    carry its own prefix (``GATEWAY_LOG_LEVEL``, ...), except those the stack
    wires itself. Ports, data and database stay the same across restarts.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        services: Sequence[str] | None = None,
        data_dir: Path | None = None,
        ports: Mapping[str, int] | None = None,
        database_url: str | None = None,
        jwt_public_key_files: Sequence[Path] = (),
        env: Mapping[str, Mapping[str, str]] | None = None,
        environ: Mapping[str, str] | None = None,
        pass_service_settings: bool = False,
        cwd: Path | None = None,
        registry: Mapping[str, ServiceSpec] = SERVICES,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.specs = resolve(services, registry)
        data = (data_dir or self.run_dir).resolve()
        self.wiring = Wiring(
            run_dir=self.run_dir,
            data_dir=data,
            ports=_allocate_ports(self.specs, ports or {}),
            database_url=database_url or f"sqlite:///{data / 'timeline.db'}",
            jwt_public_key_files=tuple(p.resolve() for p in jwt_public_key_files),
        )
        self._overrides = env or {}
        self._environ = os.environ if environ is None else environ
        self._pass_service_settings = pass_service_settings
        self._cwd = (cwd or self.run_dir).resolve()
        self.processes: dict[str, ManagedProcess] = {
            spec.name: ManagedProcess(self._process_spec(spec)) for spec in self.specs
        }

    async def start(self) -> None:
        """Start every process in order; on any failure stop what was started and raise."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for process in self.processes.values():
            # One earlier run is kept for comparison; restarts within this run append.
            if process.log_path.exists():
                process.log_path.replace(process.log_path.with_name(process.log_path.name + ".1"))
        try:
            for spec in self.specs:
                self._check_ports_free(spec)
                log.info("starting %s", spec.name)
                await self.processes[spec.name].start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop in reverse start order; every process is stopped even if one fails."""
        errors: list[BaseException] = []
        for spec in reversed(self.specs):
            process = self.processes[spec.name]
            if process.running:
                log.info("stopping %s", spec.name)
            try:
                await process.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def kill_now(self) -> None:
        """SIGKILL everything without waiting (second Ctrl-C of an impatient developer)."""
        for process in self.processes.values():
            if process.running and process.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def process(self, name: str) -> ManagedProcess:
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"{name!r} is not part of this stack") from None

    __getitem__ = process

    def port(self, name: str) -> int:
        return self.wiring.port(name)

    def urls(self) -> dict[str, str]:
        urls: dict[str, str] = {}
        for spec in self.specs:
            urls.update(spec.urls(self.wiring))
        return urls

    def url(self, name: str) -> str:
        urls = self.urls()
        if name not in urls:
            raise KeyError(f"no url {name!r} in this stack; it has {', '.join(urls)}")
        return urls[name]

    @property
    def nats_url(self) -> str:
        return self.url("nats")

    @property
    def nats_monitor_url(self) -> str:
        return self.url("nats_monitor")

    @property
    def redis_url(self) -> str:
        return self.url("redis")

    @property
    def timeline_addr(self) -> str:
        return self.url("timeline")

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def database_url(self) -> str:
        return self.wiring.database_url

    def describe(self) -> dict[str, Any]:
        """Pids, logs and urls, as written to the state file."""
        return {
            "run_dir": str(self.run_dir),
            "processes": {
                name: {"pid": p.pid, "log": str(p.log_path)} for name, p in self.processes.items()
            },
            "urls": self.urls(),
        }

    def env_for(self, name: str) -> dict[str, str]:
        return dict(self.process(name).spec.env)

    def _process_spec(self, spec: ServiceSpec) -> ProcessSpec:
        return ProcessSpec(
            name=spec.name,
            argv=tuple(spec.command(self.wiring)),
            env=self._env(spec),
            cwd=self._cwd,
            log_path=self.run_dir / f"{spec.name}.log",
            probe=spec.probe(self.wiring),
            start_timeout=spec.start_timeout,
            stop_timeout=spec.stop_timeout,
        )

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        if spec.env_prefix is not None:
            env.update({k: v for k, v in self._environ.items() if k.startswith("OTEL_")})
            if self._pass_service_settings:
                prefix = spec.env_prefix
                env.update({k: v for k, v in self._environ.items() if k.startswith(prefix)})
            # Set after the pass-through: a shared OTEL_SERVICE_NAME would merge
            # every service into one in the traces.
            env["OTEL_SERVICE_NAME"] = spec.name
            env["PYTHONUNBUFFERED"] = "1"
            # One operator secret for every service's /debug endpoints.
            env[f"{spec.env_prefix}ADMIN_TOKEN"] = admin_token(self.wiring)
        # Wiring comes last but for explicit overrides: ports and addresses
        # between processes are the stack's, whatever the environment says.
        env.update({name: str(self.wiring.port(name)) for name in spec.ports})
        env.update(spec.env(self.wiring))
        env.update(self._overrides.get(spec.name, {}))
        return env

    def _check_ports_free(self, spec: ServiceSpec) -> None:
        # Something else on our port would answer the readiness probe in place
        # of the process we start, so a clash must fail here, loudly.
        for name in spec.ports:
            port = self.wiring.port(name)
            if is_listening(port, self.wiring.host):
                raise PortInUse(
                    f"cannot start {spec.name}: port {port} ({name}) is already in use; "
                    f"stop what listens there or set {name} to another port"
                )


def _allocate_ports(specs: Sequence[ServiceSpec], pinned: Mapping[str, int]) -> dict[str, int]:
    names = [name for spec in specs for name in spec.ports]
    unknown = set(pinned) - set(names)
    if unknown:
        raise ValueError(f"ports given for services not in this stack: {sorted(unknown)}")
    chosen = iter(free_ports(sum(1 for n in names if n not in pinned)))
    return {name: pinned[name] if name in pinned else next(chosen) for name in names}
