"""`gpupool deploy create|get|list|scale|pause|resume|delete|history`:
serving a model as a deployment of replicas (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import grpc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from gpupool.v1 import deployments_pb2 as pb
from gpupool.v1 import deployments_pb2_grpc, types_pb2
from scheduler.cli.admin_commands import CliContext, pass_state
from scheduler.cli.client import CALL_TIMEOUT_S, CliError, translate_rpc_error
from scheduler.cli.render import format_time
from scheduler.routing.policies import POLICIES
from scheduler.security.channels import open_channel

WORKLOAD_CLASSES = {
    "latency-critical": types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
    "throughput": types_pb2.WORKLOAD_CLASS_THROUGHPUT,
    "batch": types_pb2.WORKLOAD_CLASS_BATCH,
    "long-context": types_pb2.WORKLOAD_CLASS_LONG_CONTEXT,
    "small-model": types_pb2.WORKLOAD_CLASS_SMALL_MODEL,
}


@contextmanager
def _stub(state: CliContext) -> Iterator[deployments_pb2_grpc.DeploymentsStub]:
    target, credentials = state.connection()
    channel = open_channel(target, credentials)
    try:
        yield deployments_pb2_grpc.DeploymentsStub(channel)  # type: ignore[no-untyped-call]
    except grpc.RpcError as error:
        raise translate_rpc_error(error, target) from None
    finally:
        channel.close()


def _call(state: CliContext, method: str, request: Any) -> Any:
    with _stub(state) as stub:
        return getattr(stub, method)(request, timeout=CALL_TIMEOUT_S, wait_for_ready=False)


def parse_variant(text: str) -> pb.DeploymentVariant:
    """DTYPE[:GPU,GPU…][:tp=N][:name=NAME][:model=ENGINE_MODEL], e.g.
    "fp16:H100-80GB,H200" or "int4:A100-40GB:model=org/llama-70b-awq"."""
    dtype, *rest = text.split(":")
    variant = pb.DeploymentVariant(dtype=dtype, name=dtype)
    for part in rest:
        key, has_value, value = part.partition("=")
        if not has_value:
            variant.gpu_models.extend(g for g in key.split(",") if g)
        elif key == "tp" and value.isdigit():
            variant.tp = int(value)
        elif key == "name":
            variant.name = value
        elif key == "model":
            variant.engine_model = value
        else:
            raise click.BadParameter(f"{part!r}: expected GPU models, tp=N, name=… or model=…")
    return variant


def parse_behavior(text: str) -> pb.ScalingBehavior:
    """STABILISATION_S/MAX_STEP/PERIOD_S, e.g. 60/2/120."""
    parts = text.split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{text!r}: expected STABILISATION_S/MAX_STEP/PERIOD_S (60/2/120)")
    window, step, period = (int(p) for p in parts)
    return pb.ScalingBehavior(stabilization_s=window, max_step=step, period_s=period)


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, has_value, rest = value.rpartition("=") if what == "cron" else value.partition("=")
        if not has_value or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=f"--{what}")
        pairs[key.strip()] = rest.strip()
    return pairs


def _state(state: int) -> str:
    return pb.ReplicaState.Name(state).removeprefix("REPLICA_STATE_").lower()


def replicas_table(deployment: pb.Deployment) -> Table:
    table = Table(title=f"replicas of {deployment.spec.name}")
    headers = ("REPLICA", "STATE", "VARIANT", "GPUS", "NODE", "ENDPOINT", "KV", "RUN", "WAIT",
               "PROMPT TOK", "GEN TOK", "REASON")  # fmt: skip
    for header in headers:
        table.add_column(header, overflow="fold")
    for r in deployment.replicas:
        has = r.HasField("metrics")
        m = r.metrics
        table.add_row(
            r.id,
            _state(r.state),
            r.variant,
            f"{r.gpu_count}× {r.gpu_model}",
            r.node or "-",
            r.endpoint or "-",
            f"{m.kv_cache_usage:.0%}" if has else "-",
            str(m.num_requests_running) if has else "-",
            str(m.num_requests_waiting) if has else "-",
            f"{m.prompt_tokens_total:,}" if has else "-",
            f"{m.generation_tokens_total:,}" if has else "-",
            r.reason,
        )
    return table


def deployment_summary(deployment: pb.Deployment) -> Text:
    spec = deployment.spec
    state = pb.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_").lower()
    flags = [
        state,
        "paused" if deployment.paused else "",
        "advisory" if spec.advisory else "",
        "manual" if deployment.manual else "",
    ]
    variants = ", ".join(
        f"{v.name} on {','.join(v.gpu_models) or 'any GPU'}{f' tp={v.tp}' if v.tp else ''}"
        for v in spec.variants
    )
    shown = ", ".join(f for f in flags if f)
    lines = [
        f"{spec.tenant}/{spec.name}: {spec.model} on {spec.engine} ({shown})",
        f"replicas {spec.min_replicas}..{spec.max_replicas}, "
        f"desired {deployment.desired_replicas}, standby {spec.standby_replicas}, "
        f"target KV {spec.target_kv_cache_usage:.2f}",
        f"scale up: {spec.scale_up.stabilization_s} s, +{spec.scale_up.max_step} per "
        f"{spec.scale_up.period_s} s; down: {spec.scale_down.stabilization_s} s, "
        f"-{spec.scale_down.max_step} per {spec.scale_down.period_s} s",
        f"variants: {variants}",
    ]
    if spec.cron_minimums:
        lines.append(
            "minimums: " + ", ".join(f"{c!r} → {n}" for c, n in sorted(spec.cron_minimums.items()))
        )
    if deployment.last_decision:
        lines.append(f"last decision: {deployment.last_decision}")
    return Text("\n".join(lines))


def deployments_table(deployments: Sequence[pb.Deployment]) -> Table:
    table = Table(title="deployments")
    for header in ("TENANT", "NAME", "MODEL", "ENGINE", "STATE", "READY", "DESIRED", "MIN..MAX"):
        table.add_column(header)
    for d in deployments:
        ready = sum(1 for r in d.replicas if r.state == pb.REPLICA_STATE_READY)
        state = pb.DeploymentState.Name(d.state).removeprefix("DEPLOYMENT_STATE_").lower()
        table.add_row(
            d.spec.tenant,
            d.spec.name,
            d.spec.model,
            d.spec.engine,
            state + (" (paused)" if d.paused else ""),
            str(ready),
            str(d.desired_replicas),
            f"{d.spec.min_replicas}..{d.spec.max_replicas}",
        )
    return table


def history_table(name: str, events: Sequence[pb.DeploymentEvent]) -> Table:
    table = Table(title=f"history of {name}")
    for header in ("#", "AT", "KIND", "REPLICAS", "WHAT"):
        table.add_column(header, overflow="fold")
    for e in events:
        moved = f"{e.from_replicas}→{e.to_replicas}" if e.kind in ("decision", "advisory") else ""
        table.add_row(str(e.seq), format_time(e.at), e.kind, moved, e.message)
    return table


@click.group()
def deploy() -> None:
    """Serve a model: deployments of replicas that scale on KV-cache use."""


@deploy.command()
@click.argument("name")
@click.option("--model", required=True, help="LLM catalogue name (llama-3.1-70b).")
@click.option("--engine", default="sim-engine", show_default=True, help="Worker template.")
@click.option("--tenant", default="", help="Default: the token's tenant.")
@click.option("--params-billion", type=float, default=0.0, help="For a model not in the catalogue.")
@click.option(
    "--variant", "variants", multiple=True, help="DTYPE[:GPU,GPU][:tp=N][:model=ID]; repeat."
)
@click.option("--min", "min_replicas", type=click.IntRange(0), default=1, show_default=True)
@click.option(
    "--max", "max_replicas", type=click.IntRange(0), default=None, help="[default: --min]"
)
@click.option("--target-kv", type=float, default=0.0, help="Target KV-cache use [default: 0.70].")
@click.option("--standby", type=click.IntRange(0), default=0, show_default=True)
@click.option("--scale-up", default="", help="WINDOW_S/STEP/PERIOD_S [default: 60/2/120].")
@click.option("--scale-down", default="", help="WINDOW_S/STEP/PERIOD_S [default: 300/1/300].")
@click.option(
    "--metrics-window", type=click.IntRange(0, 3600), default=0, help="Peak-hold seconds [60]."
)
@click.option("--cron", "crons", multiple=True, help='"0 9 * * 1-5=6": a minimum from then on.')
@click.option("--workload-class", type=click.Choice(sorted(WORKLOAD_CLASSES)), default=None)
@click.option("--priority-class", default="", help="Default: normal.")
@click.option("--engine-arg", "engine_args", multiple=True, help="KEY=VALUE template argument.")
@click.option("--advisory", is_flag=True, help="Decide and record; never act.")
@click.option("--scale-to-zero", is_flag=True)
@click.option(
    "--routing",
    type=click.Choice(sorted(POLICIES)),
    default=None,
    help="The gateway's routing policy for it [default: the gateway's --policy].",
)
@pass_state
def create(
    state: CliContext,
    name: str,
    model: str,
    engine: str,
    tenant: str,
    params_billion: float,
    variants: tuple[str, ...],
    min_replicas: int,
    max_replicas: int | None,
    target_kv: float,
    standby: int,
    scale_up: str,
    scale_down: str,
    metrics_window: int,
    crons: tuple[str, ...],
    workload_class: str | None,
    priority_class: str,
    engine_args: tuple[str, ...],
    advisory: bool,
    scale_to_zero: bool,
    routing: str | None,
) -> None:
    """Create deployment NAME."""
    minimums = {}
    for cron, value in _pairs(crons, "cron").items():
        if not value.isdigit():
            raise click.BadParameter(f"{value!r} is not a replica count", param_hint="--cron")
        minimums[cron] = int(value)
    spec = pb.DeploymentSpec(
        name=name,
        tenant=tenant,
        model=model,
        params_billion=params_billion,
        engine=engine,
        variants=[parse_variant(v) for v in variants],
        engine_args=_pairs(engine_args, "engine-arg"),
        workload_class=WORKLOAD_CLASSES.get(workload_class or "", 0),  # type: ignore[arg-type]
        priority_class=priority_class,
        min_replicas=min_replicas,
        max_replicas=max(min_replicas, 1) if max_replicas is None else max_replicas,
        target_kv_cache_usage=target_kv,
        standby_replicas=standby,
        cron_minimums=minimums,
        advisory=advisory,
        scale_to_zero=scale_to_zero,
        metrics_window_s=metrics_window,
        routing=routing or "",
    )
    if scale_up:
        spec.scale_up.CopyFrom(parse_behavior(scale_up))
    if scale_down:
        spec.scale_down.CopyFrom(parse_behavior(scale_down))
    response = _call(state, "Create", pb.CreateDeploymentRequest(spec=spec))
    state.show(response.deployment, lambda: deployment_summary(response.deployment))


@deploy.command()
@click.argument("name")
@click.option("--tenant", default="")
@pass_state
def get(state: CliContext, name: str, tenant: str) -> None:
    """A deployment with its replicas and their engines' latest metrics."""
    deployment = _call(state, "Get", pb.GetDeploymentRequest(name=name, tenant=tenant)).deployment
    state.show(
        deployment, lambda: Group(deployment_summary(deployment), replicas_table(deployment))
    )


