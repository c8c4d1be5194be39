"""The `gpupool` command: global options, then operator and server commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.cli import agent
from scheduler.cli.admin_commands import (
    DEFAULT_SCHEDULER,
    OUTPUT_FORMATS,
    CliContext,
    node,
    register_admin_commands,
)
from scheduler.cli.cost_commands import cost, plan_command
from scheduler.cli.deploy_commands import deploy
from scheduler.cli.fault_commands import fault
from scheduler.cli.model_commands import models
from scheduler.cli.probe_command import probe
from scheduler.cli.queue_commands import interrupt, preempt, queue, tenant, tenants
from scheduler.cli.route_commands import gateway, route, route_sim
from scheduler.cli.server_commands import register_server_commands
from scheduler.cli.sim_command import sim
from scheduler.cli.top_command import top
from scheduler.cli.trust_commands import register_trust_commands
from scheduler.cli.worker_commands import logs
from scheduler.serving.engine_sim.cli import engine

_file = click.Path(path_type=Path, exists=True, dir_okay=False)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Credentials: --token/--ca-cert (or a client --cert/--key), else --config, else "
    "./.gpupool/admin.yaml (written by gpupool up), else ~/.config/gpupool/config.yaml.",
)
@click.option(
    "--scheduler",
    "target",
    envvar="GPUPOOL_SCHEDULER",
    default=None,
    show_envvar=True,
    metavar="HOST:PORT",
    help=f"Scheduler gRPC address [default: the client config's, else {DEFAULT_SCHEDULER}].",
)
@click.option("--config", type=_file, envvar="GPUPOOL_CONFIG", help="A client config file.")
@click.option("--token", envvar="GPUPOOL_TOKEN", default="", help="A bearer token.")
@click.option("--ca-cert", type=_file, envvar="GPUPOOL_CA_CERT", help="CA of the scheduler.")
@click.option("--cert", type=_file, envvar="GPUPOOL_CERT", help="A client certificate.")
@click.option("--key", type=_file, envvar="GPUPOOL_KEY", help="Its private key.")
@click.option("--insecure", is_flag=True, envvar="GPUPOOL_INSECURE", help="Plaintext.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="Human tables or machine-readable JSON.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    target: str | None,
    config: Path | None,
    token: str,
    ca_cert: Path | None,
    cert: Path | None,
    key: Path | None,
    insecure: bool,
    output: str,
) -> None:
    """gpupool: a GPU pool scheduler for LLM inference fleets."""
    state = CliContext(
        target=target,
        output=output,
        config=config,
        token=token,
        ca_cert=ca_cert,
        cert=cert,
        key=key,
        insecure=insecure,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


register_admin_commands(cli)
register_server_commands(cli)
register_trust_commands(cli)
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
cli.add_command(probe)
cli.add_command(top)


def hoist_output_option(argv: list[str]) -> list[str]:
    """`gpupool nodes -o json` means `gpupool -o json nodes`: the output
    format is a global option, but people type it last (as with kubectl).
    Only `-o/--output FORMAT` with a known format moves; nothing after `--`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        value = None
        if arg in ("-o", "--output") and i + 1 < len(argv) and argv[i + 1] in OUTPUT_FORMATS:
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--output=") and arg.partition("=")[2] in OUTPUT_FORMATS:
            value, i = arg.partition("=")[2], i + 1
        elif arg.startswith("-o") and arg[2:] in OUTPUT_FORMATS:
            value, i = arg[2:], i + 1
        if value is None:
            rest.append(arg)
            i += 1
            continue
        front = ["--output", value]
    return front + rest


cli.add_command(route_sim)
cli.add_command(gateway)
cli.add_command(route)
cli.add_command(cost)
cli.add_command(plan_command)
cli.add_command(engine)
cli.add_command(deploy)


def main() -> None:
    cli(args=hoist_output_option(sys.argv[1:]), prog_name="gpupool")


if __name__ == "__main__":
    main()
