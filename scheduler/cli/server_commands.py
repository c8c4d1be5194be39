"""`gpupool serve` (one scheduler replica) and `gpupool up` (the whole
system on one machine: embedded PostgreSQL, scheduler, simulated fleet)."""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import Progress

from scheduler.fleetfile import load_fleet

if TYPE_CHECKING:
    from scheduler.app import SchedulerApp

DEFAULT_DATA_DIR = Path(".gpupool")
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"

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
_listen_option = click.option("--listen", default=DEFAULT_LISTEN, show_default=True)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait()


def _start(console: Console, database_url: str | None, data_dir: Path, listen: str) -> SchedulerApp:
    # Imported here, not at the top: the admin commands share this CLI and
    # should not pay for loading the server stack (SQLAlchemy, pgserver, …).
    from scheduler.app import SchedulerApp, SchedulerSettings

    # pgserver's platformdirs warns on every start when XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

    settings = SchedulerSettings(database_url=database_url, data_dir=data_dir, listen=listen)
    where = "the given PostgreSQL" if database_url else f"embedded PostgreSQL in {data_dir}"
    with console.status(f"starting the scheduler on {where} (migrations run first)…"):
        app = SchedulerApp(settings)
        app.start()
    return app


@click.command()
@_database_option
@_data_dir_option
@_listen_option
def serve(database_url: str | None, data_dir: Path, listen: str) -> None:
    """Run one scheduler replica until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console = Console(stderr=True)
    app = _start(console, database_url, data_dir, listen)
    console.print(f"scheduler listening on [bold]{app.address}[/]")
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
def up(fleet_file: Path, database_url: str | None, data_dir: Path, listen: str) -> None:
    """Start the scheduler and a simulated fleet; Ctrl-C stops everything."""
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    nodes = load_fleet(fleet_file)
    app = _start(console, database_url, data_dir, listen)
    from scheduler.simfleet import SimulatedFleet  # see _start for why it is imported here

    fleet = SimulatedFleet(app.address, nodes)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("registering simulated nodes", total=len(nodes))
        fleet.register(lambda node: progress.advance(task))
    gpus = sum(len(n.gpus) for n in nodes)
    console.print(
        f"[bold green]gpupool is up[/]: scheduler on [bold]{app.address}[/], "
        f"{len(nodes)} simulated nodes with {gpus} GPUs from {fleet_file.name}\n"
        "Try, in another terminal:\n"
        "  gpupool nodes\n"
        "  gpupool gpus --node a100-40-mig\n"
        "  gpupool allocate --tenant demo --whole 4 --gpu-model H100-80GB\n"
        "  gpupool allocate --tenant demo --mig 3g.20gb\n"
        "  gpupool allocations\n"
        "Ctrl-C stops everything."
    )
    _wait_for_signal()
    console.print("stopping…")
    fleet.stop()
    app.stop()


def register_server_commands(group: click.Group) -> None:
    """Add the commands that run the scheduler to the CLI group."""
    group.add_command(serve)
    group.add_command(up)
