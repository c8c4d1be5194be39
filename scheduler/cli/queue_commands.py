"""`gpupool queue` and `gpupool preempt`: what waits, and making room."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from gpupool.v1 import types_pb2
from scheduler.cli import render
from scheduler.cli.admin_commands import CliContext, pass_state


def queue_table(allocations: list[types_pb2.Allocation], now: datetime) -> Table:
    table = Table(title="Pending, in the order the scheduler tries them")
    for column in ("POS", "ID", "TENANT", "PRIORITY", "WHAT", "AGE", "RESUME FROM", "REASON"):
        table.add_column(column)
    for position, allocation in enumerate(allocations, start=1):
        row = dict(render.allocation_row(allocation, now))
        table.add_row(
            str(position),
            allocation.id,
            allocation.tenant,
            allocation.priority_class,
            row["WHAT"],
            row["AGE"],
            allocation.resume_from or "-",
            row["REASON"] or allocation.message,
        )
    return table


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_state
def queue(state: CliContext, limit: int) -> None:
    """Pending allocations in placement order, with their reasons."""
    found = state.client().list_queue(limit)
    state.show(found, lambda: queue_table(found, datetime.now(UTC)))


@click.command()
@click.argument("allocation_id", metavar="ID")
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=0,
    help="Seconds to checkpoint before revocation (default: the priority class's).",
)
@pass_state
def preempt(state: CliContext, allocation_id: str, grace: int) -> None:
    """Ask an allocation's holder to checkpoint and give its GPUs back; it is requeued."""
    result = state.client().preempt(allocation_id, grace)
    deadline = result.preemption_deadline.ToDatetime(tzinfo=UTC).isoformat()
    state.say(result, f"{render.allocation_action_line(result)} (checkpoint by {deadline})")
