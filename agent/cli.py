"""`gpupool agent run`: the long-running process on every GPU host."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import replace
from pathlib import Path

import click

from agent.connection import scheduler_target, server_name
from agent.metrics import AgentGpuCollector, agent_registry
from agent.nvml import NvmlBackend, RealNvml, SimulatedNvml
from agent.runner import Agent, AgentSettings
from scheduler.cli.stopping import StopSignals
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE
from scheduler.fleetfile import load_fleet
from scheduler.logs import LOG_FORMATS, configure_logging
from scheduler.security.channels import ClientCredentials, serve_metrics
from scheduler.security.pki import KeyPair


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


def _credentials(
    insecure: bool, ca_cert: Path | None, cert: Path | None, key: Path | None
) -> ClientCredentials:
    if insecure:
        logging.getLogger(__name__).warning(
            "INSECURE: plaintext to the scheduler; the scheduler cannot tell which node this is"
        )
        return ClientCredentials(insecure=True)
    if ca_cert is None or cert is None or key is None:
        raise click.UsageError(
            "an agent needs --ca-cert, --cert and --key (make them on the scheduler's host with "
            "`gpupool certs issue-agent NODE`), or --insecure for a plaintext scheduler"
        )
    return ClientCredentials(ca_pem=ca_cert.read_bytes(), certificate=KeyPair.read(key, cert))


_file = click.Path(path_type=Path, exists=True, dir_okay=False)


@agent.command("run")
@click.option(
    "--scheduler",
    "scheduler_address",
    required=True,
    metavar="HOST:PORT",
    help="The scheduler replicas' agent ports (mutual TLS): HOST:PORT, a list of IP:PORT, "
    "or dns:///NAME:PORT for a name that resolves to every replica (a headless Service).",
)
@click.option(
    "--ca-cert", type=_file, envvar="GPUPOOL_CA_CERT", help="CA that signed the scheduler."
)
@click.option("--cert", type=_file, envvar="GPUPOOL_AGENT_CERT", help="This node's certificate.")
@click.option("--key", type=_file, envvar="GPUPOOL_AGENT_KEY", help="This node's private key.")
@click.option("--insecure", is_flag=True, help="Plaintext (only to a scheduler run --insecure).")
@click.option(
    "--tls-server-name",
    default="",
    help="Check the replicas' certificates against this name (with a list of addresses).",
)
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
@click.option(
    "--metrics-listen",
    default="",
    metavar="HOST:PORT",
    envvar="GPUPOOL_METRICS_LISTEN",
    help="Serve Prometheus metrics (dcgm-exporter names) here; plain HTTP, metrics only.",
)
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True)
def run(
    scheduler_address: str,
    ca_cert: Path | None,
    cert: Path | None,
    key: Path | None,
    insecure: bool,
    tls_server_name: str,
    node_name: str | None,
    fleet_file: Path | None,
    sim_node: str | None,
    labels: tuple[str, ...],
    state_dir: Path,
    worker_templates: Path,
    hostname: str | None,
    nccl_socket_ifname: str,
    metrics_listen: str,
    log_format: str,
) -> None:
    """Discover GPUs, connect to the scheduler and stay connected."""
    configure_logging(log_format)
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
    try:
        target = scheduler_target(scheduler_address)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler") from None
    credentials = _credentials(insecure, ca_cert, cert, key)
    if tls_server_name:
        credentials = replace(credentials, server_name=tls_server_name)
    elif not insecure and "," in target and not server_name(target):
        raise click.UsageError(
            "--scheduler lists replicas on different hosts: give --tls-server-name, the name "
            "every replica's certificate carries, or one DNS name as dns:///NAME:PORT"
        )
    settings = AgentSettings(
        scheduler=scheduler_address,
        node_name=name,
        credentials=credentials,
        hostname=hostname,
        labels=extra_labels,
        state_dir=state_dir,
        worker_templates_file=worker_templates,
        nccl_socket_ifname=nccl_socket_ifname,
    )
    runner = Agent(settings, backend)
    if metrics_listen:
        collector = AgentGpuCollector(
            backend, name, runner.recent_xids, lambda: runner.supervisor.restarts_total
        )
        serve_metrics(metrics_listen, agent_registry(collector))

    # The handler only counts signals; the loop below stops the agent. (It
    # used to call runner.stop() itself: SIGINT from a terminal and SIGTERM
    # from `gpupool up` arriving together re-entered Event.set() and
    # deadlocked on its lock.)
    signals = StopSignals()
    signals.install()
    thread = threading.Thread(target=runner.run, name="agent")
    thread.start()
    stopping = False
    while thread.is_alive():
        thread.join(timeout=0.2)
        if signals.count and not stopping:
            stopping = True
            runner.stop()
    backend.close()