@deploy.command(name="list")
@click.option("--tenant", default="")
@click.option("--all", "include_deleted", is_flag=True, help="Deleted ones too.")
@pass_state
def list_deployments(state: CliContext, tenant: str, include_deleted: bool) -> None:
    """Deployments (a service token: its tenant's)."""
    request = pb.ListDeploymentsRequest(tenant=tenant, include_deleted=include_deleted)
    found = list(_call(state, "List", request).deployments)
    state.show(found, lambda: deployments_table(found))


@deploy.command()
@click.argument("name")
@click.option("--tenant", default="")
@click.option("--replicas", type=click.IntRange(0), default=None, help="A fixed count.")
@click.option("--min", "min_replicas", type=click.IntRange(0), default=None)
@click.option("--max", "max_replicas", type=click.IntRange(0), default=None)
@click.option("--auto", "autoscale", is_flag=True, help="Back to the autoscaler.")
@pass_state
def scale(
    state: CliContext,
    name: str,
    tenant: str,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    autoscale: bool,
) -> None:
    """A fixed replica count (autoscaling off until --auto), or new bounds."""
    request = pb.ScaleDeploymentRequest(name=name, tenant=tenant, autoscale=autoscale)
    if replicas is not None:
        request.replicas = replicas
    if min_replicas is not None:
        request.min_replicas = min_replicas
    if max_replicas is not None:
        request.max_replicas = max_replicas
    deployment = _call(state, "Scale", request).deployment
    state.show(deployment, lambda: deployment_summary(deployment))


