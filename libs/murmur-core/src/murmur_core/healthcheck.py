"""Container health probes that ask the service itself, not its port:

    python -m murmur_core.healthcheck grpc 127.0.0.1:7051
    python -m murmur_core.healthcheck http http://127.0.0.1:8080/readyz

Exit status 0 when the service reports itself healthy, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_serving(address: str, timeout: float) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # typeshed's stub lacks the methods
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ready(url: str, timeout: float) -> bool:
    if not url.startswith(("http://", "https://")):
        raise SystemExit("url must be http:// or https://")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return bool(200 <= response.status < 300)
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["grpc", "http"])
    parser.add_argument("target")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    probe = grpc_serving if args.kind == "grpc" else http_ready
    sys.exit(0 if probe(args.target, args.timeout) else 1)


if __name__ == "__main__":
    main()
