"""The notifier's Prometheus metrics (labels never carry user ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from murmur_core.metrics import LATENCY_BUCKETS

# RED per WebSocket protocol (murmur.v1, graphql-transport-ws): sessions
# opened, closes by code, events delivered and their latency.
CONNECTIONS = Gauge(
    "murmur_notifier_connections", "Open, authenticated connections, by protocol.", ["protocol"]
)
SESSIONS = Counter(
    "murmur_notifier_sessions_total", "Connections authenticated, by protocol.", ["protocol"]
)
USERS = Gauge("murmur_notifier_users", "Users with at least one open connection here.")
DELIVERED = Counter(
    "murmur_notifier_events_delivered_total", "Events written to connections.", ["protocol"]
)
FRAMES = Counter("murmur_notifier_frames_total", "Event frames written (events coalesced).")
DELIVERY_SECONDS = Histogram(
    "murmur_notifier_delivery_seconds",
    "From an event's arrival at this process to its frame being written.",
    ["protocol"],
    buckets=LATENCY_BUCKETS,
)
LAG_EVENTS = Histogram(
    "murmur_notifier_connection_lag_events",
    "Events still queued for a connection when one of its frames is written.",
    buckets=(0, 1, 4, 16, 64, 256, 1024, 4096),
)
QUEUED_BYTES = Gauge("murmur_notifier_queued_bytes", "Bytes of events queued, all connections.")


class QueuedBytes:
    """The outboxes' running sum behind QUEUED_BYTES, read when scraped: a
    gauge's inc and dec (a lock each) were twice per delivery."""

    total = 0


QUEUED_BYTES.set_function(lambda: QueuedBytes.total)
RESUMES = Counter(
    "murmur_notifier_resumes_total",
    "Subscriptions that asked to resume, by outcome (replayed, resync, resync_too_many).",
    ["outcome"],
)
CLOSES = Counter(
    "murmur_notifier_closes_total",
    "Connections closed by the server, by protocol and close code.",
    ["protocol", "code"],
)
UNDELIVERABLE = Counter(
    "murmur_notifier_undeliverable_total", "Messages on users' subjects that could not be read."
)


def start_series(protocols: tuple[str, ...]) -> None:
    """Every protocol's series exist from the start, at 0: dashboards and
    rate() see a protocol before its first connection."""
    for protocol in protocols:
        for family in (CONNECTIONS, SESSIONS, DELIVERED, DELIVERY_SECONDS):
            family.labels(protocol)


NATS_DISCONNECTS = Counter(
    "murmur_notifier_nats_disconnects_total",
    "Losses of the NATS connection, at which every connection here is sent to resume.",
)
