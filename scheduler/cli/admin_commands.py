"""Operator commands: inspect and act on nodes, GPUs and allocations.

Each command fetches through SchedulerClient and prints through render.py,
as a rich table or, with `-o json`, as JSON (a list for lists, an object for one thing).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click
from google.protobuf.message import Message
from rich.console import Console, RenderableType

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.cli import render
from scheduler.cli.client import CliError, SchedulerClient
from scheduler.security.channels import ClientCredentials
from scheduler.security.client_config import ConfigError, find_config
from scheduler.security.pki import KeyPair

OUTPUT_FORMATS = ("table", "json")
# Piped tables go to grep or less: wide enough that each row stays on one line.
PIPE_WIDTH = 250
EXIT_INTERRUPTED = 130
# `allocate` stored the request, but no GPU of the fleet can ever hold it.
EXIT_UNSCHEDULABLE = 3
DEFAULT_SCHEDULER = "127.0.0.1:50051"


@dataclass
class CliContext:
    """What the global options chose; the channel is dialled on first use."""

    target: str | None = None
    output: str = "table"
    config: Path | None = None
    token: str = ""
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False
    _client: SchedulerClient | None = field(default=None, repr=False)

    def connection(self) -> tuple[str, ClientCredentials]:
        """Where to dial and with what: flags and variables first, then the
        client config (--config, ./.gpupool/admin.yaml, ~/.config/gpupool/config.yaml)."""
        try:
            config = find_config(self.config)
            target = self.target or (config.scheduler if config else "") or DEFAULT_SCHEDULER
            if self.insecure:
                return target, ClientCredentials(insecure=True)
            if config is not None and not (self.token or self.ca_cert or self.cert):
                return target, config.credentials()
            ca_cert = self.ca_cert or (config.ca_cert if config else None)
        except (ConfigError, OSError) as exc:
            raise CliError(str(exc)) from None
        if ca_cert is None or not (self.token or self.cert):
            raise CliError(
                "no credentials for the scheduler: run `gpupool up` in this directory (it writes "
                ".gpupool/admin.yaml), or pass --config FILE, or --token with --ca-cert "
                "(gpupool token create), or --insecure for a plaintext scheduler"
            )
        pair = KeyPair.read(self.key, self.cert) if self.cert and self.key else None
        return target, ClientCredentials(
            ca_pem=ca_cert.read_bytes(), token=self.token, certificate=pair
        )

    @property
    def json(self) -> bool:
        return self.output == "json"

    def client(self) -> SchedulerClient:
        if self._client is None:
            self._client = SchedulerClient(*self.connection())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def show(self, data: Message | Sequence[Message], view: Callable[[], RenderableType]) -> None:
        """Print `data` as JSON, or the human view built lazily by `view`."""
        if self.json:
            payload = render.to_dict(data) if isinstance(data, Message) else render.to_dicts(data)
            click.echo(json.dumps(payload, indent=2))
            return
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = PIPE_WIDTH
        console.print(view())

    def say(self, data: Message, line: str) -> None:
        """Print one line for an action, or the resulting object as JSON."""
        if self.json:
            click.echo(json.dumps(render.to_dict(data), indent=2))
            return
        click.echo(line)


pass_state = click.make_pass_decorator(CliContext)
ACTIVE_STATES = (
    types_pb2.ALLOCATION_STATE_PLACED,
    types_pb2.ALLOCATION_STATE_RUNNING,
    types_pb2.ALLOCATION_STATE_PREEMPTING,
)

# Command-line spellings of the enums, derived so a new value needs no CLI change.
ALLOCATION_STATES = {
    render.allocation_state_label(v): cast(types_pb2.AllocationState, v)
    for v in types_pb2.AllocationState.values()
    if v
}
WORKLOAD_CLASSES = {
    render.workload_class_label(v): cast(types_pb2.WorkloadClass, v)
    for v in types_pb2.WorkloadClass.values()
    if v
}


def _now() -> datetime:
    return datetime.now(UTC)


# --- option parsing ----------------------------------------------------------
# Callbacks rather than ParamType subclasses: ParamType is only generic from click 8.4.


def parse_fraction(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> types_pb2.FractionalGpu | None:
    """MILLI:MEMORY_MIB, e.g. 500:20480 for half the compute and 20 GiB."""
    if value is None:
        return None
    milli_text, sep, memory_text = value.partition(":")
    if not sep or not milli_text.isdigit() or not memory_text.isdigit():
        raise click.BadParameter(f"{value!r} is not MILLI:MEMORY_MIB (e.g. 500:20480)")
    milli, memory_mib = int(milli_text), int(memory_text)
    if not 1 <= milli <= 1000:
        raise click.BadParameter(f"milli-GPU must be 1..1000, got {milli}")
    if memory_mib < 1:
        raise click.BadParameter("memory must be at least 1 MiB")
    return types_pb2.FractionalGpu(milli_gpu=milli, memory_mib=memory_mib)


def parse_layout(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> types_pb2.ParallelLayout | None:
    """ "tp=4,pp=2,replicas=2" into a ParallelLayout; unnamed degrees are 1."""
    if not value:
        return None
    layout = types_pb2.ParallelLayout()
    for part in value.split(","):
        name, sep, degree = part.strip().partition("=")
        if not sep or name not in ("tp", "pp", "ep", "cp", "replicas") or not degree.isdigit():
            raise click.BadParameter(
                f"{part!r} is not DEGREE=N with DEGREE one of tp, pp, ep, cp, replicas"
            )
        setattr(layout, name, int(degree))
    return layout


def _model_spec(serve: str, dtype: str, context: int, sequences: int) -> types_pb2.ModelSpec:
    """ "30b" is a size; anything else a model name."""
    spec = types_pb2.ModelSpec(dtype=dtype, context_tokens=context, concurrent_sequences=sequences)
    size = serve.lower().removesuffix("b")
    try:
        spec.params_billion = float(size)
    except ValueError:
        spec.name = serve
    return spec


def parse_labels(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, label_value = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        labels[key] = label_value
    return labels


# --- nodes and GPUs ----------------------------------------------------------


@click.command()
@pass_state
def nodes(state: CliContext) -> None:
    """List nodes with their state, GPUs and last heartbeat."""
    found = state.client().list_nodes()
    state.show(found, lambda: render.nodes_table(found, _now()))


@click.group()
def node() -> None:
    """Inspect one node."""


@node.command("show")
@click.argument("name")
@pass_state
def node_show(state: CliContext, name: str) -> None:
    """Show a node's details, its GPUs and their topology, and its allocations."""
    found = state.client().get_node(name)
    client = state.client()
    held = [a for a in client.list_allocations(node=name, limit=1000) if a.state in ACTIVE_STATES]
    state.show(found, lambda: render.node_view(found, _now(), held))


