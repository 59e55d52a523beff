"""Notifier settings (environment variables prefixed ``NOTIFIER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import TokenVerifyingSettings


class NotifierSettings(TokenVerifyingSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8090, ge=0, le=65535)
    metrics_port: int = 9467
    # Server-sent events (GET /v1/events) for clients without WebSocket;
    # 0: no SSE listener.
    sse_port: int = Field(default=8091, ge=0, le=65535)
    nats_url: str = "nats://127.0.0.1:4222"
    # The cache records who is connected (activity), so the pipeline fans out
    # to them; empty runs without presence.
    cache_addr: str = "127.0.0.1:7052"
    cache_timeout_seconds: float = Field(default=2.0, gt=0)
    # A connected user's activity is recorded again this often.
    presence_every_seconds: float = Field(default=3600.0, gt=0)
    # Presence calls to the cache at once; more wait their turn.
    presence_concurrency: int = Field(default=32, ge=1)

    # A connection must authenticate within this long (graphql-transport-ws:
    # send connection_init, else it is closed 4408).
    auth_timeout_seconds: float = Field(default=5.0, gt=0)
    # Subscriptions one graphql-transport-ws connection may hold at once
    # (each may hold back live events while it resumes).
    graphql_max_subscriptions: int = Field(default=16, ge=1)

    # Server heartbeats (and WebSocket pings) this often; a peer silent for
    # two of them is gone.
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Client frames larger than this close the connection (1009).
    max_client_message_bytes: int = Field(default=8192, ge=256)
    # Client messages per second (a bucket of twice this absorbs bursts).
    client_messages_per_second: float = Field(default=10.0, gt=0)

    # Events are coalesced into one frame over this window, up to this many.
    coalesce_seconds: float = Field(default=0.002, ge=0)
    frame_max_events: int = Field(default=64, ge=1)
    # Kernel send buffer per connection (0: the OS default, which may grow to
    # megabytes): bounds memory per connection and how much a slow client
    # can have in flight before its queue fills.
    send_buffer_bytes: int = Field(default=0, ge=0)
    # A connection whose unsent events exceed this is closed as too slow.
    queue_max_bytes: int = Field(default=1 << 20, ge=1024)
    # A resume that misses more events than this is told to resync instead.
    replay_max_events: int = Field(default=1000, ge=1)
    # Subscriptions catching up from the stream at once (more wait their
    # turn), and how long a replay waits for a client to take what it sent
    # before closing it as too slow.
    replay_concurrency: int = Field(default=16, ge=1)
    replay_stall_seconds: float = Field(default=10.0, gt=0)
    # Clients told to reconnect elsewhere wait this long, jittered up to twice.
    retry_after_seconds: float = Field(default=2.0, gt=0)
