"""InjectFault checks the fault and the GPU before relaying it to a simulated agent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import cast

import grpc
import pytest
from click.testing import CliRunner

from gpupool.v1 import admin_pb2, agents_pb2
from scheduler.cli.main import cli
from scheduler.fleetfile import SimulatedNode
from scheduler.simfleet import register_request
from tests.integration.conftest import Client


class SimulatedAgentStream:
    """A simulated agent's Connect stream that stays open until closed."""

    def __init__(self, client: Client, node: SimulatedNode) -> None:
        self._done = threading.Event()
        hello = agents_pb2.AgentHello(node=register_request(node), simulated=True)
        self._call = client.agents.Connect(self._messages(hello), timeout=30)
        self.responses = cast(Iterator[agents_pb2.SchedulerMessage], self._call)
        first = next(self.responses)
        assert first.WhichOneof("body") == "desired"

    def _messages(self, hello: agents_pb2.AgentHello) -> Iterator[agents_pb2.AgentMessage]:
        yield agents_pb2.AgentMessage(hello=hello)
        self._done.wait(30)

    def next_fault(self) -> agents_pb2.FaultCommand:
        for message in self.responses:
            if message.WhichOneof("body") == "fault":
                return message.fault
        raise AssertionError("the stream ended without a fault command")

    def close(self) -> None:
        self._done.set()
        self._call.cancel()  # type: ignore[no-untyped-call]


@pytest.fixture
def l4_agent(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> Iterator[SimulatedAgentStream]:
    stream = SimulatedAgentStream(fleet_client, next(n for n in mixed_fleet if n.name == "l4"))
    yield stream
    stream.close()


@pytest.mark.parametrize(
    ("gpu", "fault", "message"),
    [
        (0, "bogus", "unknown fault 'bogus'"),
        (0, "xid=abc", "xid needs an integer"),
        (0, "temperature=nan", "out of range"),
        (7, "lost", "node l4 has no GPU 7 (GPUs: 0, 1)"),
    ],
)
def test_a_bogus_fault_or_gpu_is_invalid_argument(
    fleet_client: Client, l4_agent: SimulatedAgentStream, gpu: int, fault: str, message: str
) -> None:
    request = admin_pb2.InjectFaultRequest(node="l4", gpu_index=gpu, fault=fault)
    with pytest.raises(grpc.RpcError) as raised:
        fleet_client.admin.InjectFault(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


def test_a_good_fault_reaches_the_agent(
    fleet_client: Client, l4_agent: SimulatedAgentStream
) -> None:
    fleet_client.admin.InjectFault(
        admin_pb2.InjectFaultRequest(node="l4", gpu_index=1, fault="xid=79")
    )
    assert l4_agent.next_fault() == agents_pb2.FaultCommand(gpu_index=1, fault="xid=79")
    fleet_client.admin.InjectFault(admin_pb2.InjectFaultRequest(node="l4", gpu_index=1, clear=True))
    assert l4_agent.next_fault() == agents_pb2.FaultCommand(gpu_index=1, clear=True)


def test_the_cli_exits_non_zero_with_the_servers_message(
    fleet_client: Client, l4_agent: SimulatedAgentStream
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, [*fleet_client.cli_args(), "fault", "inject", "l4", "0", "bogus"])
    assert result.exit_code != 0
    assert "unknown fault 'bogus'" in result.output
    assert "injected" not in result.output
    result = runner.invoke(cli, [*fleet_client.cli_args(), "fault", "inject", "l4", "7", "lost"])
    assert result.exit_code != 0 and "has no GPU 7" in result.output
