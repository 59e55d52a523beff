"""Murmur gateway: the public HTTP API. It authenticates clients and forwards
their ciphertext to the timeline service; it never holds a plaintext body."""
