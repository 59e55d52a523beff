"""The JSON API's documents, for OpenAPI and for validating what is served.
Every figure may be null when it is not known yet (a fresh stack)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ServiceStatus = Literal["serving", "not_serving", "unreachable"]
InfraStatus = Literal["up", "down", "unknown"]


class ActiveUsers(BaseModel):
    daily: int
    weekly: int
    monthly: int


class PerMinute(BaseModel):
    minutes: list[int] = Field(description="Start of each minute, epoch seconds, oldest first.")
    series: dict[str, list[int]] = Field(description="Events per minute by kind (post.created…).")


class FanoutBucket(BaseModel):
    bucket: str
    posts: int


class Cohort(BaseModel):
    cohort: str = Field(description="The day the cohort's users were created (UTC).")
    users: int
    retained: list[float] = Field(description="Share of the cohort active on day 1, 2, …")


class Analytics(BaseModel):
    active_users: ActiveUsers
    per_minute: PerMinute
    today: dict[str, int]
    fanout_sizes: list[FanoutBucket]
    retention: list[Cohort]


class Endpoint(BaseModel):
    service: str
    kind: Literal["http", "grpc"]
    name: str
    rate_per_second: float
    error_ratio: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class CacheLayer(BaseModel):
    layer: str
    ratio: float | None


class NotifierFigures(BaseModel):
    connections: int | None
    delivery_p99_ms: float | None


class ConsumerLag(BaseModel):
    consumer: str
    pending: int


class TrafficHistory(BaseModel):
    t: list[float]
    requests_per_second: list[float | None]
    error_ratio: list[float | None]
    p99_ms: list[float | None]


class Performance(BaseModel):
    source: Literal["scrape", "prometheus"]
    window_seconds: float | None = None
    error: str | None = None
    endpoints: list[Endpoint]
    cache_hit_ratio: list[CacheLayer] = []
    notifier: NotifierFigures | None = None
    consumers: list[ConsumerLag] = []
    history: TrafficHistory | None = None


class ServiceHealth(BaseModel):
    name: str
    instance: str
    status: ServiceStatus
    version: str | None = None
    uptime_seconds: float | None = Field(
        default=None, description="Of the service's most recently started instance."
    )


class RedisHealth(BaseModel):
    status: InfraStatus
    version: str | None
    used_memory_bytes: int | None
    connected_clients: int | None


class StreamState(BaseModel):
    name: str
    messages: int
    bytes: int


class ConsumerState(BaseModel):
    stream: str
    name: str | None
    pending: int | None
    ack_pending: int | None


class NatsHealth(BaseModel):
    status: InfraStatus
    streams: list[StreamState]
    consumers: list[ConsumerState]


class DatabaseHealth(BaseModel):
    status: InfraStatus
    detail: str


class Alert(BaseModel):
    name: str | None
    severity: str | None
    summary: str | None
    since: str | None


class Alerts(BaseModel):
    source: Literal["alertmanager"] | None
    firing: list[Alert]
    error: str | None = None


class Health(BaseModel):
    services: list[ServiceHealth]
    redis: RedisHealth
    nats: NatsHealth
    database: DatabaseHealth
    alerts: Alerts


class Pool(BaseModel):
    name: str = Field(description="db, redis <pool>, or grpc <target> (calls in flight).")
    in_use: int
    size: int | None = Field(description="The pool's limit; none for a gRPC channel.")


class Resources(BaseModel):
    service: str
    instance: str
    cpu_cores: float | None = Field(description="CPU seconds per second over the window.")
    memory_bytes: int | None
    open_fds: int | None
    event_loop_lag_seconds: float | None
    uptime_seconds: float | None
    pools: list[Pool]


class HopShare(BaseModel):
    hop: str
    p99_ms: float | None
    share: float | None = Field(description="This hop's own part of the path's p99 latency.")


class Path(BaseModel):
    hops: list[HopShare]
    slowest: str | None


class Bottlenecks(BaseModel):
    read: Path
    write: Path


class Statement(BaseModel):
    service: str
    statement: str = Field(description="Normalised: literals replaced, never parameter values.")
    calls: int
    mean_ms: float
    max_ms: float
    total_ms: float
    slow_calls: int


class SlowRpc(BaseModel):
    service: str
    method: str
    p99_ms: float
    rate_per_second: float


class Queries(BaseModel):
    statements: list[Statement]
    slowest_rpcs: list[SlowRpc]
    note: str | None = None


class Overview(BaseModel):
    generated_at: str
    analytics: Analytics
    performance: Performance
    health: Health
    resources: list[Resources]
    bottlenecks: Bottlenecks
    queries: Queries


class Author(BaseModel):
    user_id: str
    reach: int = Field(description="Followers at posting time, summed over the author's posts.")
    posts: int


class TopAuthors(BaseModel):
    authors: list[Author]


class ProfileTarget(BaseModel):
    service: str
    instance: str


class ProfileTargets(BaseModel):
    targets: list[ProfileTarget]


class ProfileRequest(BaseModel):
    service: str = Field(min_length=1, max_length=64)
    instance: str | None = Field(default=None, max_length=255)
    seconds: float = Field(default=5.0, gt=0, le=60)


class ProfileSummary(BaseModel):
    id: str
    service: str
    instance: str
    seconds: float
    taken_at: float
    html_url: str
    speedscope_url: str
