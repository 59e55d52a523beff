"""Murmur notifier: per-user events from NATS to WebSocket clients."""
