"""One local process the stack runs: start it, know when it is ready, stop it.

Children run in their own session so a Ctrl-C in the terminal reaches only the
launcher, which then stops them in order. They must still never outlive the
launcher: on Linux each child asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG), and an atexit hook kills whatever is left on a normal exit.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
processes must be started from a thread that lives as long as they should (the
event loop's thread; never from ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from murmur_devstack.probes import ATTEMPT_TIMEOUT_SECONDS, NotReady, Probe

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    probe: Probe
    start_timeout: float = 30.0
    stop_timeout: float = 10.0


class ProcessStartError(RuntimeError):
    def __init__(self, name: str, reason: str, log_path: Path, log_tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        tail = "\n".join(f"  | {line}" for line in log_tail.splitlines()) or "  (log is empty)"
        super().__init__(f"{name} {reason} (log: {log_path}); last lines:\n{tail}")


class ManagedProcess:
    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def log_path(self) -> Path:
        return self.spec.log_path

    async def start(self) -> None:
        """Spawn the process and return once its probe passes.

        Raises ``ProcessStartError`` (with the tail of the log) if it exits first
        or is not ready within ``start_timeout``; it is stopped in both cases.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._spawn()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds
        (default: the spec's ``stop_timeout``); returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            seconds = self.spec.stop_timeout if grace is None else grace
            self._signal(signal.SIGTERM)
            if not await self._wait_exit(seconds):
                log.warning("%s ignored SIGTERM for %.1fs; killing it", self.name, seconds)
                self._signal(signal.SIGKILL)
                await self._wait_exit(None)
        # Anything the process spawned into its session dies with it.
        self._signal(signal.SIGKILL)
        _live.pop(popen.pid, None)
        return popen.returncode

    async def kill(self) -> int | None:
        """SIGKILL with no grace: what a crash looks like to the rest of the stack."""
        popen = self._popen
        if popen is None:
            return None
        self._signal(signal.SIGKILL)
        await self._wait_exit(None)
        _live.pop(popen.pid, None)
        return popen.returncode

    async def restart(self) -> None:
        """Stop, then start with the same command, environment, ports and data."""
        await self.stop()
        await self.start()

    async def wait(self, within: float | None = None) -> int | None:
        """Wait for the process to exit by itself; None if still running after ``within``."""
        if self._popen is None:
            return None
        await self._wait_exit(within)
        return self._popen.poll()

    async def probe(self) -> str | None:
        """One readiness check now: None when ready, else the reason it is not."""
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS * 2):
                await self.spec.probe.check()
        except NotReady as exc:
            return str(exc)
        except TimeoutError:
            return f"{self.spec.probe} timed out"
        return None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines this process wrote since it was last started."""
        try:
            with self.spec.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, size - 64 * 1024))
                data = f.read()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def _spawn(self) -> None:
        spec = self.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.cwd.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as logfile:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logfile.write(f"=== {stamp} starting: {' '.join(spec.argv)}\n".encode())
            logfile.flush()
            self._log_offset = logfile.tell()
            self._popen = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        _live[self._popen.pid] = self._popen
        log.debug("%s started (pid %d)", self.name, self._popen.pid)

    async def _wait_ready(self) -> None:
        assert self._popen is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.spec.start_timeout
        reason = "not probed yet"
        while True:
            code = self._popen.poll()
            if code is not None:
                raise self._start_error(f"exited with code {code} before it was ready")
            result = await self.probe()
            # A probe answered by someone else on our port must not count.
            if result is None and self._popen.poll() is not None:
                continue
            if result is None:
                log.info("%s ready in %.2fs", self.name, loop.time() - started)
                return
            reason = result
            if loop.time() >= deadline:
                raise self._start_error(
                    f"was not ready after {self.spec.start_timeout:.1f}s "
                    f"(probe: {self.spec.probe}; last answer: {reason})"
                )
            await asyncio.sleep(POLL_SECONDS)

    def _start_error(self, reason: str) -> ProcessStartError:
        return ProcessStartError(self.name, reason, self.spec.log_path, self.log_tail())

    async def _wait_exit(self, within: float | None) -> bool:
        assert self._popen is not None
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while self._popen.poll() is None:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS / 2)
        return True

    def _signal(self, sig: signal.Signals) -> None:
        if self._popen is not None:
            _signal_group(self._popen.pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # start_new_session made the child a session and group leader: pgid == pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_libc: ctypes.CDLL | None = None


def _die_with_parent() -> Callable[[], None] | None:
    if sys.platform != "linux":
        return None
    global _libc
    if _libc is None:
        # Loaded before fork: the child may only do async-signal-safe work.
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = _libc.prctl
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody will signal us.
        if os.getppid() != parent:
            os._exit(70)

    return preexec


# Every child still running, so an interpreter exit that skipped stop() (a test
# run interrupted, an exception in a fixture) does not leave servers behind.
_live: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    for pid, popen in list(_live.items()):
        if popen.poll() is None:
            _signal_group(pid, signal.SIGKILL)
            popen.wait()
    _live.clear()
