"""The simulated fleet the scheduler benchmarks register: 1,250 nodes of 8
GPUs (10,000 GPUs, mixed generations, some MIG), kept reachable by simulated
agents: Connect streams as real agents open (stream_agents.py), or unary
RegisterNode and Heartbeat calls from one thread."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from rich.console import Console
from rich.progress import Progress

from bench.harness import BenchServer
from bench.support.stream_agents import StreamAgents
from gpupool.v1 import agents_pb2, agents_pb2_grpc
from scheduler.fleetfile import SimulatedNode, parse_fleet
from scheduler.security.channels import ClientCredentials, open_channel
from scheduler.simfleet import register_request

# (node name, model, nodes, of which in MIG mode): 1,250 nodes x 8 = 10,000
# GPUs; 65 of the 650 A100/H100 nodes (10%) run MIG.
FLEET_MIX = (
    ("h100", "H100-80GB", 300, 25),
    ("h200", "H200", 175, 0),
    ("b200", "B200", 125, 0),
    ("a100-80", "A100-80GB", 225, 25),
    ("a100-40", "A100-40GB", 125, 15),
    ("l40s", "L40S", 150, 0),
    ("l4", "L4", 150, 0),
)
# Profiles the MIG nodes above offer (A100-80GB/H100 names, then A100-40GB ones).
MIG_PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb", "1g.20gb", "1g.5gb", "2g.10gb", "3g.20gb")
# The scheduler's default heartbeat interval (serve --heartbeat-interval,
# the kubelet's node-status figure); a node is unreachable after 40 s.
HEARTBEAT_EVERY = 10.0


def fleet_document() -> dict[str, Any]:
    """The fleet in fleet-file form (see scheduler/fleetfile.py)."""
    nodes: list[dict[str, Any]] = []
    for i, (name, model, count, mig) in enumerate(FLEET_MIX):
        labels = {"zone": f"zone-{'abc'[i % 3]}", "nvlink-domain": "node"}
        for suffix, n, mig_mode in (("", count - mig, False), ("-mig", mig, True)):
            gpus = {"model": model, "count": 8, "mig": mig_mode}
            if n:
                nodes.append({"name": name + suffix, "count": n, "labels": labels, "gpus": gpus})
    return {"nodes": nodes}


def fleet_nodes() -> list[SimulatedNode]:
    return parse_fleet(fleet_document())


class Heartbeats:
    """Stands in for the agents: the scheduler marks a node unreachable after
    10 s without a heartbeat. One thread, non-blocking calls, each node once
    per period (registering counts as the first beat)."""

    def __init__(self, address: str, credentials: ClientCredentials, every: float) -> None:
        self._channel = open_channel(address, credentials)
        self._beat = agents_pb2_grpc.AgentsStub(self._channel).Heartbeat
        self._due: deque[tuple[float, str]] = deque()  # same period for all: stays sorted
        self.sent = self.failed = 0
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, node: str) -> None:
        if math.isfinite(self._every):  # inf: heartbeats are off
            self._due.append((time.monotonic() + self._every, node))

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._due:
                self._stop.wait(0.1)
                continue
            due, node = self._due[0]
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self._due.popleft()
            self._due.append((due + self._every, node))
            call = self._beat.future(agents_pb2.HeartbeatRequest(node=node), timeout=self._every)
            call.add_done_callback(self._done)

    def _done(self, call: Any) -> None:
        self.sent += 1
        self.failed += call.exception() is not None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._channel.close()


def register_fleet(address: str, credentials: ClientCredentials, nodes: list[SimulatedNode],
                   beats: Heartbeats, console: Console) -> tuple[float, int]:  # fmt: skip
    """Register every node over 16 threads; returns seconds taken and retries.
    RegisterNode is level-triggered, so a retry is safe; retries are counted
    because concurrent registration can fail the allocator's snapshot reload."""
    channel = open_channel(address, credentials)
    agents = agents_pb2_grpc.AgentsStub(channel)

    def register(node: SimulatedNode) -> int:
        for attempt in range(6):
            try:
                agents.RegisterNode(register_request(node), timeout=120)
                beats.add(node.name)
                return attempt
            except grpc.RpcError:
                if attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0

    started, retries = time.perf_counter(), 0
    pool = ThreadPoolExecutor(16)
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"registering {len(nodes)} nodes", total=len(nodes))
            for attempts in pool.map(register, nodes):
                retries += attempts
                bar.advance(task)
    finally:
        pool.shutdown(cancel_futures=True)
        channel.close()
    return time.perf_counter() - started, retries


class _Counted(Protocol):
    @property
    def sent(self) -> int: ...
    @property
    def failed(self) -> int: ...


@dataclass
class FleetAgents:
    """What keeps the fleet reachable, and how long registering it took."""

    agents: _Counted
    registered_s: float

    @property
    def sent(self) -> int:
        return self.agents.sent

    @property
    def failed(self) -> int:
        return self.agents.failed


@contextmanager
def fleet_agents(
    server: BenchServer,
    nodes: list[SimulatedNode],
    unary: bool,
    console: Console,
    every: float = HEARTBEAT_EVERY,
) -> Iterator[FleetAgents]:
    """The fleet registered and heartbeating until the block ends: by one
    Connect stream per node (its hello registers it), or with `unary` by
    RegisterNode and Heartbeat calls (those too when `every` is infinite:
    registered, and never a heartbeat)."""
    if unary or not math.isfinite(every):
        with closing(Heartbeats(server.address, server.admin, every)) as beats:
            took, _ = register_fleet(server.address, server.admin, nodes, beats, console)
            console.print(f"registered {len(nodes)} nodes in {took:.1f}s (unary calls)")
            yield FleetAgents(beats, took)
        return
    # An --insecure scheduler has no agent port: its agents use the API port.
    target = server.agent_address or server.address
    pki = str(server.pki.directory) if server.pki else None
    streams = StreamAgents(target, pki, nodes, every)
    try:
        with console.status(f"{len(nodes)} agents connecting (Connect streams)"):
            took = streams.connect()
        console.print(f"{len(nodes)} agents connected in {took:.1f}s (Connect streams)")
        yield FleetAgents(streams, took)
    finally:
        streams.close()
