"""`gpupool serve` (one scheduler replica) and `gpupool up` (the whole
system on one machine: embedded PostgreSQL, scheduler, simulated fleet)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import Progress

from scheduler.cli.stopping import StopSignals, stop_processes
from scheduler.fleetfile import SimulatedNode, load_fleet
from scheduler.placement.policies import POLICY_NAMES

if TYPE_CHECKING:
    from scheduler.app import SchedulerApp

DEFAULT_DATA_DIR = Path(".gpupool")
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_AGENT_LISTEN = "127.0.0.1:50052"
DEFAULT_FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"
# `gpupool up` stops within 10 s: agents get this long after SIGTERM, then the
# scheduler drains its calls for its grace.
UP_AGENT_STOP_S = 5.0
UP_SCHEDULER_GRACE_S = 1.0

_database_option = click.option(
    "--database-url",
    envvar="GPUPOOL_DATABASE_URL",
    default=None,
    help="PostgreSQL URL; without one an embedded PostgreSQL runs in --data-dir.",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the embedded PostgreSQL keeps its data.",
)
_listen_option = click.option(
    "--listen", default=DEFAULT_LISTEN, show_default=True, help="The API port (TLS, tokens)."
)
_agent_listen_option = click.option(
    "--agent-listen",
    default=DEFAULT_AGENT_LISTEN,
    show_default=True,
    help="The agents' port (mutual TLS, client certificates).",
)
_insecure_option = click.option(
    "--insecure",
    is_flag=True,
    help="Plaintext and no authentication: anyone who can connect is an admin. "
    "Never in production.",
)
_file = click.Path(path_type=Path, exists=True, dir_okay=False)
_tls_cert_option = click.option(
    "--tls-cert", type=_file, envvar="GPUPOOL_TLS_CERT", help="Serving certificate (PEM)."
)
_tls_key_option = click.option(
    "--tls-key", type=_file, envvar="GPUPOOL_TLS_KEY", help="Its private key (PEM)."
)
_client_ca_option = click.option(
    "--client-ca",
    type=_file,
    envvar="GPUPOOL_CLIENT_CA",
    help="CA of agent and admin client certificates [default, with none of the three: "
    "a local CA in --data-dir].",
)
_tls_san_option = click.option(
    "--tls-san",
    "tls_sans",
    multiple=True,
    metavar="NAME",
    help="Extra name or IP for the local CA's serving certificate (repeatable).",
)
_priorities_option = click.option(
    "--priority-classes",
    "priority_classes",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="GPUPOOL_PRIORITY_CLASSES",
    default=None,
    help="YAML adding or overriding priority classes (see deploy/priority-classes.yaml).",
)

_placement_policy_option = click.option(
    "--placement-policy",
    "placement_policy",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="GPUPOOL_PLACEMENT_POLICY",
    default=None,
    help="YAML of GPU model tiers per workload class (see deploy/placement-policy.yaml) "
    "[default: the built-in matrix].",
)
_packing_option = click.option(
    "--packing-policy",
    type=click.Choice(POLICY_NAMES),
    envvar="GPUPOOL_PACKING_POLICY",
    default="default",
    show_default=True,
    help="How fractional and whole-GPU requests are packed (fgd: fragmentation-aware).",
)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait()


@dataclass(frozen=True)
class Transport:
    """How the replica listens and proves itself (the security options)."""

    agent_listen: str = DEFAULT_AGENT_LISTEN
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    tls_sans: tuple[str, ...] = ()


def _transport_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        (
            _agent_listen_option,
            _insecure_option,
            _tls_cert_option,
            _tls_key_option,
            _client_ca_option,
            _tls_san_option,
        )
    ):
        command = option(command)
    return command


@dataclass(frozen=True)
class Liveness:
    """How fast silent nodes and a silent leader are given up on (serve's options)."""

    heartbeat_interval_s: float = 10.0
    node_timeout_s: float = 40.0
    node_grace_s: float = 30.0
    leader_lease_ttl_s: float = 5.0


def _liveness_options(command: Callable[..., None]) -> Callable[..., None]:
    seconds = click.FloatRange(min=0.1, max=3600)
    options = (
        (
            "--heartbeat-interval",
            "heartbeat_interval",
            10.0,
            "Agents heartbeat this often (health changes go at once).",
        ),
        (
            "--node-timeout",
            "node_timeout",
            40.0,
            "A node silent this long is unreachable.",
        ),
        (
            "--node-grace",
            "node_grace",
            30.0,
            "Its work moves this long after; agents cut off from every replica stop "
            "their workers before that (self-fencing).",
        ),
        (
            "--leader-lease-ttl",
            "leader_lease_ttl",
            5.0,
            "A leader that has not renewed its lease this long is replaced.",
        ),
    )
    for flag, name, default, text in reversed(options):
        command = click.option(
            flag,
            name,
            type=seconds,
            default=default,
            show_default=True,
            metavar="SECONDS",
            help=text,
        )(command)
    return command


def _start(
    console: Console,
    database_url: str | None,
    data_dir: Path,
    listen: str,
    transport: Transport,
    priority_classes: Path | None = None,
    placement_policy: Path | None = None,
    worker_templates: Path | None = None,
    rendezvous_ports: tuple[int, int] | None = None,
    packing_policy: str = "default",
    max_pending_per_tenant: int | None = None,
    liveness: Liveness = Liveness(),
) -> SchedulerApp:
    # Imported here, not at the top: the admin commands share this CLI and
    # should not pay for loading the server stack (SQLAlchemy, pgserver, …).
    # pgserver's platformdirs warns on every start when XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from scheduler.app import SchedulerApp, SchedulerSettings

    settings = SchedulerSettings(
        database_url=database_url,
        data_dir=data_dir,
        listen=listen,
        agent_listen=transport.agent_listen,
        insecure=transport.insecure,
        tls_cert=transport.tls_cert,
        tls_key=transport.tls_key,
        client_ca=transport.client_ca,
        tls_hosts=transport.tls_sans,
        priority_classes_file=priority_classes,
        placement_policy_file=placement_policy,
        packing_policy=packing_policy,
        heartbeat_interval_s=liveness.heartbeat_interval_s,
        heartbeat_timeout_s=liveness.node_timeout_s,
        failover_grace_s=liveness.node_grace_s,
        leader_lease_ttl_s=liveness.leader_lease_ttl_s,
    )
    if worker_templates is not None:
        settings.worker_templates_file = worker_templates
    if rendezvous_ports is not None:
        settings.rendezvous_ports = rendezvous_ports
    if max_pending_per_tenant is not None:
        settings.max_pending_per_tenant = max_pending_per_tenant
    where = "the given PostgreSQL" if database_url else f"embedded PostgreSQL in {data_dir}"
    with console.status(f"starting the scheduler on {where} (migrations run first)…"):
        app = SchedulerApp(settings)
        app.start()
    if transport.insecure:
        console.print(
            "[bold red]INSECURE[/]: plaintext, no authentication: anyone who can reach "
            f"{app.address} owns the fleet"
        )
    return app


def _credentials_line(app: SchedulerApp) -> str:
    if app.admin_config is not None:
        return f"admin credentials in {app.admin_config} (the CLI finds them from this directory)"
    if app.settings.insecure:
        return "no credentials (--insecure)"
    return "TLS with your certificates: admins use a client certificate (see README Security)"


@click.command()
@_database_option
@_data_dir_option
@_listen_option
@_transport_options
@_priorities_option
@_placement_policy_option
@click.option(
    "--worker-templates",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="GPUPOOL_WORKER_TEMPLATES",
    default=None,
    help="Worker templates requests may name (default: deploy/worker-templates.yaml).",
)
@click.option(
    "--rendezvous-ports",
    default="29500-29999",
    show_default=True,
    metavar="LOW-HIGH",
    help="Ports handed out as MASTER_PORT on rank 0's node.",
)
@_packing_option
@click.option(
    "--max-pending-per-tenant",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Allocations one tenant may have waiting; more are RESOURCE_EXHAUSTED.",
)
@_liveness_options
def serve(
    database_url: str | None,
    data_dir: Path,
    listen: str,
    agent_listen: str,
    insecure: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    tls_sans: tuple[str, ...],
    priority_classes: Path | None,
    placement_policy: Path | None,
    worker_templates: Path | None,
    rendezvous_ports: str,
    packing_policy: str,
    max_pending_per_tenant: int,
    heartbeat_interval: float,
    node_timeout: float,
    node_grace: float,
    leader_lease_ttl: float,
) -> None:
    """Run one scheduler replica until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console = Console(stderr=True)
    low, sep, high = rendezvous_ports.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or int(low) > int(high):
        raise click.BadParameter(
            f"{rendezvous_ports!r} is not LOW-HIGH", param_hint="--rendezvous-ports"
        )
    transport = Transport(agent_listen, insecure, tls_cert, tls_key, client_ca, tls_sans)
    app = _start(
        console,
        database_url,
        data_dir,
        listen,
        transport,
        priority_classes,
        placement_policy,
        worker_templates,
        (int(low), int(high)),
        packing_policy,
        max_pending_per_tenant,
        Liveness(heartbeat_interval, node_timeout, node_grace, leader_lease_ttl),
    )
    console.print(
        f"scheduler listening on [bold]{app.address}[/] (agents: {app.agent_address or 'none'}); "
        f"{_credentials_line(app)}"
    )
    _wait_for_signal()
    console.print("stopping…")
    app.stop()


@click.command()
@click.option(
    "--fleet",
    "fleet_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=DEFAULT_FLEET,
    show_default=True,
    help="Fleet file of the simulated nodes.",
)
@_database_option
@_data_dir_option
@_listen_option
@_agent_listen_option
@_insecure_option
@_placement_policy_option
@_packing_option
def up(
    fleet_file: Path,
    database_url: str | None,
    data_dir: Path,
    listen: str,
    agent_listen: str,
    insecure: bool,
    placement_policy: Path | None,
    packing_policy: str,
) -> None:
    """Start the scheduler and one simulated agent per node; Ctrl-C stops everything.

    Secure by default: a local CA in --data-dir, a certificate per simulated
    agent, and an admin token in --data-dir/admin.yaml for the CLI."""
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    nodes = load_fleet(fleet_file)
    # From here on a signal only counts (no KeyboardInterrupt mid-start, no
    # death by SIGTERM with agents left running); every exit goes through the
    # finally below, which reaps what was started.
    signals = StopSignals()
    signals.install()
    app: SchedulerApp | None = None
    agents: list[subprocess.Popen[bytes]] = []
    try:
        app = _start(
            console,
            database_url,
            data_dir,
            listen,
            Transport(agent_listen, insecure),
            placement_policy=placement_policy,
            packing_policy=packing_policy,
        )
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            if signals.count:
                break
            agents.append(_start_agent(app, fleet_file, node.name, data_dir, logs))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("starting simulated agents", total=len(nodes))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not signals.count:
                connected = len(app.agents.connected_nodes())
                progress.update(task, completed=connected)
                if connected == len(nodes):
                    break
                time.sleep(0.2)
        if not signals.count:
            _print_up(console, app, nodes, fleet_file, logs)
            signals.wait()
        console.print("stopping… (Ctrl-C again to kill the agents at once)")
    finally:
        # Agents get UP_AGENT_STOP_S to exit after SIGTERM (none if a second
        # signal came), then SIGKILL; the scheduler stops after them.
        stop_processes(agents, signals, UP_AGENT_STOP_S)
        if app is not None:
            app.stop(grace=UP_SCHEDULER_GRACE_S)


def _print_up(
    console: Console, app: SchedulerApp, nodes: list[SimulatedNode], fleet_file: Path, logs: Path
) -> None:
    gpus = sum(len(n.gpus) for n in nodes)
    console.print(
        f"[bold green]gpupool is up[/]: scheduler on [bold]{app.address}[/], "
        f"{len(app.agents.connected_nodes())}/{len(nodes)} simulated agents with {gpus} GPUs "
        f"from {fleet_file.name} (agent logs in {logs}); {_credentials_line(app)}\n"
        "Try, in another terminal in this directory:\n"
        "  gpupool nodes\n"
        "  gpupool gpus --node a100-40-mig\n"
        "  gpupool allocate --tenant demo --whole 4 --gpu-model H100-80GB\n"
        "  gpupool allocate --tenant demo --mig 3g.20gb\n"
        "  gpupool allocate --tenant demo --layout tp=8,pp=2 --gpu-model H100-80GB\n"
        "  gpupool allocate --tenant demo --serve llama-3.1-70b --dtype fp16\n"
        "  gpupool models\n"
        "  gpupool fault inject h100-sxm-0 3 xid=79 && gpupool gpus --node h100-sxm-0\n"
        "  gpupool token create demo-svc --tenant demo --role service\n"
        "  gpupool allocations\n"
        "  gpupool audit\n"
        "Ctrl-C stops everything."
    )


def _start_agent(
    app: SchedulerApp, fleet_file: Path, node: str, data_dir: Path, logs: Path
) -> subprocess.Popen[bytes]:
    from scheduler.security.bootstrap import issue_agent_credentials

    if app.settings.insecure:
        credentials = ["--insecure"]
    else:
        ca, cert, key = issue_agent_credentials(data_dir, node)
        credentials = ["--ca-cert", str(ca), "--cert", str(cert), "--key", str(key)]
    command = [
        sys.executable, "-m", "scheduler.cli.main", "agent", "run",
        "--scheduler", app.agent_address or app.address,
        *credentials,
        "--simulate", str(fleet_file),
        "--node", node,
        "--state-dir", str(data_dir / "agents"),
    ]  # fmt: skip
    with (logs / f"agent-{node}.log").open("ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def register_server_commands(group: click.Group) -> None:
    """Add the commands that run the scheduler to the CLI group."""
    group.add_command(serve)
    group.add_command(up)
