"""The shared coalescing timer (``outbox.FlushSchedule``), in process with
fake channels behind the ``Channel`` interface: one window writes every
queue that filled in it, as one frame each; a connection whose write fails
is closed (1011) without keeping the others' frames from being written; a
channel that cannot take writes gets them from its sender task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from websockets.http11 import Request

from murmur_notifier.outbox import INTERNAL_ERROR, FlushSchedule, Outbox, Outgoing
from murmur_notifier.settings import NotifierSettings

WINDOW = 0.005


class _Channel:
    request: Request | None = None

    def __init__(self, *, ready: bool = True, broken: bool = False) -> None:
        self.ready, self.broken = ready, broken
        self.written: list[bytes] = []
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        raise AssertionError("not read in these tests")

    async def recv(self) -> str | bytes:
        raise AssertionError("not read in these tests")

    async def send(self, message: bytes, *, text: bool | None = None) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def ready_to_write(self) -> bool:
        return self.ready

    def write_now(self, message: bytes) -> None:
        if self.broken:
            raise OSError("the transport failed")
        self.written.append(message)


class _Subscriber:
    active = True
    position = 0


class _Delivery:
    traced = None

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.received_at = asyncio.get_running_loop().time()


def _outbox(channel: _Channel, schedule: FlushSchedule) -> Outbox:
    settings = NotifierSettings(coalesce_seconds=WINDOW)
    return Outbox(
        channel,
        settings,
        lambda batch: [b"|".join(item.encoded for item in batch)],
        lambda: None,
        "test",
        schedule,
    )


def _event(outbox: Outbox, seq: int) -> None:
    subscriber = _Subscriber()
    delivery = _Delivery(seq)
    outbox.send_event(Outgoing(subscriber, delivery, b"e%d" % seq))  # type: ignore[arg-type]


async def test_one_window_writes_every_queue_and_survives_a_broken_one() -> None:
    schedule = FlushSchedule(WINDOW)
    good, broken, other = _Channel(), _Channel(broken=True), _Channel()
    outboxes = [_outbox(channel, schedule) for channel in (good, broken, other)]
    senders = [asyncio.create_task(outbox.run()) for outbox in outboxes]
    for seq in (1, 2, 3):
        for outbox in outboxes:
            _event(outbox, seq)
    assert good.written == []  # the window has not ended
    await asyncio.sleep(WINDOW * 4)

    assert good.written == [b"e1|e2|e3"]
    assert other.written == [b"e1|e2|e3"]
    assert broken.closed == (INTERNAL_ERROR, "internal error")
    assert senders[1].done()
    for outbox, sender in zip(outboxes, senders, strict=True):
        outbox.release()
        sender.cancel()


async def test_a_channel_that_pushes_back_is_written_by_its_sender() -> None:
    schedule = FlushSchedule(WINDOW)
    channel = _Channel(ready=False)
    outbox = _outbox(channel, schedule)
    sender = asyncio.create_task(outbox.run())
    _event(outbox, 1)
    _event(outbox, 2)
    await asyncio.sleep(WINDOW * 4)
    assert (channel.written, channel.sent) == ([], [b"e1|e2"])

    channel.ready = True  # the socket drained: the fast path again
    _event(outbox, 3)
    await asyncio.sleep(WINDOW * 4)
    assert (channel.written, channel.sent) == ([b"e3"], [b"e1|e2"])
    outbox.release()
    sender.cancel()
