"""Performance, resources and bottlenecks, from Prometheus or from the
services' own /metrics."""
