"""The cache's own metrics. Labels are bounded: layer, data class, outcome."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LOOKUPS = Counter(
    "murmur_cache_lookups_total",
    "Cache lookups by layer, data class and result (hit or miss).",
    ["layer", "data_class", "result"],
)
FILLS = Counter(
    "murmur_cache_fills_total",
    "Feed fills by data class and outcome (stored, or refused for a lost lease or newer version).",
    ["data_class", "outcome"],
)
REBUILDS = Counter(
    "murmur_cache_rebuilds_total",
    "Reads of the source of truth (the timeline service) to rebuild a miss, by data class.",
    ["data_class"],
)
LEASE_WAITS = Counter(
    "murmur_cache_lease_waits_total",
    "Misses that waited for another caller's fill instead of rebuilding.",
    ["data_class"],
)
STALE_SERVED = Counter(
    "murmur_cache_stale_served_total",
    "Copies served past their freshness, by data class and reason (revalidate, error).",
    ["data_class", "reason"],
)
EARLY_REFRESHES = Counter(
    "murmur_cache_early_refreshes_total",
    "Probabilistic early refreshes of hot entries before they expire.",
    ["data_class"],
)
L1_EVICTIONS = Counter("murmur_cache_l1_evictions_total", "L1 entries evicted to stay in bounds.")
L1_BYTES = Gauge("murmur_cache_l1_bytes", "Bytes accounted to L1 entries.")
L1_ENTRIES = Gauge("murmur_cache_l1_entries", "Entries held in L1.")
L1_FLUSHES = Counter(
    "murmur_cache_l1_flushes_total",
    "Whole-L1 flushes, by reason (invalidation stream lost, explicit).",
    ["reason"],
)
INVALIDATIONS = Counter(
    "murmur_cache_invalidations_total",
    "Invalidations applied, by origin (event, broadcast, request, fan_out: another"
    " instance's feed appends and removals).",
    ["origin"],
)
REDIS_UP = Gauge("murmur_cache_redis_up", "1 while Redis answers, 0 while it does not.")


def total(counter: Counter, **labels: str) -> int:
    """Sum of a counter's series whose labels include ``labels``."""
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
            and all(sample.labels.get(k) == v for k, v in labels.items())
        )
    )
