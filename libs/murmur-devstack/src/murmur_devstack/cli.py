"""``python -m murmur_devstack up|down|status``: the stack for a developer.

``up`` runs in the foreground until Ctrl-C or SIGTERM; ``down`` (from another
shell) asks a running ``up`` to stop, through the state file it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from murmur_devstack import envfile, state
from murmur_devstack.binaries import BinaryNotFound
from murmur_devstack.keys import KEY_FILE, DevKeys
from murmur_devstack.process import ProcessStartError
from murmur_devstack.services import SERVICES, resolve
from murmur_devstack.stack import PortInUse, Stack

log = logging.getLogger("murmur_devstack")


@dataclass(frozen=True)
class Layout:
    """Where ``up`` keeps things, all under ``<root>/var``."""

    root: Path

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def run_dir(self) -> Path:
        return self.var / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def database(self) -> Path:
        return self.var / "murmur" / "timeline.db"

    @property
    def keys_dir(self) -> Path:
        # Where murmur_core.token_cli looks by default, so its tokens match.
        return self.var / "dev-keys"


def build_stack(layout: Layout, services: Sequence[str] | None, settings: dict[str, str]) -> Stack:
    specs = resolve(services, SERVICES)
    ports = {
        name: _port(settings, name, default)
        for spec in specs
        for name, default in spec.ports.items()
    }
    database_url = settings.get("TIMELINE_DATABASE_URL") or f"sqlite:///{layout.database.resolve()}"
    layout.database.parent.mkdir(parents=True, exist_ok=True)
    keys = DevKeys.ensure(layout.keys_dir)
    return Stack(
        layout.run_dir,
        services=services,
        data_dir=layout.var,
        ports=ports,
        database_url=database_url,
        jwt_public_key_files=[keys.public],
        environ=settings,
        pass_service_settings=True,
        cwd=layout.root,
    )


def _port(settings: dict[str, str], name: str, default: int) -> int:
    value = settings.get(name, "").strip() or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name}={value!r} is not a TCP port")
    return int(value)


async def up(layout: Layout, services: Sequence[str] | None) -> int:
    current = state.read(layout.state_file)
    if current is not None and state.alive(current.get("launcher", {})):
        pid = current["launcher"]["pid"]
        print(f"a stack is already running (pid {pid}); stop it with: make down", file=sys.stderr)
        return 1
    try:
        settings = envfile.load(layout.root, os.environ)
        stack = build_stack(layout, services, settings)
    except (ValueError, BinaryNotFound) as exc:
        print(f"murmur devstack: {exc}", file=sys.stderr)
        return 2
    launcher = state.identity(os.getpid())
    state.write(layout.state_file, {"launcher": launcher, **stack.describe()})

    stop_requested = asyncio.Event()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            print("\nkilling everything now", file=sys.stderr)
            stack.kill_now()
        stop_requested.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await _run(layout, stack, launcher, stop_requested)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        state.remove(layout.state_file)


async def _run(
    layout: Layout, stack: Stack, launcher: dict[str, int], stop_requested: asyncio.Event
) -> int:
    starting = asyncio.create_task(stack.start())
    stopping = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        print("\nstopping murmur devstack ...", file=sys.stderr)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProcessStartError, PortInUse):
            await starting
        await stack.stop()
        return 130
    stopping.cancel()
    try:
        starting.result()
    except (ProcessStartError, PortInUse) as exc:
        print(f"\nmurmur devstack failed to start: {exc}", file=sys.stderr)
        return 1

    state.write(layout.state_file, {"launcher": launcher, **_describe_with_identity(stack)})
    _print_banner(layout, stack)
    reported: set[str] = set()
    while not stop_requested.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), timeout=1.0)
        for name, process in stack.processes.items():
            if name not in reported and not process.running and not stop_requested.is_set():
                reported.add(name)
                print(
                    f"\n{name} exited with code {process.returncode}; the rest keeps running. "
                    f"Last lines of {process.log_path}:\n{process.log_tail(20)}",
                    file=sys.stderr,
                )
    print("\nstopping murmur devstack ...", file=sys.stderr)
    await stack.stop()
    print("stopped", file=sys.stderr)
    return 0


def _describe_with_identity(stack: Stack) -> dict[str, object]:
    described = stack.describe()
    for name, entry in described["processes"].items():
        pid = stack.processes[name].pid
        entry["start_time"] = (state.start_time(pid) or 0) if pid is not None else 0
    return described


def _print_banner(layout: Layout, stack: Stack) -> None:
    width = max(len(k) for k in stack.urls())
    lines = [f"  {name.ljust(width)}  {url}" for name, url in stack.urls().items()]
    key = _display(layout.keys_dir / KEY_FILE)
    key_option = "" if key == "var/dev-keys/jwt-ed25519.key" else f" --key {key}"
    print(
        "\nmurmur devstack is up:\n"
        + "\n".join(lines)
        + f"\n  logs{' ' * max(width - 4, 0)}  {_display(layout.run_dir)}/<service>.log"
        + f"\n{_token_hint(stack, key_option)}"
        + _dashboard_hint(stack, key_option)
        + "\nCtrl-C (or make down) stops everything.",
        flush=True,
    )


def _token_hint(stack: Stack, key_option: str) -> str:
    mint = f"uv run python -m murmur_core.token_cli alice{key_option}"
    if "gateway" not in stack.processes:
        return f"mint a token: {mint}"
    return (
        f'try it: TOKEN=$({mint}) && curl -H "Authorization: Bearer $TOKEN" '
        f"{stack.gateway_url}/v1/timelines/home"
    )


def _dashboard_hint(stack: Stack, key_option: str) -> str:
    if "metrics" not in stack.processes:
        return ""
    mint = f"uv run python -m murmur_core.token_cli ops --role operator{key_option}"
    return f"\ndashboard: {stack.url('metrics')}/ (operator views: paste a token from: {mint})"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def down(layout: Layout, timeout: float) -> int:
    current = state.read(layout.state_file)
    if current is None:
        print("no murmur devstack is running here")
        return 0
    launcher = current.get("launcher", {})
    children = [e for e in current.get("processes", {}).values() if isinstance(e, dict)]
    if state.signal_entry(launcher, signal.SIGTERM):
        print(f"asked the stack (pid {launcher['pid']}) to stop ...")
        if state.wait_gone([launcher], timeout):
            print("stopped")
            return 0
        print(f"still running after {timeout:.0f}s; killing it", file=sys.stderr)
        state.signal_entry(launcher, signal.SIGKILL)
        state.wait_gone([launcher], 5.0)
    # The launcher is gone (killed, or it just was): its children die with it on
    # Linux, elsewhere they are stopped here, newest first.
    for entry in reversed(children):
        state.signal_entry(entry, signal.SIGTERM, group=True)
    if not state.wait_gone(children, timeout):
        for entry in children:
            state.signal_entry(entry, signal.SIGKILL, group=True)
        state.wait_gone(children, 5.0)
    state.remove(layout.state_file)
    print("stopped")
    return 0


def status(layout: Layout) -> int:
    current = state.read(layout.state_file)
    if current is None or not state.alive(current.get("launcher", {})):
        print("no murmur devstack is running here")
        return 1
    print(f"launcher pid {current['launcher']['pid']}")
    for name, entry in current.get("processes", {}).items():
        print(f"  {name:10} pid {entry.get('pid')}  {'up' if state.alive(entry) else 'DOWN'}")
    for name, url in current.get("urls", {}).items():
        print(f"  {name:18} {url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m murmur_devstack", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(), help="project root (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="run the stack in the foreground")
    up_parser.add_argument(
        "--services",
        help=f"comma-separated subset (dependencies are added); known: {', '.join(SERVICES)}",
    )
    down_parser = commands.add_parser("down", help="stop a stack started by up")
    down_parser.add_argument("--timeout", type=float, default=60.0)
    commands.add_parser("status", help="show a running stack")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s", stream=sys.stderr)
    # One line per readiness poll would drown the useful ones.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    layout = Layout(args.root.resolve())
    if args.command == "up":
        services = None
        if args.services is not None:
            services = [s.strip() for s in args.services.split(",") if s.strip()]
        return asyncio.run(up(layout, services))
    if args.command == "down":
        return down(layout, args.timeout)
    return status(layout)


if __name__ == "__main__":
    raise SystemExit(main())
