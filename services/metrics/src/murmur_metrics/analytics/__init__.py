"""Behaviour analytics from the domain events: recorded into Redis by the
ingest consumer, read back for the dashboard."""
