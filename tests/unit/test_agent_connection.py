"""`--scheduler`: what an agent dials for one replica, a list, or a DNS name."""

from __future__ import annotations

import pytest

from agent.connection import scheduler_target, server_name


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("10.0.0.5:50052", "10.0.0.5:50052"),
        ("scheduler.example:50052", "scheduler.example:50052"),
        ("dns:///gpupool-agents.gpupool.svc:50052", "dns:///gpupool-agents.gpupool.svc:50052"),
        ("127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),
        (" 10.0.0.5:1 , 10.0.0.6:1 ", "ipv4:10.0.0.5:1,10.0.0.6:1"),
        ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2"),
        ("ipv4:10.0.0.5:1,10.0.0.6:1", "ipv4:10.0.0.5:1,10.0.0.6:1"),
    ],
)
def test_targets(given: str, target: str) -> None:
    assert scheduler_target(given) == target


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "give the scheduler's agent address"),
        ("a.example:1,b.example:1", "dns:///NAME:PORT"),
        ("10.0.0.5:1,[::1]:1", "not both"),
        ("10.0.0.5", "not HOST:PORT"),
    ],
)
def test_bad_targets_say_what_to_write(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        scheduler_target(given)


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("ipv4:127.0.0.1:1,127.0.0.1:2", "127.0.0.1"),
        ("ipv4:10.0.0.5:1", "10.0.0.5"),
        ("ipv4:10.0.0.5:1,10.0.0.6:1", ""),
        ("dns:///gpupool-agents:50052", ""),
        ("10.0.0.5:1", ""),
    ],
)
def test_server_name_for_address_lists(target: str, name: str) -> None:
    assert server_name(target) == name
