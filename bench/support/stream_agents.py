"""Simulated node agents speaking the real agents' protocol: one Agents.Connect
stream per node, on its own channel with its own certificate (as a GPU host
dials), a hello built by the real agent code over a simulated NVML, then a
heartbeat every interval on the stream.

The benchmarks' other stand-in (fleet.Heartbeats) sends unary Heartbeat
calls, which no real agent does; a unary call costs the scheduler several
times what a message on an open stream does, so idle-CPU figures measured
with it overstate what a fleet costs. The agents run in a child process of
their own (spawned, not forked: the parent holds gRPC channels), so their
CPU is neither the benchmark's nor the scheduler's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.connection import AGENT_CHANNEL_OPTIONS
from agent.nvml.simulated import SimulatedNvml
from agent.runner import Agent, AgentSettings
from gpupool.v1 import agents_pb2, agents_pb2_grpc
from scheduler.fleetfile import SimulatedNode
from scheduler.security.channels import ClientCredentials, open_aio_channel
from scheduler.security.pki import CertificateAuthority

WAVE = 250  # hellos in flight at once: each one registers its node
CONNECT_TIMEOUT_S = 300.0


class SimAgent:
    """One agent's protos, built once by the real agent code (agent/runner.py)
    over a simulated NVML, and reused: the client side must stay cheap."""

    def __init__(
        self, node: SimulatedNode, target: str, credentials: ClientCredentials, state_dir: Path
    ) -> None:
        # No worker runs here: an empty templates file spares a YAML parse per agent.
        templates = state_dir / "templates.yaml"
        if not templates.exists():
            templates.write_text("")
        settings = AgentSettings(target, node.name, credentials, labels=node.labels,
                                 state_dir=state_dir, worker_templates_file=templates)  # fmt: skip
        self.target = target
        self.credentials = credentials
        real = Agent(settings, SimulatedNvml(node))
        self.name = node.name
        self.hello = agents_pb2.AgentMessage(hello=real.hello())
        self.beat = agents_pb2.AgentMessage(heartbeat=real.heartbeat())


def agent_credentials(pki_dir: str | None) -> Callable[[str], ClientCredentials]:
    """Each node's own certificate from the benchmark's CA, loaded once (the
    server's certificate names 127.0.0.1); plaintext without one (--insecure)."""
    if pki_dir is None:
        return lambda node: ClientCredentials(insecure=True)
    ca = CertificateAuthority.load_or_create(Path(pki_dir))
    return lambda node: ClientCredentials(
        ca_pem=ca.cert_pem, certificate=ca.issue_agent(node), server_name="127.0.0.1"
    )


class StreamAgents:
    """`nodes` streaming to `target` from a child process until closed.

    `connect()` returns once every agent has had its first desired state (its
    hello registered the node), or raises after CONNECT_TIMEOUT_S. `sent` and
    `failed` count heartbeats written and streams lost."""

    def __init__(self, target: str, pki_dir: str | None, nodes: Sequence[SimulatedNode],
                 every: float) -> None:  # fmt: skip
        context = mp.get_context("spawn")
        self._counts: Any = context.RawArray("q", 3)  # connected, sent, failed
        self._stop: Any = context.Event()
        self._total = len(nodes)
        self._process = context.Process(
            target=_main, args=(target, pki_dir, list(nodes), every, self._counts, self._stop),
            name="stream-agents", daemon=True,
        )  # fmt: skip

    @property
    def connected(self) -> int:
        return int(self._counts[0])

    @property
    def sent(self) -> int:
        return int(self._counts[1])

    @property
    def failed(self) -> int:
        return int(self._counts[2])

    def connect(self) -> float:
        """Start the agents; returns the seconds until all were connected."""
        started = time.monotonic()
        self._process.start()
        while self.connected < self._total:
            if not self._process.is_alive():
                raise RuntimeError("the simulated agents' process died while connecting")
            if time.monotonic() - started > CONNECT_TIMEOUT_S:
                raise TimeoutError(f"{self.connected} of {self._total} agents connected")
            time.sleep(0.2)
        return time.monotonic() - started

    def close(self) -> None:
        self._stop.set()
        if self._process.pid is None:
            return  # never started
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)


def _main(target: str, pki_dir: str | None, nodes: list[SimulatedNode], every: float,
          counts: Any, stop: Any) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as state_dir:  # the agents write nothing there
        credentials = agent_credentials(pki_dir)
        agents = [SimAgent(n, target, credentials(n.name), Path(state_dir)) for n in nodes]
    asyncio.run(_run(agents, every, counts, stop))


async def _run(agents: list[SimAgent], every: float, counts: Any, stop: Any) -> None:
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, len(agents), WAVE):
        # In waves: every hello registers a node; a thundering herd measures only that.
        wave = [_Stream(a, every, counts) for a in agents[start : start + WAVE]]
        tasks += [asyncio.create_task(s.run()) for s in wave]
        await asyncio.wait([asyncio.create_task(s.connected.wait()) for s in wave],
                           timeout=CONNECT_TIMEOUT_S)  # fmt: skip
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Stream:
    """One agent's sessions: hello, then a heartbeat every interval; a lost
    stream is counted and reopened after a jittered backoff (agent/runner.py)."""

    def __init__(self, agent: SimAgent, every: float, counts: Any) -> None:
        self.agent, self.every, self.counts = agent, every, counts
        self.connected = asyncio.Event()
        self.seq = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counts[2] += 1
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(2 * backoff, self.every)

    async def _session(self) -> None:
        a = self.agent
        options = [*AGENT_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        async with open_aio_channel(a.target, a.credentials, options) as channel:
            call: Any = agents_pb2_grpc.AgentsStub(channel).Connect()  # type: ignore[call-arg]
            reader = asyncio.create_task(self._read(call))
            try:
                await call.write(a.hello)
                await asyncio.sleep(random.uniform(0, self.every))  # spread the beats
                while not reader.done():
                    # Numbered as the real agent numbers them: the scheduler acknowledges each.
                    self.seq += 1
                    a.beat.heartbeat.seq = self.seq
                    await call.write(a.beat)
                    self.counts[1] += 1
                    await asyncio.sleep(self.every)
            finally:
                reader.cancel()
                call.cancel()
            raise ConnectionError("the scheduler ended the stream")

    async def _read(self, call: Any) -> None:
        async for message in call:
            if message.WhichOneof("body") == "desired" and not self.connected.is_set():
                self.connected.set()
                self.counts[0] += 1
