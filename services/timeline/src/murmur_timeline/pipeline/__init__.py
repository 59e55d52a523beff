"""The timeline's feed pipeline: its own process (``python -m
murmur_timeline.pipeline``) that consumes domain events and keeps readers'
home feeds ready in the cache, publishes per-user events for the notifier,
and runs the cleanup schedules."""
