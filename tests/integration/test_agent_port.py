"""The agent port on grpc.aio: every error path keeps its status code, the
caller reaches the sync servicers run on its thread pool, calls are audited,
and agent streams take no thread each."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from gpupool.v1 import admin_pb2, agents_pb2, agents_pb2_grpc, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.fleetfile import SimulatedNode, parse_fleet
from scheduler.security.channels import open_aio_channel
from scheduler.simfleet import register_request
from tests.integration.conftest import Client
from tests.integration.test_agent_reports import BAD_REGISTRATIONS, IDS, Change, _refused
from tests.integration.test_allocate import PLACED, allocate
from tests.pki import SessionPki

CODE = grpc.StatusCode


def _status(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), str(info.value.details())


@pytest.fixture
def admin_cert(fleet_client: Client, app: SchedulerApp, pki: SessionPki) -> Iterator[Client]:
    """An admin with a client certificate, on the agent port of a scheduler
    that knows the mixed fleet."""
    c = Client(app.agent_address, pki.admin_certificate("ops"))
    yield c
    c.close()


@pytest.fixture
def agent(fleet_client: Client, app: SchedulerApp) -> Iterator[Client]:
    c = Client.as_agent(app, "h100-sxm-0")
    yield c
    c.close()


def test_sync_handlers_on_the_agent_port_keep_their_codes(admin_cert: Client) -> None:
    code, details = _status(
        lambda: admin_cert.admin.GetNode(admin_pb2.GetNodeRequest(name="no-such-node"))
    )
    assert code == CODE.NOT_FOUND and "no-such-node" in details
    code, details = _status(
        lambda: admin_cert.scheduler.GetAllocation(scheduler_pb2.GetAllocationRequest())
    )
    assert code == CODE.INVALID_ARGUMENT and "allocation_id" in details
    bad = scheduler_pb2.AllocateRequest(request_id="x", tenant="team-a")  # asks for nothing
    assert _status(lambda: admin_cert.scheduler.Allocate(bad))[0] == CODE.INVALID_ARGUMENT


def test_a_server_stream_on_the_agent_port_keeps_its_codes(admin_cert: Client) -> None:
    request = scheduler_pb2.WatchAllocationRequest(allocation_id="no-such-allocation")
    stream = admin_cert.scheduler.WatchAllocation(request, timeout=10)
    code, details = _status(lambda: next(iter(stream)))
    assert code == CODE.NOT_FOUND and "no-such-allocation" in details
    empty = admin_cert.scheduler.WatchAllocation(scheduler_pb2.WatchAllocationRequest())
    assert _status(lambda: next(iter(empty)))[0] == CODE.INVALID_ARGUMENT


def test_the_caller_reaches_the_thread_pool_and_calls_are_audited(
    admin_cert: Client, agent: Client, fleet_client: Client
) -> None:
    placed = allocate(
        admin_cert, "by-cert", whole=types_pb2.WholeGpus(count=1), gpu_models=["H100-80GB"]
    )
    assert placed.state == PLACED
    watch = scheduler_pb2.WatchAllocationRequest(allocation_id=placed.id)
    first = next(iter(admin_cert.scheduler.WatchAllocation(watch, timeout=10)))
    assert first.allocation.id == placed.id, "a sync server stream runs on the pool"
    drain = admin_pb2.NodeActionRequest(name="h100-sxm-1")
    assert _status(lambda: agent.admin.DrainNode(drain))[0] == CODE.PERMISSION_DENIED
    events = fleet_client.admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest()).events
    allocated = next(e for e in events if e.method == "Scheduler/Allocate")
    assert (allocated.actor, allocated.code, allocated.target) == ("admin ops", "OK", placed.id)
    denied = next(e for e in events if e.method == "Admin/DrainNode")
    assert (denied.actor, denied.code) == ("agent of node h100-sxm-0", "PERMISSION_DENIED")


def test_a_stream_must_open_with_a_hello(agent: Client) -> None:
    beat = agents_pb2.AgentMessage(heartbeat=agents_pb2.HeartbeatRequest())
    stream = agent.agents.Connect(iter([beat]), timeout=10)
    code, details = _status(lambda: next(iter(stream)))
    assert code == CODE.INVALID_ARGUMENT and "hello" in details


@pytest.mark.parametrize(("change", "message"), BAD_REGISTRATIONS, ids=IDS)
def test_a_bad_hello_on_the_agent_port_is_invalid_argument(
    admin_cert: Client, mixed_fleet: list[SimulatedNode], change: Change, message: str
) -> None:
    request = register_request(next(n for n in mixed_fleet if n.name == "l4"))
    change(request)
    hello = agents_pb2.AgentMessage(hello=agents_pb2.AgentHello(node=request))
    stream = admin_cert.agents.Connect(iter([hello]), timeout=10)
    _refused(lambda: next(iter(stream)), message)
    _refused(lambda: admin_cert.agents.RegisterNode(request), message)


async def _streams(app: SchedulerApp, pki: SessionPki, nodes: list[SimulatedNode]) -> int:
    """Open a stream per node from an asyncio client (no thread per call on
    this side either) and count the threads the process gained meanwhile."""
    before = threading.active_count()
    channels, calls = [], []
    for node in nodes:
        channel = open_aio_channel(app.agent_address, pki.agent(node.name))
        call: Any = agents_pb2_grpc.AgentsStub(channel).Connect()  # type: ignore[call-arg]
        hello = agents_pb2.AgentHello(node=register_request(node))
        await call.write(agents_pb2.AgentMessage(hello=hello))
        channels.append(channel)
        calls.append(call)
    try:
        for call in calls:
            assert (await call.read()).WhichOneof("body") == "desired"
        assert sorted(app.agents.connected_nodes()) == sorted(n.name for n in nodes)
        return threading.active_count() - before
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close(None)


def test_agent_streams_take_no_thread_each(app: SchedulerApp, pki: SessionPki) -> None:
    document = {"nodes": [{"name": "t", "count": 64, "gpus": {"model": "L4", "count": 1}}]}
    nodes = parse_fleet(document)
    # The server's pools are bounded (16 threads for hellos, 64 for sync
    # handlers): 64 streams would have taken 128 threads of the sync server.
    grown = asyncio.run(_streams(app, pki, nodes))
    assert grown <= 16 + 8, f"{grown} threads for {len(nodes)} streams"
    deadline = time.monotonic() + 10
    while app.agents.connected_nodes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.agents.connected_nodes() == [], "a cancelled stream ends its session"


async def _hello_then_cancel(app: SchedulerApp, pki: SessionPki, node: SimulatedNode,
                             registering: threading.Event) -> None:  # fmt: skip
    """Send a hello and end the stream while the scheduler registers it."""
    channel = open_aio_channel(app.agent_address, pki.agent(node.name))
    try:
        call: Any = agents_pb2_grpc.AgentsStub(channel).Connect()  # type: ignore[call-arg]
        await call.write(
            agents_pb2.AgentMessage(hello=agents_pb2.AgentHello(node=register_request(node)))
        )
        await asyncio.to_thread(registering.wait, 10)
        call.cancel()
    finally:
        await channel.close(None)


def test_an_agent_gone_mid_hello_leaves_no_session(
    app: SchedulerApp, pki: SessionPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream ends while its hello is being registered (the agent died):
    the session registered after that is closed, not left as connected."""
    node = parse_fleet({"nodes": [{"name": "gone", "gpus": {"model": "L4", "count": 1}}]})[0]
    registering, cancelled, registered = threading.Event(), threading.Event(), threading.Event()
    connect = app.agents.connect

    def slow_connect(*args: Any) -> Any:
        registering.set()
        cancelled.wait(10)  # the stream has ended by the time this returns
        try:
            return connect(*args)
        finally:
            registered.set()

    monkeypatch.setattr(app.agents, "connect", slow_connect)
    asyncio.run(_hello_then_cancel(app, pki, node, registering))
    time.sleep(0.2)  # the cancellation reaches the server's handler
    cancelled.set()
    assert registered.wait(10)
    deadline = time.monotonic() + 5
    while app.agents.connected_nodes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.agents.connected_nodes() == [], "a stream that ended mid-hello left a session"
