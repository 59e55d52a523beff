"""The state file ``up`` leaves for ``down`` (another shell) to find the stack.

A pid alone can be reused by an unrelated process after ours died, so each pid
is stored with its start time and only signalled while both still match.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot); None if gone or a zombie.

    Where /proc does not exist the answer is 0 for any live process, so only
    the pid is compared there.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return 0
        return 0
    # The command name is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def identity(pid: int) -> dict[str, int]:
    return {"pid": pid, "start_time": start_time(pid) or 0}


def alive(entry: dict[str, Any]) -> bool:
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return False
    current = start_time(pid)
    return current is not None and current == entry.get("start_time", current)


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def signal_entry(entry: dict[str, Any], sig: signal.Signals, *, group: bool = False) -> bool:
    if not alive(entry):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(int(entry["pid"]), sig)
        else:
            os.kill(int(entry["pid"]), sig)
        return True
    return False


def wait_gone(entries: list[dict[str, Any]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(e) for e in entries):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
