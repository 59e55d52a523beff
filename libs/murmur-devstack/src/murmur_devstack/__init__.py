"""Run the Murmur stack as local processes: for ``make up`` and the integration tests."""

import os

# The launcher forks its children. gRPC's fork handlers, run in a child forked
# while calls are in flight, can crash it before it execs; they must be off
# before grpc is first imported, so importing the launcher turns them off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


from murmur_devstack.keys import DevKeys
from murmur_devstack.ports import free_port, free_ports
from murmur_devstack.probes import (
    GrpcHealthServing,
    HttpOk,
    NotReady,
    Probe,
    RedisPing,
    http_readyz,
    nats_jetstream,
)
from murmur_devstack.process import ManagedProcess, ProcessSpec, ProcessStartError
from murmur_devstack.services import SERVICES, ServiceSpec, Wiring
from murmur_devstack.stack import PortInUse, Stack

__all__ = [
    "SERVICES",
    "DevKeys",
    "GrpcHealthServing",
    "HttpOk",
    "ManagedProcess",
    "NotReady",
    "PortInUse",
    "Probe",
    "ProcessSpec",
    "ProcessStartError",
    "RedisPing",
    "ServiceSpec",
    "Stack",
    "Wiring",
    "free_port",
    "free_ports",
    "http_readyz",
    "nats_jetstream",
]