@node.command("delete")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Requeue its live allocations first (or fail those whose on_failure is fail).",
)
@pass_state
def node_delete(state: CliContext, name: str, force: bool) -> None:
    """Remove a node whose agent is stopped; its allocations' history stays.

    Refused while its agent is reachable or while it holds live allocations
    (unless --force). An agent that connects again under NAME registers it anew."""
    result = state.client().delete_node(name, force)
    moved = ", ".join(f"{a.id} ({render.allocation_state_label(a.state)})" for a in result.requeued)
    state.say(result, f"{result.name}: deleted" + (f"; moved off it: {moved}" if moved else ""))


@click.command()
@click.option("--node", "node_name", default="", metavar="NAME", help="Only this node's GPUs.")
@pass_state
def gpus(state: CliContext, node_name: str) -> None:
    """List GPUs with health, usage and MIG layout."""
    found = state.client().list_gpus(node_name)
    state.show(found, lambda: render.gpus_table(found))


def _node_action_command(name: str, help_text: str, action: str) -> click.Command:
    """cordon / uncordon / drain: one node, one Admin call, one line out."""

    @click.command(name, help=help_text)
    @click.argument("node_name", metavar="NAME")
    @pass_state
    def command(state: CliContext, node_name: str) -> None:
        result = getattr(state.client(), action)(node_name)
        state.say(result, render.node_action_line(result))

    return command


cordon = _node_action_command(
    "cordon", "Stop new work landing on a node; existing work stays.", "cordon_node"
)
uncordon = _node_action_command("uncordon", "Let new work land on a node again.", "uncordon_node")
drain = _node_action_command(
    "drain",
    "No new work on a node; its allocations move elsewhere; it shows drained once empty.",
    "drain_node",
)


@click.command()
@pass_state
def catalogue(state: CliContext) -> None:
    """List the GPU models the scheduler knows, with their MIG profiles."""
    models = state.client().get_catalogue()
    state.show(models, lambda: render.catalogue_table(models))


# --- allocations -------------------------------------------------------------


