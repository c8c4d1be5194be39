"""The `gpupool` command: global options, then operator and server commands."""

from __future__ import annotations

import click

from agent.cli import agent
from scheduler.cli.admin_commands import OUTPUT_FORMATS, CliContext, node, register_admin_commands
from scheduler.cli.fault_commands import fault
from scheduler.cli.model_commands import models
from scheduler.cli.queue_commands import interrupt, preempt, queue, tenant, tenants
from scheduler.cli.server_commands import register_server_commands
from scheduler.cli.sim_command import sim
from scheduler.cli.worker_commands import logs

DEFAULT_SCHEDULER = "127.0.0.1:50051"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--scheduler",
    "target",
    envvar="GPUPOOL_SCHEDULER",
    default=DEFAULT_SCHEDULER,
    show_default=True,
    show_envvar=True,
    metavar="HOST:PORT",
    help="Scheduler gRPC address.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="Human tables or machine-readable JSON.",
)
@click.pass_context
def cli(ctx: click.Context, target: str, output: str) -> None:
    """gpupool: a GPU pool scheduler for LLM inference fleets."""
    state = CliContext(target=target, output=output)
    ctx.obj = state
    ctx.call_on_close(state.close)


register_admin_commands(cli)
register_server_commands(cli)
cli.add_command(fault)
cli.add_command(queue)
cli.add_command(preempt)
cli.add_command(tenants)
cli.add_command(tenant)
cli.add_command(models)
node.add_command(interrupt)
cli.add_command(agent)
cli.add_command(logs)
cli.add_command(sim)


def main() -> None:
    cli(prog_name="gpupool")


if __name__ == "__main__":
    main()
