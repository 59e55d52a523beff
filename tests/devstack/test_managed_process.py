"""ManagedProcess on its own, with small Python programs standing in for servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from murmur_devstack import ManagedProcess, NotReady, ProcessSpec, ProcessStartError, free_port
from murmur_devstack.probes import HttpOk


class FileExists:
    """Ready once the program under test has written its marker file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def check(self) -> None:
        if not self.path.exists():
            raise NotReady(f"{self.path} does not exist yet")

    def __str__(self) -> str:
        return f"{self.path} exists"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def spec(tmp_path: Path, argv: list[str], **options: float) -> ProcessSpec:
    return ProcessSpec(
        name="toy",
        argv=argv,
        env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        log_path=tmp_path / "toy.log",
        probe=FileExists(tmp_path / "ready"),
        **options,
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): it is gone for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


async def test_early_exit_fails_start_with_the_log_tail(tmp_path: Path) -> None:
    code = """
        import sys
        print("loading settings")
        print("boom: TIMELINE_DATABASE_URL is not a database", file=sys.stderr)
        sys.exit(3)
    """
    process = ManagedProcess(spec(tmp_path, python(code)))
    with pytest.raises(ProcessStartError) as caught:
        await process.start()
    message = str(caught.value)
    assert "toy exited with code 3 before it was ready" in message
    assert "boom: TIMELINE_DATABASE_URL is not a database" in message
    assert "loading settings" in message
    assert str(tmp_path / "toy.log") in message
    assert not process.running


async def test_not_ready_in_time_fails_start_and_stops_the_process(tmp_path: Path) -> None:
    toy = ProcessSpec(
        name="sleepy",
        argv=python("import time; print('still warming up', flush=True); time.sleep(60)"),
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        log_path=tmp_path / "sleepy.log",
        probe=HttpOk(f"http://127.0.0.1:{free_port()}/readyz"),
        start_timeout=1.0,
    )
    process = ManagedProcess(toy)
    with pytest.raises(ProcessStartError, match=r"not ready after 1\.0s") as caught:
        await process.start()
    assert "still warming up" in str(caught.value)
    assert process.pid is not None
    assert gone(process.pid)


async def test_stop_sends_sigterm_then_sigkill(tmp_path: Path) -> None:
    stubborn = """
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path("ready").touch()
        time.sleep(60)
    """
    process = ManagedProcess(spec(tmp_path, python(stubborn)))
    await process.start()
    started = time.monotonic()
    assert await process.stop(grace=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5

    polite = "import pathlib, time; pathlib.Path('ready').touch(); time.sleep(60)"
    (tmp_path / "ready").unlink()
    process = ManagedProcess(spec(tmp_path, python(polite)))
    await process.start()
    assert await process.stop() == -signal.SIGTERM


async def test_stop_takes_the_children_of_the_process_too(tmp_path: Path) -> None:
    shell = "sleep 300 & echo $! > child.pid; touch ready; wait"
    process = ManagedProcess(spec(tmp_path, ["/bin/sh", "-c", shell]))
    await process.start()
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child)
    await process.stop()
    assert wait_until(lambda: gone(child), 5)


async def test_kill_then_start_again_and_restart(tmp_path: Path) -> None:
    code = """
        import os, pathlib, time
        print(os.getpid())
        pathlib.Path("ready").touch()
        time.sleep(60)
    """
    process = ManagedProcess(spec(tmp_path, python(code), stop_timeout=2))
    await process.start()
    first = process.pid
    assert await process.kill() == -signal.SIGKILL
    assert not process.running
    await process.start()
    second = process.pid
    assert process.running and second != first
    await process.restart()
    assert process.running and process.pid != second
    # Each start appends to one log; the tail shows the current run only. (The
    # marker file of the last run makes the probe pass early: wait for output.)
    assert wait_until(lambda: process.log_tail() != "", 5)
    assert process.log_tail().splitlines() == [str(process.pid)]
    log = (tmp_path / "toy.log").read_text()
    assert log.count("=== ") == 3
    await process.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_when_the_launcher_is_killed(tmp_path: Path) -> None:
    launcher = f"""
        import asyncio, os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_managed_process import python, spec
        from murmur_devstack import ManagedProcess

        async def main():
            toy = spec(Path({str(tmp_path)!r}), python(
                "import pathlib, time; pathlib.Path('ready').touch(); time.sleep(300)"
            ))
            process = ManagedProcess(toy)
            await process.start()
            print(process.pid, flush=True)
            await asyncio.sleep(300)

        asyncio.run(main())
    """
    with subprocess.Popen(python(launcher), stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            child = int(proc.stdout.readline())
            assert not gone(child)
        finally:
            proc.kill()
    assert wait_until(lambda: gone(child), 5), "child outlived its killed launcher"
