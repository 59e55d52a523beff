"""What one per-user event costs nats-server: CPU per message as the pipeline
publishes it, and without each of the features it carries, next to a bare
message (the baseline) measured in the same run.

Each case runs on a nats-server of its own (JetStream on a fresh directory,
file storage, the stream configured as the pipeline declares MURMUR_USER),
publishing copies in bursts of 500 the way ``UserEvents`` does (one write,
the burst's last copy asking for the ack). "As published" goes through
``UserEvents.publish_each`` itself, with a recording tracer so each copy
carries a ``traceparent``; the variants build the same frames with one
feature left out:

- no republish: the stream has no RePublish, so nothing feeds the
  notifier's live subjects;
- no dedup id: no ``Nats-Msg-Id`` (a redelivered post would notify twice);
- no trace headers;
- bare: none of the three (the baseline);
- memory storage: everything, on a memory stream.

nats-server's CPU is read from /proc around the publishing, and divided by
the copies stored (checked against the stream's count). The cases run
interleaved, in rounds, and each figure is the median of its rounds (a
single run of one case moved by half from run to run): ``--quick`` runs 3
rounds of 20,000 copies a case, the default 5 of 50,000. The last line is
the summary:
``bench=user_events nats_us_per_event=... baseline_us_per_event=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import benchlib
from nats.js.api import StorageType
from opentelemetry import context as otel_context
from opentelemetry import trace

from murmur.events.v1 import events_pb2
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_core.nats import header_lines, header_value
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing
from murmur_devstack import binaries
from murmur_devstack.ports import free_ports
from murmur_timeline.pipeline.user_events import UserEvents, ensure_user_stream

BURST = 500
USERS = 3_000
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True)
class Case:
    name: str
    key: str
    republish: bool = True
    dedup_id: bool = True
    trace: bool = True
    storage: StorageType = StorageType.FILE
    # Through UserEvents.publish_each rather than frames built here.
    product_path: bool = False


CASES = (
    Case("as published (UserEvents)", "nats_us_per_event", product_path=True),
    Case("no republish", "no_republish_us_per_event", republish=False),
    Case("no dedup id", "no_dedup_us_per_event", dedup_id=False),
    Case("no trace headers", "no_trace_us_per_event", trace=False),
    Case("bare (baseline)", "baseline_us_per_event", False, False, False),
    Case("memory storage", "memory_us_per_event", storage=StorageType.MEMORY),
)
BASELINE = CASES[4]


def post_created() -> events_pb2.Event:
    return events_pb2.Event(
        event_id=new_uuid7(),
        post_created=events_pb2.PostCreated(
            post_id=new_uuid7(), author_id="author-1", ciphertext_size=1024
        ),
    )


async def publish_frames(nc: murmur_nats.Client, case: Case, copies: int) -> None:
    """The frames UserEvents would send, with the case's features only."""
    js = nc.jetstream()
    trace_lines = header_lines({"traceparent": TRACEPARENT}) if case.trace else b""
    for start in range(0, copies, BURST):
        event = post_created()
        copy = events_pb2.UserEvent(event_id=event.event_id, post_created=event.post_created)
        burst = []
        for i in range(start, min(start + BURST, copies)):
            user = f"user{i % USERS:05d}"
            copy.user_id = user
            lines = trace_lines
            if case.dedup_id:
                lines += b"Nats-Msg-Id: " + header_value(f"{event.event_id}.{user}") + b"\r\n"
            burst.append(
                (subjects.user_subject(user, "post.created"), copy.SerializeToString(), lines)
            )
        *rest, (subject, payload, _) = burst
        await nc.publish_many(rest)
        await js.publish(subject, payload, stream=subjects.USER_STREAM)


async def publish_user_events(nc: murmur_nats.Client, copies: int) -> None:
    publisher = UserEvents(nc)
    tracer = trace.get_tracer("bench.user_events")
    for start in range(0, copies, BURST):
        recipients = [f"user{i % USERS:05d}" for i in range(start, min(start + BURST, copies))]
        with tracer.start_as_current_span("process murmur.events.post.created"):
            await publisher.publish_each([(post_created(), recipients, otel_context.get_current())])


async def run_case(case: Case, copies: int) -> tuple[float, float, int]:
    """(nats-server µs per stored copy, publisher µs per copy, copies stored)."""
    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory(prefix="murmur-bench-user-events-") as store:
        server = await asyncio.create_subprocess_exec(
            str(binaries.nats_server()),
            *("-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            nc = await connect_when_up(port)
            js = nc.jetstream()
            await ensure_user_stream(
                js, retention_seconds=24 * 3600, storage=case.storage, live=case.republish
            )
            send: Callable[[], Awaitable[None]] = (
                (lambda: publish_user_events(nc, copies))
                if case.product_path
                else (lambda: publish_frames(nc, case, copies))
            )
            server0, own0 = benchlib.process_cpu_seconds(server.pid), benchlib.own_cpu_seconds()
            await send()
            server1, own1 = benchlib.process_cpu_seconds(server.pid), benchlib.own_cpu_seconds()
            stored = (await js.stream_info(subjects.USER_STREAM)).state.messages
            await nc.close()
        finally:
            server.terminate()
            await server.wait()
    return 1e6 * (server1 - server0) / copies, 1e6 * (own1 - own0) / copies, stored


async def connect_when_up(port: int) -> murmur_nats.Client:
    """Connect once the server listens (connecting earlier logs its refusals)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return await murmur_nats.connect(f"nats://127.0.0.1:{port}", name="bench-user-events")


async def main(args: argparse.Namespace) -> int:
    copies, rounds = (20_000, 3) if args.quick else (50_000, 5)
    setup_tracing(ServiceInfo(name="bench-user-events", version="bench"))
    print(
        f"bench-user-events: {copies:,} copies a case, bursts of {BURST}, {USERS:,} users;"
        f" the cases interleaved, {rounds} rounds, medians"
    )
    server_us: dict[Case, list[float]] = {case: [] for case in CASES}
    publisher_us: list[float] = []
    for _ in range(rounds):
        for case in CASES:
            server, own, stored = await run_case(case, copies)
            if stored != copies:
                print(f"{case.name}: stored {stored:,} of {copies:,}", file=sys.stderr)
                return 1
            server_us[case].append(server)
            if case.product_path:
                publisher_us.append(own)
    values: dict[str, object] = {}
    for case, found in server_us.items():
        median = statistics.median(found)
        spread = ", ".join(f"{v:.1f}" for v in found)
        print(f"  {case.name:<28} nats-server {median:5.1f} µs a copy (rounds: {spread})")
        values[case.key] = round(median, 2)
    values["publisher_us_per_event"] = round(statistics.median(publisher_us), 2)
    values["vs_baseline"] = benchlib.ratio(
        statistics.median(server_us[CASES[0]]), statistics.median(server_us[BASELINE])
    )
    values["copies"] = copies
    values["rounds"] = rounds
    values["quick"] = args.quick
    print(benchlib.summary_line("user_events", values))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 20,000 copies")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
