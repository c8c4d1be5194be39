"""`gpupool route-sim` (replay a trace through the routing policies), `gpupool route
explain` and `gpupool gateway` (the OpenAI-compatible gateway)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from pathlib import Path

import click
import grpc
import uvloop
import yaml
from rich.console import Console
from rich.table import Table

from gpupool.v1 import router_pb2, router_pb2_grpc
from scheduler.cli import render
from scheduler.cli.admin_commands import CliContext
from scheduler.domain.clock import SystemClock
from scheduler.domain.errors import GpupoolError
from scheduler.gateway.app import Gateway, GatewaySettings
from scheduler.gateway.auth import TokenAuthenticator
from scheduler.gateway.limits import Limits, TenantLimiter
from scheduler.gateway.replicas import (
    Pools,
    ReplicaSource,
    StaticReplicaSource,
    read_replicas_file,
)
from scheduler.gateway.server import GatewayTls, local_gateway_tls, start
from scheduler.gateway.watch import WatchReplicaSource
from scheduler.routing.policies import DEFAULT_POLICY
from scheduler.routing.replay.run import (
    DEFAULT_FLEET,
    DEFAULT_MODEL,
    REPLAY_POLICIES,
    PolicyResult,
    build_fleet,
    replay,
    scale_to_load,
)
from scheduler.routing.replay.synthetic import write_azure_csv
from scheduler.routing.replay.trace import load_trace
from scheduler.routing.router import check_policy
from scheduler.routing.service import MAX_HASHED_BLOCKS
from scheduler.security.channels import open_channel
from scheduler.services.tokens import TokenService
from scheduler.serving.kv_cache import block_hashes, estimate_tokens
from scheduler.serving.performance import DEFAULT_BLOCK_TOKENS
from scheduler.store.database import create_db_engine

# The shared data folder sits next to the repository: <repo>/../shared/data/...
LLM_TRACE_DIR = Path(
    os.environ.get(
        "GPUPOOL_LLM_TRACE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared/data/llm-traces",
    )
)
DEFAULT_TRACE = LLM_TRACE_DIR / "mooncake_conversation_trace.jsonl"


@click.command("route-sim")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=DEFAULT_TRACE,
    show_default=True,
    help="Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids) or Azure CSV.",
)
@click.option(
    "--fleet",
    default=DEFAULT_FLEET,
    show_default=True,
    help="COUNTxGPU[/DTYPE][/tpN], comma-separated; one replica per COUNT.",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="LLM catalogue name.")
@click.option(
    "--load",
    type=float,
    default=0.9,
    show_default=True,
    help="Offered load as a share of the fleet's capacity (all prompt tokens uncached).",
)
@click.option(
    "--policy",
    type=click.Choice([*REPLAY_POLICIES, "all"]),
    default="all",
    show_default=True,
    help="One policy, or all of them (round_robin is always run as the baseline).",
)
@click.option(
    "--no-shared-prefixes",
    is_flag=True,
    help="Make every prompt block unique (the same sizes and arrivals, nothing to reuse).",
)
@click.option(
    "--write-synthetic",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a synthetic Azure-format trace with no shared prefixes here, and replay it.",
)
@click.option("--limit", type=int, default=None, help="Replay only the first N requests.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a PNG: TTFT, hit rate and imbalance per policy.",
)
@click.pass_obj
def route_sim(
    state: CliContext,
    trace_path: Path,
    fleet: str,
    model: str,
    load: float,
    policy: str,
    no_shared_prefixes: bool,
    write_synthetic: Path | None,
    limit: int | None,
    plot_path: Path | None,
) -> None:
    """Replay an LLM request trace through the routing policies on a simulated fleet.

    The policies are the gateway's own code; replicas run the simulated
    engine's performance, prefix-cache and batching model. The last line
    printed is one JSON object with every policy's figures.
    """
    console = Console(stderr=True, width=130)
    if write_synthetic is not None:
        trace_path = write_azure_csv(write_synthetic)
    try:
        trace = load_trace(trace_path, limit)
        if no_shared_prefixes:
            trace = trace.without_prefixes()
        replicas = build_fleet(fleet, model)
        scaled = scale_to_load(trace, replicas, load)
    except GpupoolError as exc:
        raise click.UsageError(exc.message) from None
    names = list(REPLAY_POLICIES) if policy == "all" else ["round_robin", policy]
    names = list(dict.fromkeys(names))
    console.print(
        f"{trace.name}: {len(trace.requests)} requests; fleet {fleet} ({len(replicas)} replicas, "
        f"{model}); load {load} -> {len(scaled.requests) / scaled.span_s:.2f} req/s"
    )
    results: list[PolicyResult] = []
    for name in names:
        console.print(f"replaying {name} …")
        results.append(replay(scaled, replicas, name, progress=console.print))
    baseline = results[0]
    console.print(_table(results, baseline))
    for line in _targets(results, baseline):
        console.print(line)
    if plot_path is not None:
        from scheduler.routing.replay.plot import plot_replay  # matplotlib: slow to import

        plot_replay(results, plot_path, f"{trace.name}, {fleet}, {model}, load {load}")
        console.print(f"plot: {plot_path}")
    click.echo(
        json.dumps(
            {
                "trace": trace.name,
                "load": load,
                "fleet": fleet,
                "model": model,
                "default_policy": DEFAULT_POLICY,
                "policies": {r.policy: r.figures() for r in results},
            }
        )
    )
    del state


def _ratio(value: float, base: float) -> str:
    return "-" if base == 0 else f"{value / base:.3g}×"


def _table(results: list[PolicyResult], baseline: PolicyResult) -> Table:
    table = Table(title="Routing policies (ratios to round_robin in brackets)")
    for column in ("policy", "hit rate", "imbalance p99", "TTFT mean", "TTFT p50",
                   "TTFT p99", "output tok/s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in results:
        table.add_row(
            r.policy + (" (default)" if r.policy == DEFAULT_POLICY else ""),
            f"{r.hit_rate:.1%} [{_ratio(r.hit_rate, baseline.hit_rate)}]",
            f"{r.imbalance_p99:.2f}",
            f"{r.ttft_mean_s:.3f} s [{_ratio(r.ttft_mean_s, baseline.ttft_mean_s)}]",
            f"{r.ttft_p50_s:.3f} s",
            f"{r.ttft_p99_s:.3f} s [{_ratio(r.ttft_p99_s, baseline.ttft_p99_s)}]",
            f"{r.output_tokens_per_s:,.0f}",
        )
    return table


def _targets(results: list[PolicyResult], baseline: PolicyResult) -> list[str]:
    by_name = {r.policy: r for r in results}
    default = by_name.get(DEFAULT_POLICY)
    if default is None or default is baseline:
        return []
    lines = [
        f"default hit rate {_ratio(default.hit_rate, baseline.hit_rate)} round_robin's "
        "(target on the shared trace: >= 4×)",
        f"default TTFT mean {_ratio(default.ttft_mean_s, baseline.ttft_mean_s)} round_robin's "
        "(target: <= 0.05×)",
    ]
    if "token_load" in by_name:
        lines.append(
            f"default TTFT mean {_ratio(default.ttft_mean_s, by_name['token_load'].ttft_mean_s)} "
            "token_load's (target: <= 0.75×)"
        )
    singles = [r for r in results if r.policy not in (DEFAULT_POLICY, "session")]
    best = min(singles, key=lambda r: r.ttft_mean_s)
    lines.append(
        f"default TTFT mean {_ratio(default.ttft_mean_s, best.ttft_mean_s)} the best single "
        f"policy's ({best.policy}; target without shared prefixes: <= 1.1×)"
    )
    return lines


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=option)
        pairs[key] = rest
    return pairs


def _tenant_limits(values: tuple[str, ...]) -> dict[str, Limits]:
    limits: dict[str, Limits] = {}
    for tenant, spec in _pairs(values, "--tenant-limit").items():
        rpm, sep, tpm = spec.partition(":")
        try:
            limits[tenant] = Limits(float(rpm or 0), float(tpm or 0) if sep else 0.0)
        except ValueError:
            raise click.BadParameter(
                f"{spec!r}: expected RPM:TPM", param_hint="--tenant-limit"
            ) from None
    return limits


@click.command("gateway")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT")
@click.option(
    "--database-url",
    envvar="GPUPOOL_DATABASE_URL",
    required=True,
    help="The scheduler's PostgreSQL, for verifying bearer tokens (cached 5 s).",
)
@click.option(
    "--replicas",
    "replicas_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="A fixed replica list (YAML) instead of the scheduler's WatchReplicas stream.",
)
@click.option(
    "--policy",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Default policy (a deployment's own `routing` wins).",
)
@click.option(
    "--deployment-policy",
    multiple=True,
    metavar="DEPLOYMENT=POLICY",
    help="A policy for one deployment (repeatable).",
)
@click.option("--rpm", type=float, default=0, help="Requests per minute per tenant (0: no limit).")
@click.option("--tpm", type=float, default=0, help="Tokens per minute per tenant (0: no limit).")
@click.option(
    "--tenant-limit", multiple=True, metavar="TENANT=RPM:TPM", help="Limits for one tenant."
)
@click.option("--session-ttl", type=float, default=600, show_default=True, help="Seconds.")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".gpupool"),
    show_default=True,
    help="Where the local CA lives (a serving certificate is issued from it without --tls-*).",
)
@click.option("--insecure", "plaintext", is_flag=True, help="Serve plain HTTP (no TLS).")
@click.pass_obj
def gateway(
    state: CliContext,
    listen: str,
    database_url: str,
    replicas_file: Path | None,
    policy: str,
    deployment_policy: tuple[str, ...],
    rpm: float,
    tpm: float,
    tenant_limit: tuple[str, ...],
    session_ttl: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    data_dir: Path,
    plaintext: bool,
) -> None:
    """Serve OpenAI's API (/v1/completions, /v1/chat/completions, /v1/models) and route
    each request to a replica of the deployment its `model` names."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        policies = {
            d: check_policy(p) for d, p in _pairs(deployment_policy, "--deployment-policy").items()
        }
        check_policy(policy)
    except GpupoolError as exc:
        raise click.UsageError(exc.message) from None
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise click.BadParameter(f"{listen!r}: expected HOST:PORT", param_hint="--listen")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    source: ReplicaSource
    if replicas_file is not None:
        try:
            source = StaticReplicaSource(
                read_replicas_file(yaml.safe_load(replicas_file.read_text()))
            )
        except GpupoolError as exc:
            raise click.UsageError(exc.message) from None
    else:
        target, credentials = state.connection()
        source = WatchReplicaSource(target, credentials)
    tls = None
    if not plaintext:
        tls = (
            GatewayTls(tls_cert, tls_key)
            if tls_cert and tls_key
            else local_gateway_tls(data_dir, host)
        )
    engine = create_db_engine(database_url, pool_size=4)
    limiter = TenantLimiter(Limits(rpm, tpm), _tenant_limits(tenant_limit))
    pools = Pools(policies=policies, default_policy=policy, session_ttl_s=session_ttl)
    app = Gateway(
        pools, TokenAuthenticator(TokenService(engine, SystemClock())), limiter, GatewaySettings()
    ).app(source)

    async def serve() -> None:
        runner, port = await start(app, host, int(port_text), tls, insecure=plaintext)
        # What exists now lives as long as the process: the collector need not walk it
        # again on every full collection (fewer, shorter pauses on the request path).
        gc.freeze()
        scheme = "http" if plaintext else "https"
        click.echo(f"gateway listening on {scheme}://{host}:{port}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        # libuv's event loop: aiohttp's usual production loop (its gain was not measurable
        # on the loaded development machine; see the README).
        uvloop.run(serve())
    finally:
        engine.dispose()


@click.group("route")
def route() -> None:
    """Routing decisions of the scheduler's Router service."""


@route.command("explain")
@click.option("--deployment", required=True, help="The deployment's name.")
@click.option("--tenant", default="", help="Its tenant [default: the caller's].")
@click.option(
    "--prompt-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The prompt (only its token count and block hashes are sent).",
)
@click.option("--max-tokens", type=int, default=0, help="The request's max_tokens.")
@click.option("--session", default="", help="A session id (x-session-id).")
@click.option("--policy", default="", help="Another policy than the deployment's.")
@click.pass_obj
def explain(
    state: CliContext,
    deployment: str,
    tenant: str,
    prompt_file: Path,
    max_tokens: int,
    session: str,
    policy: str,
) -> None:
    """Which replica a prompt would go to now, and every candidate's scores."""
    text = prompt_file.read_text(encoding="utf-8", errors="replace")
    target, credentials = state.connection()
    channel = open_channel(target, credentials)
    try:
        answer = router_pb2_grpc.RouterStub(channel).Explain(
            router_pb2.RouteRequest(
                deployment=deployment,
                tenant=tenant,
                prompt_tokens=estimate_tokens(text),
                prompt_blocks=block_hashes(text, DEFAULT_BLOCK_TOKENS, MAX_HASHED_BLOCKS),
                block_tokens=DEFAULT_BLOCK_TOKENS,
                max_tokens=max_tokens,
                session=session,
                policy=policy,
            ),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise click.ClickException(f"{exc.code().name}: {exc.details()}") from None
    finally:
        channel.close()
    if state.json:
        click.echo(json.dumps(render.to_dict(answer), indent=2))
        return
    console = Console()
    console.print(f"policy   {answer.policy}")
    console.print(f"replica  {answer.replica or '-'}  {answer.endpoint}")
    console.print(f"reason   {answer.reason}")
    console.print(f"cached   ~{answer.expected_cached_tokens} of {estimate_tokens(text)} tokens")
    names = sorted({k for c in answer.candidates for k in c.scores})
    table = Table(title="Best candidates (costs in seconds)")
    table.add_column("replica")
    for name in names:
        table.add_column(name, justify="right")
    for candidate in answer.candidates:
        table.add_row(candidate.replica, *(f"{candidate.scores.get(n, 0):.4g}" for n in names))
    console.print(table)
