"""`gpupool fault inject|clear`: make a simulated agent pretend a GPU fault."""

from __future__ import annotations

import click

from scheduler.cli.admin_commands import CliContext, pass_state

FAULT_HELP = (
    "xid=N (e.g. 79 fell off the bus, 48 double-bit ECC, 63/64 row remap, 13 application), "
    "temperature=C, ecc=N (uncorrectable), lost, slowdown, remap_failure, retired_pending"
)


@click.group()
def fault() -> None:
    """Inject or clear faults on simulated agents (relayed by the scheduler)."""


@fault.command("inject", help=f"Make GPU index GPU on NODE report FAULT: {FAULT_HELP}.")
@click.argument("node")
@click.argument("gpu", type=click.IntRange(min=0))
@click.argument("fault_spec", metavar="FAULT")
@pass_state
def inject(state: CliContext, node: str, gpu: int, fault_spec: str) -> None:
    state.client().inject_fault(node, gpu, fault_spec, clear=False)
    click.echo(f"{node} GPU {gpu}: injected {fault_spec}")


@fault.command("clear")
@click.argument("node")
@click.argument("gpu", type=click.IntRange(min=0))
@click.argument("fault_spec", metavar="[FAULT]", required=False, default="")
@pass_state
def clear(state: CliContext, node: str, gpu: int, fault_spec: str) -> None:
    """Clear FAULT (or every fault) on GPU index GPU of NODE."""
    state.client().inject_fault(node, gpu, fault_spec, clear=True)
    click.echo(f"{node} GPU {gpu}: cleared {fault_spec or 'all faults'}")
