"""`gpupool top`: a live full-screen view of the fleet, fed by WatchFleet.

The scheduler pushes a snapshot whenever allocations or nodes change; this
only draws the latest one (rich Live on the alternate screen). `q` quits
(or Ctrl-C); without a terminal on stdin it draws until the stream ends.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import grpc
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gpupool.v1 import admin_pb2, types_pb2
from scheduler.cli import render
from scheduler.cli.admin_commands import CliContext
from scheduler.cli.client import translate_rpc_error

BAR_FREE, BAR_PART, BAR_FULL, BAR_MIG, BAR_DOWN = "·", "▒", "█", "▚", "✗"


def gpu_cell(gpu: types_pb2.Gpu) -> tuple[str, str]:
    """One character and its style for a GPU's use."""
    if gpu.health == types_pb2.GPU_HEALTH_UNHEALTHY:
        return BAR_DOWN, "red"
    if gpu.mig_enabled:
        used = sum(1 for c in gpu.mig_slot_map if c != ".")
        return (BAR_MIG, "magenta") if used else (BAR_FREE, "dim")
    if gpu.used_milli >= 1000:
        return BAR_FULL, "green"
    if gpu.used_milli > 0 or gpu.used_memory_mib > 0:
        return BAR_PART, "yellow"
    return BAR_FREE, "dim"


def gpu_bar(gpus: list[types_pb2.Gpu]) -> Text:
    bar = Text()
    for gpu in gpus:
        char, style = gpu_cell(gpu)
        bar.append(char, style)
    return bar


def used_gpus(gpus: list[types_pb2.Gpu]) -> float:
    """GPU-equivalents in use: milli-GPU / 1000; on MIG, occupied memory slices."""
    total = 0.0
    for gpu in gpus:
        if gpu.mig_enabled:
            slots = gpu.mig_slot_map
            total += sum(1 for c in slots if c != ".") / len(slots) if slots else 0.0
        else:
            total += gpu.used_milli / 1000
    return total


def nodes_table(nodes: list[types_pb2.Node], now: datetime) -> Table:
    table = Table(title="GPUs by node and model", title_justify="left", expand=True)
    for column in ("NODE", "STATE", "MODEL", "USE", "USED", "ALLOCS", "HEARTBEAT"):
        table.add_column(column, no_wrap=True)
    rows = []
    for node in nodes:
        by_model: dict[str, list[types_pb2.Gpu]] = {}
        for gpu in sorted(node.gpus, key=lambda g: g.index):
            by_model.setdefault(gpu.model, []).append(gpu)
        for model, gpus in by_model.items():
            rows.append((model, node, gpus))
    for model, node, gpus in sorted(rows, key=lambda r: (r[0], r[1].name)):
        table.add_row(
            node.name,
            render.node_state_label(node.state),
            model,
            gpu_bar(gpus),
            f"{used_gpus(gpus):.1f}/{len(gpus)}",
            str(node.allocation_count),
            render.format_age(node.last_heartbeat_at, now),
        )
    return table


def queue_table(view: admin_pb2.WatchFleetResponse, now: datetime) -> Table:
    title = f"Pending queue ({view.pending_count} waiting)"
    table = Table(title=title, title_justify="left", expand=True)
    for column in ("#", "ID", "TENANT", "WANTS", "PRIORITY", "WAITING", "WHY"):
        table.add_column(column, no_wrap=column != "WHY")
    for position, allocation in enumerate(view.queue, 1):
        table.add_row(
            str(position),
            allocation.id,
            allocation.tenant,
            render.describe_resources(allocation),
            allocation.priority_class,
            render.format_age(allocation.created_at, now),
            render.first_pending_reason(allocation) or allocation.message,
        )
    return table


def events_table(view: admin_pb2.WatchFleetResponse) -> Table:
    table = Table(title="Recent events", title_justify="left", expand=True)
    for column in ("TIME", "ALLOCATION", "TENANT", "STATE", "MESSAGE"):
        table.add_column(column, no_wrap=column != "MESSAGE")
    for item in view.events:
        table.add_row(
            render.format_time(item.event.at),
            item.allocation_id,
            item.tenant,
            render.allocation_state_label(item.event.state),
            item.event.message,
        )
    return table


def screen(view: admin_pb2.WatchFleetResponse | None, target: str) -> RenderableType:
    now = datetime.now(UTC)
    header = Text.assemble(
        ("gpupool top", "bold"), f"  {target}  {now:%H:%M:%S}  ", ("q", "bold"), " quits"
    )
    if view is None:
        return Group(header, Text("waiting for the scheduler…"))
    gpus = sum(len(n.gpus) for n in view.nodes)
    used = sum(used_gpus(list(n.gpus)) for n in view.nodes)
    header.append(f"   {len(view.nodes)} nodes, {used:.1f}/{gpus} GPUs in use")
    legend = Text.assemble(
        (BAR_FULL, "green"), " whole  ", (BAR_PART, "yellow"), " fraction  ",
        (BAR_MIG, "magenta"), " MIG  ", (BAR_FREE, "dim"), " free  ", (BAR_DOWN, "red"),
        " unhealthy",
    )  # fmt: skip
    return Group(
        header, nodes_table(list(view.nodes), now), legend, queue_table(view, now),
        events_table(view),
    )  # fmt: skip


_LIMIT = click.IntRange(1, 200)


@contextmanager
def keys() -> Iterator[Any]:
    """stdin in cbreak mode (single keys, no echo) while the view runs."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command()
@click.option("--queue", "queue_limit", type=click.IntRange(1, 200), default=15, show_default=True)
@click.option(
    "--events", "events_limit", type=click.IntRange(1, 200), default=10, show_default=True
)
@click.pass_obj
def top(state: CliContext, queue_limit: int, events_limit: int) -> None:
    """A live view of nodes, GPU use, the pending queue and recent events; q quits."""
    client = state.client()
    stream = client.watch_fleet(queue_limit, events_limit)
    latest: list[admin_pb2.WatchFleetResponse] = []
    changed = threading.Event()
    failure: list[grpc.RpcError] = []

    def receive() -> None:
        try:
            for view in stream:
                latest[:] = [view]
                changed.set()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                failure.append(error)
        finally:
            changed.set()

    reader = threading.Thread(target=receive, name="watch-fleet", daemon=True)
    reader.start()
    console = Console()
    try:
        with (
            keys() as fd,
            Live(
                screen(None, client.target), console=console, screen=True, auto_refresh=False
            ) as live,
        ):
            while reader.is_alive():
                if fd is not None:
                    ready, _, _ = select.select([fd], [], [], 0.1)
                    if ready and os.read(fd, 1) in (b"q", b"Q"):
                        break
                if changed.wait(0 if fd is not None else 0.1):
                    changed.clear()
                    live.update(screen(latest[0] if latest else None, client.target))
                    live.refresh()
    except KeyboardInterrupt:
        pass
    finally:
        stream.cancel()
    if failure:
        raise translate_rpc_error(failure[0], client.target)
