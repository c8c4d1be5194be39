"""`gpupool agent run`: the long-running process on every GPU host."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

import click

from agent.nvml import NvmlBackend, RealNvml, SimulatedNvml
from agent.runner import Agent, AgentSettings
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE
from scheduler.fleetfile import load_fleet


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = val
    return labels


@click.group()
def agent() -> None:
    """The node agent."""


@agent.command("run")
@click.option("--scheduler", "scheduler_address", required=True, metavar="HOST:PORT")
@click.option("--node-name", default=None, help="Defaults to the host name (or --node).")
@click.option(
    "--simulate",
    "fleet_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Simulate this node's GPUs from a fleet file instead of NVML.",
)
@click.option("--node", "sim_node", default=None, help="With --simulate: the fleet file's node.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".gpupool/agent"),
    show_default=True,
    help="Where the agent remembers what it runs, across restarts.",
)
@click.option(
    "--worker-templates",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=DEFAULT_TEMPLATES_FILE,
    show_default=True,
    help="Worker templates this agent can launch (the scheduler's file).",
)
@click.option(
    "--hostname",
    default=None,
    help="Where other nodes reach this one (MASTER_ADDR of gangs whose rank 0 runs here). "
    "Defaults to the host name; with --simulate to 127.0.0.1, where simulated nodes live.",
)
@click.option(
    "--nccl-socket-ifname",
    default="",
    help="NCCL_SOCKET_IFNAME for workers (left to NCCL when unset).",
)
def run(
    scheduler_address: str,
    node_name: str | None,
    fleet_file: Path | None,
    sim_node: str | None,
    labels: tuple[str, ...],
    state_dir: Path,
    worker_templates: Path,
    hostname: str | None,
    nccl_socket_ifname: str,
) -> None:
    """Discover GPUs, connect to the scheduler and stay connected."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    backend: NvmlBackend
    extra_labels = _labels(labels)
    if fleet_file is not None:
        if not sim_node:
            raise click.UsageError("--simulate needs --node NAME (a node of the fleet file)")
        nodes = {n.name: n for n in load_fleet(fleet_file)}
        if sim_node not in nodes:
            raise click.UsageError(
                f"{fleet_file} has no node {sim_node!r} (it has {', '.join(nodes)})"
            )
        backend = SimulatedNvml(nodes[sim_node])
        extra_labels = {**nodes[sim_node].labels, **extra_labels}
        name = node_name or sim_node
        hostname = hostname or "127.0.0.1"
    else:
        backend = RealNvml()
        name = node_name or socket.gethostname()
        hostname = hostname or socket.getfqdn()
    settings = AgentSettings(
        scheduler=scheduler_address,
        node_name=name,
        hostname=hostname,
        labels=extra_labels,
        state_dir=state_dir,
        worker_templates_file=worker_templates,
        nccl_socket_ifname=nccl_socket_ifname,
    )
    runner = Agent(settings, backend)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    thread = threading.Thread(target=runner.run, name="agent")
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)
    backend.close()
