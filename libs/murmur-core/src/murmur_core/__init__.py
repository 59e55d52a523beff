"""Murmur's shared library: one way for every service to configure, log, trace,
measure, serve gRPC, talk to NATS and check tokens."""