def _action(method: str, help_text: str) -> click.Command:
    @click.argument("name")
    @click.option("--tenant", default="")
    @pass_state
    def command(state: CliContext, name: str, tenant: str) -> None:
        request = pb.DeploymentActionRequest(name=name, tenant=tenant)
        deployment = _call(state, method, request).deployment
        state.show(deployment, lambda: deployment_summary(deployment))

    command.__doc__ = help_text
    return click.command(name=method.lower())(command)


deploy.add_command(_action("Pause", "Keep the replicas as they are: no decision acts."))
deploy.add_command(_action("Resume", "Let decisions act again."))
deploy.add_command(_action("Delete", "Drain and release every replica; the history stays."))


@deploy.command()
@click.argument("name")
@click.option("--tenant", default="")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_state
def history(state: CliContext, name: str, tenant: str, limit: int) -> None:
    """Every decision (with its reason) and replica change, oldest first."""
    request = pb.DeploymentHistoryRequest(name=name, tenant=tenant, limit=limit)
    events = list(_call(state, "History", request).events)
    if not events:
        raise CliError(f"deployment {name!r} has no history")
    state.show(events, lambda: history_table(name, events))


def demo_spec(tenant: str = "demo") -> pb.DeploymentSpec:
    """The deployment `gpupool up --demo-deployment` creates: llama-3.1-8b on
    the simulated engine, FP16 on H100/H200 and INT4 on A100-80GB, 1..4
    replicas with one warm standby, scaling on KV-cache use."""
    return pb.DeploymentSpec(
        name="chat",
        tenant=tenant,
        model="llama-3.1-8b",
        engine="sim-engine",
        variants=[
            pb.DeploymentVariant(name="fp16", dtype="fp16", gpu_models=["H100-80GB", "H200"]),
            pb.DeploymentVariant(name="int4", dtype="int4", gpu_models=["A100-80GB"]),
        ],
        workload_class=types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
        min_replicas=1,
        max_replicas=4,
        standby_replicas=1,
        engine_args={"extra_args": "--kv-blocks 2048"},
    )
