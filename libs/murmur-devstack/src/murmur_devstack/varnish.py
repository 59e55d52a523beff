"""A real varnishd (Debian's varnish + varnish-modules) in front of a local
server, for tests and benchmarks of ``deploy/varnish/default.vcl``.

``run_varnish(host, port, workdir, vcl_source=...)`` writes a copy of the VCL whose backend is
``host:port`` (the two lines marked ``MURMUR-BACKEND-HOST`` and
``MURMUR-BACKEND-PORT``), starts varnishd in the foreground on a free loopback
port and stops it on exit.

``-j none``: varnishd started as root drops its worker and compiler processes
to the varnish/vcache users by default, and those cannot read a VCL or a
working directory under pytest's private (0700) temporary folders. Without a
jail everything runs as the invoking user, root or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from murmur_devstack.ports import LOOPBACK, free_ports

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
INSTALL_HINT = (
    "varnishd not found: install the Debian packages varnish and varnish-modules"
    " (`make install` does)"
)


class VarnishError(RuntimeError):
    """varnishd is missing, would not start, or refused a management command."""


@dataclass(frozen=True)
class VarnishAdmin:
    """Where ``varnishadm -T <address> -S <secret>`` reaches this instance."""

    address: str
    secret: Path
    workdir: Path

    def argv(self, *command: str) -> list[str]:
        varnishadm = shutil.which("varnishadm") or "varnishadm"
        return [varnishadm, "-T", self.address, "-S", str(self.secret), *command]


@dataclass(frozen=True)
class Varnish:
    url: str
    port: int
    vcl: Path
    log: Path
    admin: VarnishAdmin

    async def adm(self, *command: str) -> str:
        """Runs one management command (``backend.set_health gateway sick``)."""
        proc = await asyncio.create_subprocess_exec(
            *self.admin.argv(*command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise VarnishError(f"varnishadm {' '.join(command)} failed: {text}")
        return text


def varnishd_path() -> str:
    found = shutil.which("varnishd") or next(
        (p for p in ("/usr/sbin/varnishd", "/usr/local/sbin/varnishd") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise VarnishError(INSTALL_HINT)
    return found


def vcl_for_backend(source: str, host: str, port: int) -> str:
    """``source`` with its marked backend host and port replaced."""
    host_line = re.compile(r'^(\s*\.host\s*=\s*)"[^"]*"(\s*;\s*#\s*MURMUR-BACKEND-HOST)\s*$', re.M)
    port_line = re.compile(r'^(\s*\.port\s*=\s*)"[^"]*"(\s*;\s*#\s*MURMUR-BACKEND-PORT)\s*$', re.M)
    out, n_host = host_line.subn(lambda m: f'{m[1]}"{host}"{m[2]}', source)
    out, n_port = port_line.subn(lambda m: f'{m[1]}"{port}"{m[2]}', out)
    if n_host != 1 or n_port != 1:
        raise VarnishError(
            "the VCL must have exactly one line marked MURMUR-BACKEND-HOST and one"
            f" marked MURMUR-BACKEND-PORT (found {n_host} and {n_port})"
        )
    return out


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


async def _answers(url: str) -> bool:
    # A PURGE without its header is answered by the VCL itself (400): any
    # answer means the child is serving, without touching the backend.
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            await client.request("PURGE", url)
    except httpx.HTTPError:
        return False
    return True


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the manager (it stops its child), then SIGKILL to the group."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_SECONDS)
    # The manager's own process group (start_new_session): takes a child left
    # behind by a manager that died or would not stop.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _prepare(workdir: Path, vcl_source: Path, host: str, port: int) -> tuple[Path, Path]:
    """The VCL copy aimed at ``host:port`` and a management secret."""
    workdir.mkdir(parents=True, exist_ok=True)
    vcl = workdir / "default.vcl"
    vcl.write_text(vcl_for_backend(vcl_source.read_text(), host, port))
    secret = workdir / "secret"
    secret.write_text(secrets.token_hex(16) + "\n")
    secret.chmod(0o600)
    return vcl, secret


@contextlib.asynccontextmanager
async def run_varnish(
    backend_host: str, backend_port: int, workdir: Path, *, vcl_source: Path
) -> AsyncIterator[Varnish]:
    """varnishd with ``vcl_source`` in front of ``backend_host:backend_port``.

    Everything it writes goes under ``workdir``: the VCL copy, the secret,
    the instance directory (``v``) and its output (``varnishd.log``).
    """
    varnishd = varnishd_path()
    vcl, secret = _prepare(workdir, vcl_source, backend_host, backend_port)
    log_path = workdir / "varnishd.log"
    port, admin_port = free_ports(2)
    admin = VarnishAdmin(f"{LOOPBACK}:{admin_port}", secret, workdir / "v")
    argv = [
        varnishd,
        "-F",
        "-j",
        "none",
        "-n",
        str(admin.workdir),
        "-a",
        f"{LOOPBACK}:{port}",
        "-T",
        admin.address,
        "-S",
        str(secret),
        "-f",
        str(vcl),
        "-p",
        "http_gzip_support=off",
        "-s",
        "malloc,32m",
    ]
    url = f"http://{LOOPBACK}:{port}"
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        while not await _answers(url):
            if proc.returncode is not None:
                raise VarnishError(
                    f"varnishd exited with {proc.returncode} at start:\n{_tail(log_path)}"
                    f"\ncommand: {' '.join(argv)}"
                )
            if loop.time() > deadline:
                raise VarnishError(
                    f"varnishd did not answer within {START_TIMEOUT_SECONDS:.0f}s:\n"
                    f"{_tail(log_path)}\ncommand: {' '.join(argv)}"
                )
            await asyncio.sleep(0.1)
        yield Varnish(url=url, port=port, vcl=vcl, log=log_path, admin=admin)
    finally:
        await _stop(proc)
