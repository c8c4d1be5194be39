"""How an agent reaches the scheduler replicas: one gRPC target for all of them.

`--scheduler` takes what gRPC resolves itself (no home-made discovery):
- `HOST:PORT`: one replica (or a DNS name; gRPC uses its first address);
- `dns:///NAME:PORT`: every address NAME resolves to, re-resolved when a
  connection fails (a Kubernetes headless Service);
- `ipv4:A:P,B:P` / `ipv6:[A]:P,[B]:P`, or a plain comma-separated list of IP
  addresses `A:P,B:P`, which becomes that target.
The channel balances round-robin, so agents spread over the replicas and a
dead one is skipped at once.

TLS checks every replica's certificate against one name. For one address or a
DNS name that is its host; a list of addresses has no host of its own, so the
agent needs the name every replica's certificate carries (`--tls-server-name`,
e.g. the Service's DNS name) unless all addresses share one host (loopback).
"""

from __future__ import annotations

import ipaddress
from typing import Any

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")

# Round robin over every resolved replica; keepalive pings find a peer that
# vanished without closing its connection (a partition, a frozen host). Every
# 30 s, not 10: a replica that stops acknowledging heartbeats is left after
# three intervals anyway (runner._watch_session), and at 1,250 nodes the
# 10 s pings were a fifth of an idle scheduler's CPU (bench.pending_flood).
AGENT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


def _host_of(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]")


def server_name(target: str) -> str:
    """The name to check replicas' certificates against when the target's own
    authority cannot serve (a list of addresses); "" when it can."""
    if not target.startswith(("ipv4:", "ipv6:")):
        return ""
    addresses = target.split(":", 1)[1].split(",")
    hosts = {_host_of(a.removeprefix("//")) for a in addresses}
    if len(addresses) == 1:
        return hosts.pop()
    return hosts.pop() if len(hosts) == 1 else ""


def scheduler_target(spec: str) -> str:
    """The gRPC target for `--scheduler`; ValueError with what to write instead."""
    spec = spec.strip()
    if not spec:
        raise ValueError("give the scheduler's agent address, e.g. 10.0.0.5:50052")
    if spec.startswith(_SCHEMES):
        return spec
    addresses = [a.strip() for a in spec.split(",") if a.strip()]
    if len(addresses) == 1:
        _host_of(addresses[0])
        return addresses[0]
    versions = set()
    for address in addresses:
        try:
            versions.add(ipaddress.ip_address(_host_of(address)).version)
        except ValueError:
            raise ValueError(
                f"{address!r} in a list is not an IP address: list IP:PORT pairs, or give "
                "one DNS name that resolves to every replica as dns:///NAME:PORT"
            ) from None
    if versions == {4}:
        return "ipv4:" + ",".join(addresses)
    if versions == {6}:
        return "ipv6:" + ",".join(addresses)
    raise ValueError("list either IPv4 or IPv6 addresses, not both")