@click.command()
@click.option("--tenant", default="", help="Only this tenant's allocations.")
@click.option("--state", "state_name", type=click.Choice(list(ALLOCATION_STATES)))
@click.option("--node", "node_name", default="", metavar="NAME", help="Only those bound here.")
@click.option("--request-id", default="", metavar="ID", help="The id the caller sent.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@pass_state
def allocations(
    state: CliContext,
    tenant: str,
    state_name: str | None,
    node_name: str,
    request_id: str,
    limit: int,
) -> None:
    """List allocations, newest pages first as the scheduler returns them."""
    wanted = ALLOCATION_STATES[state_name] if state_name else None
    found = state.client().list_allocations(
        tenant=tenant,
        state=wanted if wanted is not None else types_pb2.ALLOCATION_STATE_UNSPECIFIED,
        node=node_name,
        limit=limit,
        request_id=request_id,
    )
    state.show(found, lambda: render.allocations_table(found, _now()))


@click.group()
def allocation() -> None:
    """Inspect one allocation."""


ALLOCATION_ID = re.compile(r"a-[0-9a-f]{16}")


def find_allocation(client: SchedulerClient, key: str, tenant: str) -> types_pb2.Allocation:
    """By allocation id (a-…), else by the request id its caller sent."""
    if ALLOCATION_ID.fullmatch(key) and not tenant:
        return client.get_allocation(key)
    found = client.list_allocations(tenant=tenant, request_id=key, limit=20)
    if not found:
        where = f" of tenant {tenant!r}" if tenant else ""
        raise CliError(
            f"no allocation{where} with id or request id {key!r} (see `gpupool allocations`)"
        )
    tenants = sorted({a.tenant for a in found})
    if len(tenants) > 1:
        raise CliError(
            f"request id {key!r} is used by tenants {', '.join(tenants)}: add --tenant NAME"
        )
    return client.get_allocation(found[0].id)


@allocation.command("show")
@click.argument("key", metavar="ID")
@click.option("--tenant", default="", help="Whose request id ID is (when several use it).")
@pass_state
def allocation_show(state: CliContext, key: str, tenant: str) -> None:
    """Show an allocation (by allocation id or request id): bindings, history,
    and why it is pending."""
    found = find_allocation(state.client(), key, tenant)
    state.show(found, lambda: render.allocation_view(found, _now()))


@click.command()
@click.argument("allocation_id", metavar="ID")
@pass_state
def release(state: CliContext, allocation_id: str) -> None:
    """Release an allocation and free its GPUs."""
    result = state.client().release_allocation(allocation_id)
    state.say(result, render.allocation_action_line(result))


@click.command()
@click.option("--tenant", default="", help="Default: the tenant of a service token.")
@click.option(
    "--request-id", default=None, metavar="ID", help="Idempotency key [default: a random UUID]."
)
@click.option("--whole", type=click.IntRange(min=1), metavar="N", help="N whole GPUs on one node.")
@click.option(
    "--fraction",
    metavar="MILLI:MEMORY_MIB",
    callback=parse_fraction,
    help="A share of one time-sliced GPU, e.g. 500:20480.",
)
@click.option("--mig", metavar="PROFILE", help="A MIG instance, e.g. 3g.40gb.")
@click.option(
    "--layout",
    metavar="tp=N,pp=N,ep=N,cp=N,replicas=N",
    callback=parse_layout,
    help="A parallel layout of whole GPUs, one per rank (implies --whole of its world size).",
)
@click.option(
    "--serve",
    metavar="MODEL",
    help="Serve this model: a catalogue name (llama-3.1-70b) or a size (30b); without "
    "resources the scheduler picks GPU model and TP degree.",
)
@click.option("--dtype", default="", help="Weights dtype for --serve: bf16, fp16, fp8, int8, int4.")
@click.option("--context", type=click.IntRange(min=1), help="Context tokens for --serve.")
@click.option("--sequences", type=click.IntRange(min=1), help="Concurrent sequences (--serve).")
@click.option(
    "--worker",
    "worker_template",
    metavar="TEMPLATE",
    help="Launch a worker per rank from this template (vllm, sglang, torchrun, python).",
)
@click.option(
    "--arg", "worker_args", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
    help="A worker template argument, e.g. model=meta-llama/Llama-3.1-8B.",
)  # fmt: skip
@click.option(
    "--env", "worker_env", multiple=True, metavar="KEY=VALUE", callback=parse_labels,
    help="Extra environment for every rank.",
)  # fmt: skip
@click.option("--priority", "priority_class", default="", metavar="CLASS")
@click.option("--workload-class", type=click.Choice(list(WORKLOAD_CLASSES)))
@click.option("--model", default="", metavar="NAME", help="The model this allocation serves.")
@click.option("--gpu-model", "gpu_models", multiple=True, metavar="M", help="Allowed GPU model.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=parse_labels)
@click.option("--no-wait", is_flag=True, help="Fail instead of waiting when nothing is free.")
@pass_state
def allocate(
    state: CliContext,
    tenant: str,
    request_id: str | None,
    whole: int | None,
    fraction: types_pb2.FractionalGpu | None,
    mig: str | None,
    layout: types_pb2.ParallelLayout | None,
    serve: str | None,
    dtype: str,
    context: int | None,
    sequences: int | None,
    worker_template: str | None,
    worker_args: dict[str, str],
    worker_env: dict[str, str],
    priority_class: str,
    workload_class: str | None,
    model: str,
    gpu_models: tuple[str, ...],
    labels: dict[str, str],
    no_wait: bool,
) -> None:
    """Ask the scheduler for GPUs: one of --whole, --fraction, --mig or --layout, or
    --serve MODEL alone for an automatic layout."""
    options = (("--whole", whole), ("--fraction", fraction), ("--mig", mig))
    given = [name for name, value in options if value is not None]
    derived = (layout is not None or serve is not None) and not given
    if len(given) != 1 and not derived:
        extra = [n for n, v in (("--layout", layout), ("--serve", serve)) if v is not None]
        found = ", ".join(given + extra) or "none"
        raise click.UsageError(
            "give exactly one of --whole, --fraction, --mig or --layout, or --serve MODEL "
            f"alone (got {found})"
        )
    request = scheduler_pb2.AllocateRequest(
        tenant=tenant,
        request_id=request_id or str(uuid.uuid4()),
        gpu_models=gpu_models,
        priority_class=priority_class,
        workload_class=(
            WORKLOAD_CLASSES[workload_class]
            if workload_class
            else types_pb2.WORKLOAD_CLASS_UNSPECIFIED
        ),
        model=model,
        labels=labels,
        no_wait=no_wait,
    )
    # CopyFrom marks the oneof member present even when its fields are zero.
    if layout is not None:
        request.layout.CopyFrom(layout)
    if worker_template is not None:
        request.worker.CopyFrom(
            types_pb2.WorkerSpec(template=worker_template, args=worker_args, env=worker_env)
        )
    elif worker_args or worker_env:
        raise click.UsageError("--arg and --env need --worker TEMPLATE")
    if serve is not None:
        request.model_spec.CopyFrom(_model_spec(serve, dtype, context or 0, sequences or 0))
    if whole is not None:
        request.whole.CopyFrom(types_pb2.WholeGpus(count=whole))
    elif fraction is not None:
        request.fraction.CopyFrom(fraction)
    elif mig is not None:
        request.mig.CopyFrom(types_pb2.MigSlice(profile=mig))
    result = state.client().allocate(request)
    state.show(result, lambda: render.allocation_view(result, _now()))
    if result.unschedulable:
        # Stored, but it will wait until the fleet itself changes: not a success.
        click.echo(
            f"error: {result.id} is stored as pending but no GPU of this fleet can ever hold it "
            f"({render.first_pending_reason(result)}); release it with `gpupool release "
            f"{result.id}`, or pass --no-wait to be refused instead",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_UNSCHEDULABLE)


@click.command()
@click.argument("allocation_id", metavar="ID")
@pass_state
def watch(state: CliContext, allocation_id: str) -> None:
    """Follow an allocation's state changes until it is released or failed."""
    try:
        for update in state.client().watch_allocation(allocation_id):
            if state.json:
                # JSON Lines: one object per update, so it can be piped as it arrives.
                click.echo(json.dumps(render.to_dict(update)))
            else:
                click.echo(render.watch_line(update))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


ADMIN_COMMANDS: tuple[click.Command, ...] = (
    nodes,
    node,
    gpus,
    allocations,
    allocation,
    release,
    cordon,
    uncordon,
    drain,
    catalogue,
    allocate,
    watch,
)


def register_admin_commands(group: click.Group) -> None:
    """Add the operator commands to the CLI group."""
    for command in ADMIN_COMMANDS:
        group.add_command(command)
