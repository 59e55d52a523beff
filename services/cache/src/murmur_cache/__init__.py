"""Murmur cache service: sealed two-layer cache of timeline reads."""
