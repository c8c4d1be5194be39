"""`gpupool serve` (one scheduler replica) and `gpupool up` (the whole
system on one machine: embedded PostgreSQL, scheduler, simulated fleet)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import Progress

from scheduler.allocator.collector import take_over_full_passes
from scheduler.cli.stopping import StopSignals, stop_processes
from scheduler.fleetfile import SimulatedNode, load_fleet
from scheduler.logs import LOG_FORMATS, configure_logging
from scheduler.placement.policies import DEFAULT_PACKING_POLICY, POLICY_NAMES

if TYPE_CHECKING:
    from scheduler.app import SchedulerApp

DEFAULT_DATA_DIR = Path(".gpupool")
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_AGENT_LISTEN = "127.0.0.1:50052"
DEFAULT_UP_METRICS = "127.0.0.1:9464"
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
# The live default is the simulator's: FGD scored inside the best-fit walk, which
# keeps preferring warm nodes and NVLink pairs.
LIVE_PACKING_POLICY = DEFAULT_PACKING_POLICY
_packing_option = click.option(
    "--packing-policy",
    type=click.Choice(POLICY_NAMES),
    envvar="GPUPOOL_PACKING_POLICY",
    default=LIVE_PACKING_POLICY,
    show_default=True,
    help="How fractional, whole-GPU and host-only requests are packed (fgd…: "
    "fragmentation-aware, +walk: inside the best-fit walk with warm-model and NVLink "
    "preferences; default: the plain best-fit walk).",
)


_log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    envvar="GPUPOOL_LOG_FORMAT",
    default="text",
    show_default=True,
    help="Log lines as text or as one JSON object each.",
)
_log_level_option = click.option(
    "--log-level",
    type=click.Choice(("DEBUG", "INFO", "WARNING", "ERROR"), case_sensitive=False),
    envvar="GPUPOOL_LOG_LEVEL",
    default="INFO",
    show_default=True,
    help="gpupool's own loggers (libraries such as APScheduler stay at WARNING).",
)
_library_log_level_option = click.option(
    "--library-log-level",
    type=click.Choice(("DEBUG", "INFO", "WARNING", "ERROR"), case_sensitive=False),
    envvar="GPUPOOL_LIBRARY_LOG_LEVEL",
    default="WARNING",
    show_default=True,
    help="APScheduler, gRPC, SQLAlchemy, alembic, psycopg.",
)


@dataclass(frozen=True)
class Metrics:
    """Where the replica serves Prometheus metrics ("": nowhere)."""

    listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None


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
    packing_policy: str = LIVE_PACKING_POLICY,
    max_pending_per_tenant: int | None = None,
    metrics: Metrics | None = None,
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
    if metrics is not None:
        settings.metrics_listen = metrics.listen
        settings.metrics_tls_cert, settings.metrics_tls_key = metrics.tls_cert, metrics.tls_key
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
@click.option(
    "--metrics-listen",
    default="",
    metavar="HOST:PORT",
    envvar="GPUPOOL_METRICS_LISTEN",
    help="Serve Prometheus metrics here (plain HTTP, metrics only; HTTPS with the two below).",
)
@click.option("--metrics-tls-cert", type=_file, default=None, help="HTTPS for metrics.")
@click.option("--metrics-tls-key", type=_file, default=None, help="Its private key.")
@_log_format_option
@_log_level_option
@_library_log_level_option
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
    metrics_listen: str,
    metrics_tls_cert: Path | None,
    metrics_tls_key: Path | None,
    log_format: str,
    log_level: str,
    library_log_level: str,
    heartbeat_interval: float,
    node_timeout: float,
    node_grace: float,
    leader_lease_ttl: float,
) -> None:
    """Run one scheduler replica until SIGINT/SIGTERM."""
    configure_logging(log_format, log_level, library_log_level)
    if (metrics_tls_cert is None) != (metrics_tls_key is None):
        raise click.UsageError("--metrics-tls-cert and --metrics-tls-key go together")
    console = Console(stderr=True)
    low, sep, high = rendezvous_ports.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or int(low) > int(high):
        raise click.BadParameter(
            f"{rendezvous_ports!r} is not LOW-HIGH", param_hint="--rendezvous-ports"
        )
    transport = Transport(agent_listen, insecure, tls_cert, tls_key, client_ca, tls_sans)
    take_over_full_passes()  # the allocator runs them when idle (allocator/collector.py)
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
        Metrics(metrics_listen, metrics_tls_cert, metrics_tls_key),
        Liveness(heartbeat_interval, node_timeout, node_grace, leader_lease_ttl),
    )
    console.print(
        f"scheduler listening on [bold]{app.address}[/] (agents: {app.agent_address or 'none'}); "
        f"{_credentials_line(app)}{_metrics_line(app)}"
    )
    signals = StopSignals()  # the handler only counts: see scheduler/cli/stopping.py
    signals.install()
    signals.wait()
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
@click.option(
    "--metrics-listen",
    default=DEFAULT_UP_METRICS,
    show_default=True,
    metavar="HOST:PORT",
    help="The scheduler's Prometheus metrics; simulated agents serve theirs on the next "
    "ports (port 0: any free ones). '' for none.",
)
@_log_format_option
@click.option(
    "--demo-deployment",
    is_flag=True,
    help="Also serve llama-3.1-8b as deployment demo/chat on the simulated engine.",
)
def up(
    fleet_file: Path,
    database_url: str | None,
    data_dir: Path,
    listen: str,
    agent_listen: str,
    insecure: bool,
    placement_policy: Path | None,
    packing_policy: str,
    metrics_listen: str,
    log_format: str,
    demo_deployment: bool,
) -> None:
    """Start the scheduler and one simulated agent per node; Ctrl-C stops everything.

    Secure by default: a local CA in --data-dir, a certificate per simulated
    agent, and an admin token in --data-dir/admin.yaml for the CLI."""
    logs = data_dir / "logs"
    # The scheduler's lines go to a file: on a restart with existing data every
    # node is unreachable until its agent is back, and the console shows progress.
    configure_logging(log_format, file=logs / "scheduler.log")
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
            metrics=Metrics(metrics_listen),
        )
        logs.mkdir(parents=True, exist_ok=True)
        for n, node in enumerate(nodes):
            if signals.count:
                break
            metrics = _agent_metrics(app, n)
            agents.append(
                _start_agent(app, fleet_file, node.name, data_dir, logs, metrics, log_format)
            )
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("starting simulated agents", total=len(nodes))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not signals.count:
                connected = len(app.agents.connected_nodes())
                progress.update(task, completed=connected)
                if connected == len(nodes):
                    break
                time.sleep(0.2)
        if demo_deployment:
            # Imported here like the app itself: `gpupool --help` stays light.
            from scheduler.api.deployments_servicer import deployment_spec
            from scheduler.cli.deploy_commands import demo_spec
            from scheduler.domain.callers import SYSTEM
            from scheduler.domain.errors import AlreadyExists

            # Kept in the data directory: a second `up` finds it (and its
            # engines, which the agents adopt) and leaves it as it is.
            with contextlib.suppress(AlreadyExists):
                app.deployments.create(SYSTEM, deployment_spec(demo_spec()))
        if not signals.count:
            _print_up(console, app, nodes, fleet_file, logs, demo_deployment)
            signals.wait()
        console.print("stopping… (Ctrl-C again to kill the agents at once)")
    finally:
        # Agents get UP_AGENT_STOP_S to exit after SIGTERM (none if a second
        # signal came), then SIGKILL; the scheduler stops after them.
        stop_processes(agents, signals, UP_AGENT_STOP_S)
        if app is not None:
            app.stop(grace=UP_SCHEDULER_GRACE_S)


def _print_up(
    console: Console,
    app: SchedulerApp,
    nodes: list[SimulatedNode],
    fleet_file: Path,
    logs: Path,
    demo_deployment: bool = False,
) -> None:
    gpus = sum(len(n.gpus) for n in nodes)
    console.print(
        f"[bold green]gpupool is up[/]: scheduler on [bold]{app.address}[/], "
        f"{len(app.agents.connected_nodes())}/{len(nodes)} simulated agents with {gpus} GPUs "
        f"from {fleet_file.name} (logs in {logs}); {_credentials_line(app)}"
        f"{_metrics_line(app, len(nodes))}\n"
        f"{_path_hint()}"
        "Try, in another terminal in this directory:\n"
        "  gpupool nodes\n"
        "  gpupool top\n"
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
        + (
            "  gpupool deploy get chat        (demo/chat: replicas on the simulated engine)\n"
            "  gpupool deploy history chat\n"
            if demo_deployment
            else "  gpupool deploy create chat --tenant demo --model llama-3.1-8b "
            "--variant fp16:H100-80GB,H200 --min 1 --max 4 --standby 1 "
            "(or: gpupool up --demo-deployment)\n"
        )
        + "Ctrl-C stops everything."
    )


def _metrics_line(app: SchedulerApp, agents: int = 0) -> str:
    if app.metrics is None:
        return ""
    scheme = "https" if app.metrics.tls else "http"
    line = f"; metrics on {scheme}://{app.metrics.address}/metrics"
    port = app.metrics.address.rpartition(":")[2]
    if agents and app.settings.metrics_listen.rpartition(":")[2] != "0":
        line += f" (agents: ports {int(port) + 1}-{int(port) + agents})"
    return line


def _agent_metrics(app: SchedulerApp, n: int) -> str:
    """Simulated agent n's metrics address: the scheduler's next ports."""
    if app.metrics is None:
        return ""
    host, _, port = app.settings.metrics_listen.rpartition(":")
    if port == "0":
        return f"{host}:0"
    return f"{host}:{int(app.metrics.address.rpartition(':')[2]) + 1 + n}"


def _path_hint() -> str:
    """`gpupool` is in the virtualenv's bin/, which is on PATH only once activated."""
    bin_dir = Path(sys.executable).parent
    if shutil.which("gpupool") == str(bin_dir / "gpupool"):
        return ""
    return (
        f"`gpupool` is in {bin_dir}: run `source {bin_dir / 'activate'}` first "
        f"(or call {bin_dir / 'gpupool'}).\n"
    )


def _start_agent(
    app: SchedulerApp,
    fleet_file: Path,
    node: str,
    data_dir: Path,
    logs: Path,
    metrics_listen: str = "",
    log_format: str = "text",
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
        "--log-format", log_format,
    ]  # fmt: skip
    if metrics_listen:
        command += ["--metrics-listen", metrics_listen]
    # Worker templates name their programs (gpupool engine simulate, python3):
    # the ones next to this interpreter come first, venv activated or not.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with (logs / f"agent-{node}.log").open("ab") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PATH": path}
        )


def register_server_commands(group: click.Group) -> None:
    """Add the commands that run the scheduler to the CLI group."""
    group.add_command(serve)
    group.add_command(up)
