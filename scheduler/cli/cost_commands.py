"""`gpupool cost` (GPU-hours, money, cost per token, from the scheduler) and
`gpupool plan` (the capacity planner, computed here from the catalogues)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gpupool.v1 import cost_pb2, cost_pb2_grpc
from scheduler.cli.admin_commands import PIPE_WIDTH, CliContext, pass_state
from scheduler.cli.client import CALL_TIMEOUT_S, CliError, translate_rpc_error
from scheduler.domain.errors import GpupoolError
from scheduler.security.channels import open_channel
from scheduler.serving.performance import resolve_gpu
from scheduler.serving.planner import PlanInput, PlanRow, assumptions, plan
from scheduler.serving.prices import load_prices

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Seconds in "2s", "500ms", "24h", "7d" (a bare number is in `default_unit`)."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 2s, 500ms, 24h or 7d")
    return float(match.group(1)) * _UNIT_S[match.group(2) or default_unit]


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO time (UTC unless it says otherwise), or a duration back from now (24h, 7d)."""
    try:
        return now - timedelta(seconds=parse_duration(text, "h"))
    except click.BadParameter:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time (2026-12-01T09:00) nor a duration (24h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def cost_view(response: cost_pb2.GetCostResponse) -> Group:
    currency = response.currency
    since = (
        response.since.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")
        if response.HasField("since")
        else "the beginning"
    )
    until = response.until.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")
    tenants = Table(title=f"GPU cost from {since} to {until}")
    for header in ("TENANT", "GPU-HOURS", "COST"):
        tenants.add_column(header, justify="left" if header == "TENANT" else "right")
    for t in response.tenants:
        tenants.add_row(t.tenant, f"{t.gpu_hours:,.2f}", _money(t.cost, currency))
    tenants.add_row("total", f"{response.gpu_hours:,.2f}", _money(response.cost, currency))
    lines = Table(title="By deployment and GPU model")
    for header in ("TENANT", "DEPLOYMENT", "GPU MODEL", "PRICING", "GPU-HOURS", "PER HOUR", "COST"):
        lines.add_column(header)
    for x in response.lines:
        lines.add_row(
            x.tenant,
            x.deployment or "-",
            x.gpu_model,
            "spot" if x.spot else "on-demand",
            f"{x.gpu_hours:,.2f}",
            f"{x.price_per_hour:.2f}",
            _money(x.cost, currency),
        )
    parts: list[Table | Text] = [tenants, lines]
    if response.deployments:
        tokens = Table(
            title="Cost per million tokens (whole replica lifetimes: the engines' counters)"
        )
        for header in (
            "TENANT",
            "DEPLOYMENT",
            "PROMPT",
            "GENERATED",
            "LIFETIME COST",
            "PER 1M",
            "PER 1M OUT",
        ):
            tokens.add_column(header)
        for d in response.deployments:
            tokens.add_row(
                d.tenant,
                d.deployment,
                f"{d.prompt_tokens:,}",
                f"{d.generation_tokens:,}",
                _money(d.lifetime_cost, currency),
                f"{d.cost_per_million_tokens:.4f}" if d.has_tokens else "-",
                f"{d.cost_per_million_generated_tokens:.4f}"
                if d.has_tokens and d.generation_tokens
                else "-",
            )
        parts.append(tokens)
    parts.append(Text("Prices are the scheduler's price table (deploy/prices.yaml: examples)."))
    return Group(*parts)


@click.command()
@click.option("--tenant", default="", help="One tenant (a service token: its own).")
@click.option("--deployment", default="", help="One deployment (needs --tenant for admins).")
@click.option(
    "--since", default="", help="From: a time (2026-12-01T09:00) or a duration back (24h, 7d)."
)
@click.option("--until", default="", help="To: a time or a duration back [default: now].")
@pass_state
def cost(state: CliContext, tenant: str, deployment: str, since: str, until: str) -> None:
    """GPU-hours and money per tenant and deployment, and cost per million tokens.

    From the allocation history and the scheduler's price table (on-demand or
    spot by the node's spot=true label); tokens from the deployments' engines.
    """
    now = datetime.now(UTC)
    request = cost_pb2.GetCostRequest(tenant=tenant, deployment=deployment)
    if since:
        request.since.CopyFrom(_timestamp(parse_since(since, now)))
    if until:
        request.until.CopyFrom(_timestamp(parse_since(until, now)))
    target, credentials = state.connection()
    channel = open_channel(target, credentials)
    try:
        stub = cost_pb2_grpc.CostStub(channel)  # type: ignore[no-untyped-call]
        response = stub.GetCost(request, timeout=CALL_TIMEOUT_S, wait_for_ready=False)
    except grpc.RpcError as error:
        raise translate_rpc_error(error, target) from None
    finally:
        channel.close()
    state.show(response, lambda: cost_view(response))


def plan_table(request: PlanInput, rows: list[PlanRow], currency: str) -> Group:
    slo = f", TTFT SLO {request.ttft_slo_s:g} s" if request.ttft_slo_s is not None else ""
    table = Table(
        title=f"{request.model} on {request.gpus}× {request.gpu_model}{slo}: replicas by TP"
    )
    for header in (
        "TP",
        "GPUS/REPLICA",
        "REPLICAS",
        "BATCH",
        "TTFT",
        "PER TOKEN",
        "REL. LATENCY",
        "TOKENS/S (ALL)",
        f"{currency}/1M TOKENS",
        "NOTE",
    ):
        table.add_column(header, overflow="fold")
    for r in rows:
        if not r.fits:
            table.add_row(str(r.tp), str(r.tp), str(r.replicas), *["-"] * 6, r.reason)
            continue
        table.add_row(
            str(r.tp),
            str(r.gpus_per_replica),
            str(r.replicas),
            str(r.batch),
            f"{r.ttft_s * 1000:.0f} ms",
            f"{r.tpot_s * 1000:.1f} ms",
            f"{r.relative_latency:.2f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.cost_per_million_tokens:.4f}" if r.cost_per_million_tokens is not None else "-",
            r.reason or (f"at {r.utilisation:.0%} utilisation" if r.utilisation < 1 else ""),
        )
    notes = Text("Assumptions:\n" + "\n".join(f"- {line}" for line in assumptions(request)))
    return Group(table, notes)


@click.command(name="plan")
@click.option("--model", required=True, help="An LLM catalogue name or Hugging Face id.")
@click.option("--gpu", "gpu_model", required=True, help="A catalogue GPU model (H100-80GB …).")
@click.option("--gpus", type=click.IntRange(1, 100_000), required=True, help="GPUs to split.")
@click.option("--dtype", default=None, help="Weights dtype [default: the model name's, else bf16].")
@click.option("--ttft-slo", default=None, help="Time-to-first-token SLO (2s, 500ms).")
@click.option("--prompt-tokens", type=click.IntRange(1, 1_000_000), default=1024, show_default=True)
@click.option("--output-tokens", type=click.IntRange(1, 1_000_000), default=256, show_default=True)
@click.option("--spot", is_flag=True, help="Price at spot rather than on-demand.")
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Price table [default: $GPUPOOL_PRICES, else deploy/prices.yaml].",
)
@pass_state
def plan_command(
    state: CliContext,
    model: str,
    gpu_model: str,
    gpus: int,
    dtype: str | None,
    ttft_slo: str | None,
    prompt_tokens: int,
    output_tokens: int,
    spot: bool,
    prices_file: Path | None,
) -> None:
    """Trade-off of TP = 1, 2, 4, 8 for serving MODEL on GPUS GPUs (a roofline model)."""
    try:
        table = load_prices(prices_file)
        request = PlanInput(
            model=model,
            gpu_model=gpu_model,
            gpus=gpus,
            dtype=dtype,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            ttft_slo_s=parse_duration(ttft_slo) if ttft_slo else None,
            price_per_gpu_hour=table.per_hour(_catalogue_name(gpu_model), spot),
        )
        rows = plan(request)
    except GpupoolError as exc:
        raise CliError(exc.message) from None
    if state.json:
        click.echo(
            json.dumps(
                {
                    "model": model,
                    "gpu_model": gpu_model,
                    "gpus": gpus,
                    "currency": table.currency,
                    "price_per_gpu_hour": request.price_per_gpu_hour,
                    "rows": [_row_dict(r) for r in rows],
                    "assumptions": assumptions(request),
                },
                indent=2,
            )
        )
        return
    console = Console()
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    console.print(plan_table(request, rows, table.currency))


def _catalogue_name(gpu_model: str) -> str:
    return resolve_gpu(gpu_model).name


def _row_dict(row: PlanRow) -> dict[str, object]:
    return {
        "tp": row.tp,
        "gpus_per_replica": row.gpus_per_replica,
        "replicas": row.replicas,
        "fits": row.fits,
        "reason": row.reason,
        "batch": row.batch,
        "ttft_s": row.ttft_s,
        "tpot_s": row.tpot_s,
        "relative_latency": row.relative_latency,
        "utilisation": row.utilisation,
        "tokens_per_s": row.tokens_per_s,
        "cost_per_million_tokens": row.cost_per_million_tokens,
    }
