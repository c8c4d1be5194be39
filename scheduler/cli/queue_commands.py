"""`gpupool queue`, `gpupool preempt` and `gpupool tenants`: who waits, who
borrows, and making room."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from gpupool.v1 import admin_pb2, types_pb2
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


def tenants_table(tenants: list[admin_pb2.Tenant]) -> Table:
    table = Table(title="Tenants (normalised GPU units, A100-80GB = 1.0)")
    for column in ("TENANT", "QUOTA", "WEIGHT", "USED", "BORROWED", "PENDING", "PRIORITIES"):
        table.add_column(column)
    for t in tenants:
        table.add_row(
            t.name,
            f"{t.quota_units:g}",
            f"{t.weight:g}",
            f"{t.used_units:.2f}",
            f"{t.borrowed_units:.2f}",
            str(t.pending),
            ",".join(t.priority_classes),
        )
    return table


@click.command()
@pass_state
def tenants(state: CliContext) -> None:
    """Each tenant's quota, weight, usage and what it borrows over quota."""
    found = state.client().list_tenants()
    state.show(found, lambda: tenants_table(found))


@click.group()
def tenant() -> None:
    """Change one tenant."""


@tenant.command("set")
@click.argument("name")
@click.option("--quota", type=click.FloatRange(min=0), required=True, help="Guaranteed units.")
@click.option(
    "--weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True
)
@pass_state
def tenant_set(state: CliContext, name: str, quota: float, weight: float) -> None:
    """Set a tenant's guaranteed quota and fair-share weight."""
    result = state.client().set_tenant_quota(name, quota, weight)
    state.say(
        result, f"tenant {result.name}: quota {result.quota_units:g}, weight {result.weight:g}"
    )


@tenant.command("priority-classes")
@click.argument("name")
@click.argument("classes", nargs=-1)
@click.option("--reset", is_flag=True, help="Back to the default: every class but critical.")
@pass_state
def tenant_priority_classes(
    state: CliContext, name: str, classes: tuple[str, ...], reset: bool
) -> None:
    """Set the priority classes NAME's service tokens may use (e.g. critical high normal batch)."""
    if not classes and not reset:
        raise click.UsageError("name the classes to grant, or --reset")
    result = state.client().set_tenant_priority_classes(name, list(classes), reset)
    state.say(result, f"tenant {result.name} may use: {', '.join(result.priority_classes)}")


def parse_duration(text: str) -> int:
    """'120', '120s', '2m' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not value.isdigit() or int(value) == 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 120s or 2m")
    return int(value) * units[unit]


@click.command("interrupt")
@click.argument("name")
@click.option("--in", "notice", required=True, metavar="DURATION", help="e.g. 120s or 2m")
@pass_state
def interrupt(state: CliContext, name: str, notice: str) -> None:
    """A spot interruption notice: everything on NODE checkpoints and moves."""
    result = state.client().interrupt_node(name, parse_duration(notice))
    asked = f"{result.preempted} allocation(s) asked to checkpoint"
    line = f"{render.node_action_line(result.node)}; {asked}"
    state.say(result, line)
