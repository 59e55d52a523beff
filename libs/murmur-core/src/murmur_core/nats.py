"""NATS for every service: one way to connect, declare streams, and carry W3C
trace context in message headers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from nats import errors
from nats.aio.client import _HEADER_KEY_RE, _HEADER_VALUE_NEWLINES, NATS_HDR_LINE, _validate_subject
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import RePublish, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from nats.protocol import command
from opentelemetry import context as otel_context
from opentelemetry import propagate

log = logging.getLogger(__name__)
# The checks and protocol pieces are nats-py's own (private, so pinned by
# the lock): a burst is refused and written exactly as its publish would.
_HEADER_START = bytes(NATS_HDR_LINE) + b"\r\n"


def header_value(value: str) -> bytes:
    """A header value as nats-py writes it (trimmed; CR and LF become spaces)."""
    # Most values (user ids, trace context) are printable with no space at
    # either end: nothing to trim or translate, once per per-user copy.
    if value.isprintable() and not (value[:1].isspace() or value[-1:].isspace()):
        return value.encode()
    return value.strip().translate(_HEADER_VALUE_NEWLINES).encode()


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``name: value\r\n`` for each header, as nats-py writes them; the
    middle of a NATS header block (``publish_many`` adds the rest)."""
    out = []
    for name, value in headers.items():
        name = name.strip()
        if not name:
            continue
        if not _HEADER_KEY_RE.fullmatch(name):
            raise errors.BadHeaderError(name)
        out.append(name.encode() + b": " + header_value(value) + b"\r\n")
    return b"".join(out)


# A direct subscription's handler: (subject, headers, payload), called as the
# message is parsed.
DirectHandler = Callable[[str, dict[str, str] | None, bytes], None]


class Client(NatsClient):
    """nats-py's client with a faster parser of message headers, a burst
    publish, and subscriptions handled as their messages are parsed.

    Parsing: every message a stream republishes carries five headers of its
    own besides the publisher's, and nats-py's parser (a generator per header
    name to look for whitespace) was the largest single cost of a notifier
    delivering them. Same result for every well-formed header block (tested
    against nats-py's own).
    """

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, DirectHandler] = {}

    async def subscribe_direct(self, subject: str, handler: DirectHandler) -> Subscription:
        """A subscription whose messages go to ``handler`` from the read loop,
        as they are parsed: no message object, no queue and no task per
        subscription (nats-py's way, about a third of what the notifier spent
        on a message it routes to one user). The handler must not block; a
        process too slow for its messages is cut off by the server as a slow
        consumer (a disconnect), never drops messages of its own."""
        subscription = await self.subscribe(subject)
        self._direct[subscription._id] = handler
        return subscription

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._direct.pop(sid, None)
        super()._remove_sub(sid, max_msgs)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        parsed = await self._process_headers(headers) if headers else None
        try:
            handler(subject.decode(), parsed, data)
        except Exception:
            # Not the read loop's to end: the other subscriptions go on.
            log.exception("a direct subscription's handler failed")

    async def publish_many(self, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Publish (subject, payload, header lines) messages in order, as one
        write: the same bytes on the wire as ``publish`` for each, without its
        per-message work (validating and encoding the headers again, a buffer
        append and a flush check each). For the pipeline's per-recipient
        copies, where that work was a fifth of the event loop. Header lines
        come from ``header_lines``, typically shared by the burst and one
        line of its own per message; empty for none."""
        if self.is_closed:
            raise errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise errors.ConnectionDrainingError
        frames = []
        size = 0
        for subject, payload, lines in messages:
            if not subject:
                raise errors.BadSubjectError
            if not self._skip_subject_validation:
                _validate_subject(subject)
            if len(payload) > self._max_payload:
                raise errors.MaxPayloadError
            if lines:
                block = _HEADER_START + lines + b"\r\n"
                frames.append(command.hpub_cmd(subject, "", block, payload))
            else:
                frames.append(command.pub_cmd(subject, "", payload))
            size += len(payload)
        if not frames:
            return
        burst = b"".join(frames)
        if not self.is_connected and (
            self._max_pending_size <= 0
            or len(burst) + self._pending_data_size > self._max_pending_size
        ):
            # As nats-py's publish: buffered while reconnecting, up to a limit.
            raise errors.OutboundBufferLimitError
        self.stats["out_msgs"] += len(frames)
        self.stats["out_bytes"] += size
        await self._send_command(burst)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip()
            # Names are ASCII tokens: one word, no whitespace inside.
            if not name.isascii() or len(name.split()) > 1:
                continue
            out[name.decode("ascii")] = value.strip().decode("utf-8", "replace")
        return out


async def connect(
    url: str,
    *,
    name: str,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_slow_consumer: Callable[[SlowConsumerError], Awaitable[None]] | None = None,
) -> Client:
    """Connect with endless reconnects: a NATS restart costs latency, not the
    process. The hooks let a service react to losing its subscriptions, or
    messages of one (``on_slow_consumer``: its pending limit overflowed and
    the client dropped a message; called for each)."""

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError) and on_slow_consumer is not None:
            await on_slow_consumer(exc)
            return
        log.warning("nats error", extra={"error": repr(exc)})

    async def disconnected() -> None:
        log.warning("nats disconnected")
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("nats reconnected")
        if on_reconnect is not None:
            await on_reconnect()

    client = Client()
    await client.connect(
        servers=[url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; seconds, fractions work
        connect_timeout=2,
        error_cb=on_error,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
    )
    return client


async def ensure_stream(
    js: JetStreamContext,
    *,
    name: str,
    subjects: list[str],
    max_age_seconds: float,
    duplicate_window_seconds: float = 120.0,
    storage: StorageType = StorageType.FILE,
    republish: RePublish | None = None,
) -> None:
    """Create the stream, or bring an existing one's limits up to date."""
    config = StreamConfig(
        name=name,
        subjects=subjects,
        storage=storage,
        max_age=max_age_seconds,
        duplicate_window=duplicate_window_seconds,
        republish=republish,
    )
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created jetstream stream", extra={"stream": name})
    else:
        await js.update_stream(config)


def inject_trace_context(
    headers: dict[str, str] | None = None, *, context: otel_context.Context | None = None
) -> dict[str, str]:
    """Headers with the ``traceparent`` (and baggage) of the current span, or
    of ``context``, added."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier, context=context)
    return carrier


def extract_trace_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a message's headers carry (empty context if none)."""
    return propagate.extract(dict(headers or {}))
