"""`python -m murmur_devstack up` / `down`, as a developer runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from murmur_devstack import free_ports
from murmur_devstack.ports import is_listening


def devstack(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "murmur_devstack", "--root", str(root), *args]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def root(tmp_path: Path) -> Path:
    nats_port, monitor_port = free_ports(2)
    # Ports from .env, one of them overridden by the real environment below.
    (tmp_path / ".env").write_text(
        f"# test settings\nNATS_PORT={nats_port}\nNATS_MONITOR_PORT={monitor_port}\nREDIS_PORT=1\n"
    )
    return tmp_path


@pytest.fixture
def launcher(root: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "REDIS_PORT": str(free_ports(1)[0])}
    with subprocess.Popen(
        devstack(root, "up", "--services", "nats,redis"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def wait_until_up(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Ctrl-C" in line:
            return "".join(seen)
    raise AssertionError("up exited early:\n" + "".join(seen))


def state_of(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / "var/run/stack.json").read_text())
    return data


def child_pids(root: Path) -> list[int]:
    processes = state_of(root)["processes"]
    assert isinstance(processes, dict)
    return [int(entry["pid"]) for entry in processes.values()]


def test_up_then_down_from_another_shell(root: Path, launcher: subprocess.Popen[str]) -> None:
    banner = wait_until_up(launcher)
    nats_port = int((root / ".env").read_text().split("NATS_PORT=")[1].split()[0])
    assert f"nats://127.0.0.1:{nats_port}" in banner
    assert "redis://127.0.0.1:1/" not in banner, "the environment must win over .env"
    assert "mint a token: uv run python -m murmur_core.token_cli alice" in banner
    assert (root / "var/dev-keys/jwt-ed25519.key").exists()
    assert (root / "var/nats").is_dir()
    pids = child_pids(root)
    assert all(alive(pid) for pid in pids)
    assert is_listening(nats_port)

    status = subprocess.run(devstack(root, "status"), capture_output=True, text=True)
    assert status.returncode == 0 and "nats" in status.stdout

    again = subprocess.run(devstack(root, "up"), capture_output=True, text=True, timeout=30)
    assert again.returncode == 1
    assert "already running" in again.stderr

    down = subprocess.run(devstack(root, "down"), capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert launcher.wait(timeout=10) == 0
    assert not any(alive(pid) for pid in pids)
    assert not (root / "var/run/stack.json").exists()
    assert not is_listening(nats_port)

    nothing = subprocess.run(devstack(root, "down"), capture_output=True, text=True)
    assert nothing.returncode == 0 and "no murmur devstack" in nothing.stdout


def test_crash_is_reported_and_ctrl_c_stops_the_rest(
    root: Path, launcher: subprocess.Popen[str]
) -> None:
    wait_until_up(launcher)
    pids = child_pids(root)
    os.kill(pids[1], signal.SIGKILL)
    assert launcher.stdout is not None
    for line in launcher.stdout:
        if "exited with code" in line:
            assert line.startswith("redis exited with code -9; the rest keeps running")
            break
    assert alive(pids[0])
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in pids)


def test_a_bad_setting_is_reported_plainly(root: Path) -> None:
    env = {**os.environ, "NATS_PORT": "four"}
    result = subprocess.run(
        devstack(root, "up"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "NATS_PORT='four' is not a TCP port" in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killed_launcher_takes_its_children_and_down_cleans_up(
    root: Path, launcher: subprocess.Popen[str]
) -> None:
    wait_until_up(launcher)
    pids = child_pids(root)
    launcher.kill()
    launcher.wait()
    assert wait_for(lambda: not any(alive(pid) for pid in pids), 5)
    down = subprocess.run(devstack(root, "down"), capture_output=True, text=True, timeout=60)
    assert down.returncode == 0
    assert not (root / "var/run/stack.json").exists()


def test_up_reports_a_service_that_cannot_start(root: Path) -> None:
    taken = free_ports(1)[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", taken))
        sock.listen()
        env = {**os.environ, "REDIS_PORT": str(taken)}
        result = subprocess.run(
            devstack(root, "up", "--services", "redis"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {taken} (REDIS_PORT) is already in use" in result.stderr
    assert not (root / "var/run/stack.json").exists()
