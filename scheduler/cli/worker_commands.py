"""`gpupool logs`: a worker's log, relayed from the agent of its node."""

from __future__ import annotations

import sys

import click

from scheduler.cli.admin_commands import EXIT_INTERRUPTED, CliContext, pass_state


@click.command()
@click.argument("allocation_id", metavar="ALLOC")
@click.option("--rank", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output until Ctrl-C.")
@click.option(
    "--tail",
    "tail_bytes",
    type=click.IntRange(min=0),
    default=0,
    help="Start this many bytes before the end (0: the whole log).",
)
@pass_state
def logs(state: CliContext, allocation_id: str, rank: int, follow: bool, tail_bytes: int) -> None:
    """Print the log of one rank's worker (stdout and stderr, all restarts)."""
    out = sys.stdout.buffer
    try:
        for data in state.client().worker_logs(allocation_id, rank, tail_bytes, follow):
            out.write(data)
            out.flush()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
